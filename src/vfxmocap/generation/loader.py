"""Find a diffusers model and load its pipeline: a catalog name, a Hub repo id already in the
local Hugging Face cache, or a local diffusers folder (`model_index.json` + components).

Nothing is downloaded at run time (`vfx models pull` does that); what is missing is a
`ModelMissing` that says which files to place where. The family comes from
`model_index.json`'s `_class_name`. Loaded pipelines stay in the one model cache.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any

from vfxmocap.core.errors import DeviceError, ModelMissing
from vfxmocap.core.log import get_logger
from vfxmocap.device import release_memory
from vfxmocap.generation.families import Family, family_of
from vfxmocap.generation.planner import MemoryFigures, Offload, Plan, quantized
from vfxmocap.models.cache import model_cache
from vfxmocap.models.catalog import ModelSpec
from vfxmocap.models.store import HUB, REPO_ID, ModelStore

log = get_logger("generation.loader")

_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth")
# A Stable Diffusion base repo's component that AnimateDiff pipelines built over it do not
# take (its catalog entries leave its files out).
_BASE_ONLY = frozenset({"safety_checker"})


@dataclass(frozen=True)
class ModelRef:
    """A diffusers model found on this machine."""

    model: str  # as the user named it
    path: Path  # the folder with model_index.json
    class_name: str  # model_index.json's `_class_name`
    family: Family
    figures: MemoryFigures
    weights_gb: float  # the weights in half precision: what the model cache counts
    spec: ModelSpec | None = None  # its catalog entry, if any
    revision: str | None = None  # the Hub commit of a cached snapshot
    # Components from other repos (a catalog entry's `components`): name -> their folder.
    parts: dict[str, Path] = field(default_factory=dict)


def resolve(model: str, store: ModelStore | None = None, *, files: bool = True) -> ModelRef:
    """Find `model` here, or raise ModelMissing saying what to place where. `files=False`
    accepts a catalog model that is not downloaded yet (its entry says enough to plan)."""
    store = store or ModelStore()
    if model in store.catalog.names():
        return _from_catalog(model, store, files)
    folder = local_folder(model)
    if folder is not None:
        return _from_folder(model, folder, None)
    names = [s.name for s in store.catalog if s.backend == "diffusers"]
    raise ModelMissing(
        f"model: {model!r} is neither a catalog model, a folder, nor a Hub repo id",
        hint=f"Catalog video models: {', '.join(names)}; or a diffusers folder.",
    )


def local_folder(model: str) -> Path | None:
    """The folder of a model named by its path or by its Hugging Face repo id (`hub:` before
    it optional): that folder, or the repo's snapshot in the local cache (never fetched:
    ModelMissing when it is not there); None for a name that is neither. Catalog names are
    the caller's to look up first."""
    repo = model.removeprefix(HUB)
    if model.startswith(HUB) and REPO_ID.match(repo):
        return hub_snapshot(repo, None)
    folder = Path(model).expanduser()
    if folder.exists():
        return folder
    if REPO_ID.match(model):
        return hub_snapshot(model, None)
    return None


def _from_catalog(name: str, store: ModelStore, files: bool) -> ModelRef:
    """The store's folder of a catalog model, else its repo in the Hugging Face cache."""
    spec = store.catalog.get(name)
    folder = store.directory(spec)
    parts = {part: folder / part for part in spec.components}
    if not store.status(name).ready and spec.source.repo:
        try:
            folder = hub_snapshot(spec.source.repo, spec.source.revision)
            parts = {part: hub_snapshot(repo, None) for part, repo in spec.components.items()}
        except ModelMissing:
            if files or spec.pipeline is None:
                store.require(name)  # raises, saying where the store wants the repo
                raise
            family = family_of(spec.pipeline, name)
            return ModelRef(name, folder, spec.pipeline, family, catalog_figures(spec), 0.0, spec)
    return _from_folder(name, folder, spec, parts)


def catalog_figures(spec: ModelSpec) -> MemoryFigures:
    """A catalog model's figures per offload tier; one `memory_gb` serves every tier when the
    entry gives no breakdown."""
    tiers = spec.offload_gb or {tier.value: spec.memory_gb for tier in Offload}
    return MemoryFigures.from_tiers(tiers, "catalog", spec.quantized_gb)


