"""Generation overhead: our render path against bare diffusers on the same tiny pipeline.

Builds the tests' tiny random-weight pipelines (Wan 2.1 T2V, LTX-Video) from configs, then
runs each the bare way (`Pipeline.from_pretrained` + `pipe(...)`) and our way (loader,
planner, the step callback with progress and cancel checks, uint8 frames) with the same
seed, alternating, and prints the median times, their ratio, whether the frames are
identical, and the load time cold (first job) against warm (second job, from the model
cache). Random weights: this measures overhead, not picture quality.

With `--random-weights CONFIG` it measures one full-size model instead, without its
weights: CONFIG is a diffusers folder holding only configs (`model_index.json`, each
component's `config.json`, the tokenizer and scheduler files: a Hub repo fetched without
its weight files). Every model is built from its config with random weights, planned by our
planner from its parameter counts, placed as the plan says, and run through our render
path; it prints the plan, peak memory (CUDA: peak allocated; elsewhere the process's peak
RSS) and seconds per denoising step. Random weights can give NaN frames: reported, not an
error, since memory and time are what is measured.

    python bench/generate.py [--steps 10] [--repeats 5] [--json]
    python bench/generate.py --random-weights wan2.1-t2v-1.3b-configs/ \
        --width 832 --height 480 --frames 81 --steps 5
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' tiny pipelines

from tests.tiny_pipelines import build
from vfxmocap.core.errors import DeviceError
from vfxmocap.core.progress import CancelToken, Progress, ProgressEvent
from vfxmocap.device import resolve_device
from vfxmocap.generation.families import Request, family_of
from vfxmocap.generation.loader import (
    _components,
    _place,
    configure_vae,
    load,
    quantize_with_quanto,
    resolve,
)
from vfxmocap.generation.planner import MemoryFigures, plan
from vfxmocap.generation.render import render
from vfxmocap.models.cache import model_cache

# (tiny pipeline, frames, side): LTX's 32x spatial VAE needs a larger side than Wan's 16.
CASES = (("wan-t2v", 17, 64), ("ltx", 17, 128))
TARGET_RATIO = 1.05  # issue #10: our path at most 5% slower than bare diffusers


def bare(folder: Path, request: Request, class_name: str) -> tuple[Any, list[np.ndarray]]:
    import diffusers
    import torch

    pipe = getattr(diffusers, class_name).from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    def call() -> list[np.ndarray]:
        out = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative,
            num_frames=request.frames,
            width=request.width,
            height=request.height,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            generator=torch.Generator("cpu").manual_seed(request.seed),
            output_type="np",
        )
        return [(np.clip(f, 0, 1) * 255).round().astype(np.uint8) for f in out.frames[0]]

    return call, call()


def ours(folder: Path, request: Request) -> tuple[Any, list[np.ndarray], dict[str, float]]:
    model_cache().clear()
    ref = resolve(str(folder))
    placed = plan(resolve_device(), ref.figures, ref.family)
    cold = load(ref, ref.class_name, placed)
    warm = load(ref, ref.class_name, placed)

    def call() -> list[np.ndarray]:
        pipe = load(ref, ref.class_name, placed).pipe
        return render(pipe, ref.family, request, Progress(), CancelToken(), ref.class_name).frames

    return call, call(), {"cold_load_s": cold.seconds, "warm_load_s": warm.seconds}


def timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def measure(name: str, frames: int, side: int, steps: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = build(name, Path(tmp) / name)
        ref = resolve(str(folder))
        request = Request(
            prompt="a red cat runs in the snow",
            negative="",
            frames=frames,
            width=side,
            height=side,
            steps=steps,
            guidance=ref.family.default("guidance"),
            seed=42,
        )
        bare_call, bare_frames = bare(folder, request, ref.class_name)
        our_call, our_frames, loads = ours(folder, request)
        bare_s, our_s = [], []
        for _ in range(repeats):  # alternate, so drift on a shared machine hits both
            bare_s.append(timed(bare_call))
            our_s.append(timed(our_call))
    identical = len(bare_frames) == len(our_frames) and all(
        np.array_equal(a, b) for a, b in zip(bare_frames, our_frames, strict=True)
    )
    return {
        "pipeline": name,
        "video": f"{side}x{side}x{frames}",
        "steps": steps,
        "bare_s": round(statistics.median(bare_s), 4),
        "ours_s": round(statistics.median(our_s), 4),
        "ratio": round(statistics.median(our_s) / statistics.median(bare_s), 3),
        "identical_frames": identical,
        "cold_load_s": round(loads["cold_load_s"], 4),
        "warm_load_s": round(loads["warm_load_s"], 6),
    }


# --- a full-size model from its config, random weights ------------------------------------


def _component(folder: Path, name: str, library: str, class_name: str, dtype: Any) -> Any:
    """One pipeline component from its config: models with random weights in `dtype`,
    tokenizers, schedulers and processors from their (weightless) files."""
    import torch

    module = importlib.import_module(library)
    cls = getattr(module, class_name)
    where = folder / name
    if library == "diffusers" and issubclass(cls, module.ModelMixin):
        with _default_dtype(torch, dtype):
            model = cls.from_config(cls.load_config(where))
        # As from_pretrained does: the modules the class keeps in float32 stay there.
        keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
        for name, param in model.named_parameters():
            if keep & set(name.split(".")):
                param.data = param.data.float()
        return model
    if library == "transformers" and issubclass(cls, module.PreTrainedModel):
        config = module.AutoConfig.from_pretrained(where)
        return cls._from_config(config, dtype=dtype).eval()
    return cls.from_pretrained(where)


@contextlib.contextmanager
def _default_dtype(torch: Any, dtype: Any) -> Iterator[None]:
    saved = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


def _index(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "model_index.json").read_text("utf-8")))


def parameters(folder: Path, index: dict[str, Any]) -> dict[str, int]:
    """Each model component's parameter count, on torch's meta device (no memory, no time):
    the planner's figures come from these, as for a folder with weights."""
    import torch

    counts = {}
    with torch.device("meta"):
        for name, (library, class_name) in _models(index):
            model = _component(folder, name, library, class_name, torch.bfloat16)
            if isinstance(model, torch.nn.Module):
                counts[name] = sum(p.numel() for p in model.parameters())
    return counts