def hub_snapshot(repo: str, revision: str | None) -> Path:
    """A repo's snapshot folder in the local Hugging Face cache, never fetched."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError) as exc:
        raise ModelMissing(
            f"model: {repo!r} is not in the local Hugging Face cache (and no such folder); "
            "vfxmocap never downloads at run time",
            hint=f"Fetch it once (`hf download {repo}`), or pass a diffusers folder.",
        ) from exc


def _from_folder(
    model: str, folder: Path, spec: ModelSpec | None, parts: dict[str, Path] | None = None
) -> ModelRef:
    """The model in a diffusers folder; with `parts` (components from other repos), the
    catalog's pipeline class over the folder's base components."""
    index = _read_index(folder)
    parts = parts or {}
    if spec is not None and spec.pipeline and parts:
        class_name = spec.pipeline
        listed = [name for name in _components(index) if name not in _BASE_ONLY]
    else:
        class_name = str(index.get("_class_name", ""))
        listed = _components(index)
    family = family_of(class_name, str(folder)).for_folder(folder)
    missing = [name for name in listed if not _has_files(folder / name)]
    missing += [str(path) for path in parts.values() if not _has_files(path)]
    if missing:
        raise ModelMissing(
            f"model {model!r}: {folder} lacks the component folder(s) "
            f"{', '.join(missing)} that model_index.json lists",
            hint=f"Place each component's files (config and weights) in {folder}/<component>/.",
        )
    weights = {name: _weights_gb(folder / name) for name in listed}
    weights |= {name: _weights_gb(path) for name, path in parts.items()}
    figures = catalog_figures(spec) if spec is not None else MemoryFigures.from_weights(weights)
    revision = folder.name if folder.parent.name == "snapshots" else None
    gb = round(sum(weights.values()), 4)
    return ModelRef(model, folder, class_name, family, figures, gb, spec, revision, parts)


def _read_index(folder: Path) -> dict[str, Any]:
    path = folder / "model_index.json"
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ModelMissing(
            f"model: {folder} has no model_index.json: not a diffusers folder",
            hint="Place a diffusers pipeline there (save_pretrained layout: model_index.json "
            "and one folder per component: transformer, vae, text_encoder, tokenizer, scheduler).",
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelMissing(f"model: {path} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelMissing(f"model: {path} is not a diffusers model index")
    return data


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelMissing(
            f"model component {folder} has no readable config.json: {exc}",
            hint="Place the component repo's config.json and weights in that folder.",
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("_class_name"), str):
        raise ModelMissing(f"model component {folder}: config.json names no diffusers class")
    return data


def _components(index: dict[str, Any]) -> list[str]:
    """Components model_index.json lists with a library and class (None: left out)."""
    return [
        key
        for key, value in index.items()
        if not key.startswith("_") and isinstance(value, list) and None not in value
    ]


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.iterdir())


def _weights_gb(folder: Path) -> float:
    """A component's parameters in half-precision GB: safetensors headers give the element
    counts; other weight files count as float32."""
    total = 0.0
    for path in folder.rglob("*"):
        if path.suffix == ".safetensors":
            total += 2 * _safetensors_elements(path)
        elif path.suffix in _WEIGHTS:
            total += path.stat().st_size / 2
    return total / 1e9


_MAX_HEADER = 100_000_000  # bytes: the safetensors library's own limit


def _safetensors_elements(path: Path) -> int:
    """Elements in a safetensors file, from its JSON header alone (no tensor is read); a
    header that does not parse, or data the file is too short for, is a `ModelMissing`
    naming the file."""
    try:
        with path.open("rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > _MAX_HEADER:
                raise ValueError(f"it declares a {length}-byte header")
            header = json.loads(fh.read(length))
        tensors = [t for k, t in header.items() if k != "__metadata__"]
        elements = int(sum(prod(t["shape"]) for t in tensors))
        end = max((int(t["data_offsets"][1]) for t in tensors), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        reason = "the file is shorter than a header" if isinstance(exc, struct.error) else exc
        raise _bad_weights(path, f"its header cannot be read ({reason})") from None
    size = path.stat().st_size
    if 8 + length + end > size:
        raise _bad_weights(
            path, f"truncated: its header lists {8 + length + end} bytes, the file has {size}"
        )
    return elements


def _bad_weights(path: Path, reason: str) -> ModelMissing:
    return ModelMissing(
        f"model weights {path} are not a valid safetensors file: {reason}",
        hint="The file is corrupt or was cut short (an interrupted download): delete it and "
        "fetch it again (`vfx models pull NAME` for a catalog model, `hf download REPO` for "
        "a Hub repo), or copy it again.",
    )


# --- loading -----------------------------------------------------------------------------


@dataclass
class Loaded:
    """A pipeline ready to run, and whether this call loaded it (False: it was warm)."""

    pipe: Any
    cold: bool
    seconds: float


def load(ref: ModelRef, class_name: str, plan: Plan) -> Loaded:
    """The pipeline for `ref` as `class_name`, placed as `plan` says; from the model cache
    when an earlier job loaded it the same way."""
    key = _cache_key(ref, class_name, plan)
    started = time.perf_counter()
    loads: list[bool] = []

    def build() -> Any:
        loads.append(True)
        return _load_pipeline(ref.path, class_name, plan, ref.parts)

    pipe = model_cache().get(key, build, ref.weights_gb)
    return Loaded(pipe, bool(loads), time.perf_counter() - started)


def unload(ref: ModelRef, class_name: str, plan: Plan) -> None:
    """Drop the pipeline loaded for `plan` from the model cache and give its memory back
    (after an out-of-memory, a warm pipeline placed that way must not stay resident)."""
    model_cache().discard(_cache_key(ref, class_name, plan))
    release_memory(plan.device)


def _cache_key(ref: ModelRef, class_name: str, plan: Plan) -> tuple[str, ...]:
    return ("diffusers", str(ref.path.resolve()), class_name, *plan.key())


def _load_pipeline(path: Path, class_name: str, plan: Plan, parts: dict[str, Path]) -> Any:
    import diffusers
    import torch
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    dtypes = {"default": getattr(torch, plan.dtype), "vae": getattr(torch, plan.vae_dtype)}
    log.info("loading %s from %s (%s)", class_name, path, plan.describe())
    extra = _bitsandbytes_config(path, plan)
    for part, folder in parts.items():  # each its own diffusers model, by its config's class
        model_class = getattr(diffusers, str(_read_config(folder).get("_class_name")))
        extra[part] = model_class.from_pretrained(
            folder, dtype=dtypes["default"], local_files_only=True
        )
    pipe = getattr(diffusers, class_name).from_pretrained(
        path, dtype=dtypes, local_files_only=True, **extra
    )
    if plan.quant_backend == "quanto":
        quantize_with_quanto(pipe)
    _place(pipe, plan)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _bitsandbytes_config(path: Path, plan: Plan) -> dict[str, Any]:
    """`from_pretrained`'s quantization_config for bitsandbytes' 8-bit weights (CUDA only:
    its kernels are CUDA's, and the planner never picks it elsewhere)."""
    if plan.quant_backend != "bitsandbytes":
        return {}
    if not plan.device.startswith("cuda"):
        raise DeviceError(
            f"bitsandbytes quantization runs on CUDA only; this plan runs on {plan.device}",
            hint="Use optimum-quanto for 8-bit weights on MPS or CPU.",
        )
    from diffusers.quantizers.pipe_quant_config import PipelineQuantizationConfig

    components = [c for c in _components(_read_index(path)) if quantized(c)]
    return {
        "quantization_config": PipelineQuantizationConfig(
            quant_backend="bitsandbytes_8bit",
            quant_kwargs={"load_in_8bit": True},
            components_to_quantize=components,
        )
    }


def quantize_with_quanto(pipe: Any) -> list[str]:
    """Replace the linear layers of the pipeline's denoiser and text encoders with
    optimum-quanto's int8-weight ones (frozen: the weights are stored as int8), before the
    pipeline moves to its device, so only 8-bit weights reach it. Returns what it quantized."""
    import torch
    from optimum.quanto import freeze, qint8, quantize

    done = []
    for name, module in pipe.components.items():
        if quantized(name) and isinstance(module, torch.nn.Module):
            quantize(module, weights=qint8)
            freeze(module)
            done.append(name)
    log.info("int8 weights (optimum-quanto) in %s", ", ".join(done) or "nothing")
    return done


def _place(pipe: Any, plan: Plan) -> None:
    """Move the pipeline to its device, or install the plan's offload hooks."""
    import torch

    if plan.offload is Offload.NONE:
        pipe.to(plan.device)
        return
    if plan.device == "cpu":  # diffusers raises a bare RuntimeError for this
        raise DeviceError(
            f"offload {plan.offload.value} needs an accelerator; this plan runs on the CPU"
        )
    if plan.offload is Offload.MODEL:
        pipe.enable_model_cpu_offload(device=plan.device)
    elif plan.offload is Offload.GROUP:
        pipe.enable_group_offload(
            onload_device=torch.device(plan.device),
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=plan.device.startswith("cuda"),
        )
    else:
        pipe.enable_sequential_cpu_offload(device=plan.device)


def configure_vae(pipe: Any, plan: Plan) -> None:
    """Tiling and slicing per run: a warm pipeline may serve a plan that wants them off."""
    vae = pipe.vae
    for switch, wanted in (("tiling", plan.vae_tiling), ("slicing", plan.vae_slicing)):
        method = getattr(vae, f"{'enable' if wanted else 'disable'}_{switch}", None)
        if method is not None:
            method()