def _models(index: dict[str, Any]) -> list[tuple[str, tuple[str, str]]]:
    """(component, (library, class)) for each component model_index.json lists."""
    return [(name, (index[name][0], index[name][1])) for name in _components(index)]


def random_weights(
    folder: Path, width: int | None, height: int | None, frames: int | None, steps: int
) -> dict[str, Any]:
    """Build the pipeline in `folder` (configs only) with random weights, plan and place it
    as a job would, and run one generation; its plan, peak memory and seconds per step."""
    import torch

    index = _index(folder)
    class_name = str(index["_class_name"])
    family = family_of(class_name, str(folder))
    counts = parameters(folder, index)
    sizes = {name: 2 * count / 1e9 for name, count in counts.items()}  # bf16 GB
    device = resolve_device()
    request = family.conform(
        Request(
            prompt="a red cat runs in the snow",
            negative="",
            frames=frames or family.default("frames"),
            width=width or family.default("width"),
            height=height or family.default("height"),
            steps=steps,
            guidance=family.default("guidance"),
            seed=42,
        )
    ).request
    placed = plan(
        device,
        MemoryFigures.from_weights(sizes),
        family,
        request.width * request.height * request.frames,
    )
    started = time.perf_counter()
    dtypes = {"default": getattr(torch, placed.dtype), "vae": getattr(torch, placed.vae_dtype)}
    parts = {
        name: _component(folder, name, library, cls, dtypes["vae" if name == "vae" else "default"])
        for name, (library, cls) in _models(index)
    }
    pipe = getattr(importlib.import_module("diffusers"), class_name)(**parts)
    if placed.quant_backend == "quanto":
        quantize_with_quanto(pipe)
    _place(pipe, placed)
    pipe.set_progress_bar_config(disable=True)
    configure_vae(pipe, placed)
    built_s = time.perf_counter() - started
    cuda = placed.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(placed.device)
    steps_at: list[float] = []

    def on_event(event: ProgressEvent) -> None:
        if event.stage == "denoise" and event.value > 0:
            steps_at.append(time.perf_counter())

    nan = False
    try:
        render(
            pipe,
            family,
            request,
            Progress(on_event, min_interval_s=0.0),
            CancelToken(),
            class_name,
            placed.call_kwargs(),
        )
    except DeviceError as exc:
        if "NaN" not in exc.message:
            raise
        nan = True
    if cuda:
        peak_gb = torch.cuda.max_memory_allocated(placed.device) / 1024**3
        memory = "peak allocated"
    else:
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1024**3
        memory = "process peak RSS"
    gaps = [b - a for a, b in itertools.pairwise(steps_at)]
    return {
        "model": class_name,
        "parameters": counts,
        "video": f"{request.width}x{request.height}x{request.frames}",
        "steps": request.steps,
        "plan": placed.describe(),
        "build_s": round(built_s, 2),
        "s_per_step": round(statistics.median(gaps), 4) if gaps else None,
        "peak_gb": round(peak_gb, 2),
        "memory": memory,
        "nan_frames": nan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--random-weights", type=Path, metavar="CONFIG")
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--frames", type=int)
    args = parser.parse_args()
    import diffusers
    import torch
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    if args.random_weights is not None:
        row = random_weights(args.random_weights, args.width, args.height, args.frames, args.steps)
        if args.json:
            print(json.dumps(row, indent=2))
            return
        step = "n/a" if row["s_per_step"] is None else f"{row['s_per_step']:.3f} s"
        print(
            f"{row['model']} {row['video']} {row['steps']} steps, random weights: {step} a "
            f"step, {row['memory']} {row['peak_gb']:.2f} GB, built in {row['build_s']:.1f} s"
            f"{', NaN frames' if row['nan_frames'] else ''}\n  plan: {row['plan']}"
        )
        return
    torch.set_num_threads(1)
    rows = [measure(n, f, s, args.steps, args.repeats) for n, f, s in CASES]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print(
            f"{row['pipeline']:8s} {row['video']:>11s} {row['steps']} steps: bare "
            f"{row['bare_s']:.3f} s, ours {row['ours_s']:.3f} s, ratio {row['ratio']:.3f}x "
            f"({'within' if row['ratio'] <= TARGET_RATIO else 'OVER'} {TARGET_RATIO}x), "
            f"identical frames {row['identical_frames']}; load cold {row['cold_load_s']:.3f} s, "
            f"warm {row['warm_load_s'] * 1000:.3f} ms"
        )


if __name__ == "__main__":
    main()
