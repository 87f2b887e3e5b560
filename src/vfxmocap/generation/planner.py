"""The memory planner: dtype, offload tier, weight quantization and VAE tiling for one
model on one device.

Decided from the model's memory figures (peak accelerator GB per offload tier, unquantized
and with 8-bit weights, from the catalog or estimated from the weights) and what the device
report says is free; nothing here probes a device (device.py does). `vfx generate
--plan-only` prints the plan; the sidecar JSON records it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from vfxmocap.core.errors import InsufficientMemory
from vfxmocap.device import DeviceReport
from vfxmocap.generation.families import Family, Request


class Offload(StrEnum):
    """How much of the pipeline lives off the accelerator, least to most (and slowest)."""

    NONE = "none"  # every component on the device
    MODEL = "model"  # one component at a time on the device (enable_model_cpu_offload)
    GROUP = "group"  # blocks streamed in per forward pass (enable_group_offload)
    SEQUENTIAL = "sequential"  # every leaf module streamed in (enable_sequential_cpu_offload)


TIERS = tuple(Offload)
# Offloading to CPU needs an accelerator to offload from; on Apple Silicon CPU and GPU share
# memory, so only keeping components out of Metal's per-process cap helps.
_TIERS_ON = {"cuda": TIERS, "mps": (Offload.NONE, Offload.MODEL), "cpu": (Offload.NONE,)}
# Share of device memory a plan may fill: the CUDA context and fragmentation take the rest;
# on CPU the OS and the app need theirs.
_HEADROOM = {"cuda": 0.9, "mps": 1.0, "cpu": 0.8}
_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# Out-of-memory step-downs shrink a request this far at most: sides by a quarter a step down
# to half the asked, frames by half a step down to a quarter of the asked.
_SIDE_STEP, _SIDE_FLOOR = 0.75, 0.5
_FRAME_FLOOR = 0.25
_DECODE_CHUNK, _TIGHT_CHUNK = 8, 2

# 8-bit weight quantization of the denoiser and the text encoders (the components whose
# names start so): where the weights stay resident (offload none or model) it halves them;
# group and sequential offload stream weights in, so there it would save little.
QUANTIZED_COMPONENTS = ("transformer", "unet", "text_encoder")
_QUANTIZABLE_TIERS = (Offload.NONE, Offload.MODEL)
# Backends by preference, with the device kinds each runs on: bitsandbytes' LLM.int8 kernels
# are CUDA's; optimum-quanto's int8 weights run on CUDA, MPS and CPU.
_BACKENDS = {"bitsandbytes": ("cuda",), "quanto": ("cuda", "mps", "cpu")}
_MODULES = {"bitsandbytes": "bitsandbytes", "quanto": "optimum.quanto"}


def installed_quant_backends() -> tuple[str, ...]:
    """The quantization backends importable here, found without importing them."""
    found = []
    for backend, module in _MODULES.items():
        try:
            present = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # optimum itself missing
            present = False
        if present:
            found.append(backend)
    return tuple(found)


def quant_backend(kind: str, installed: Collection[str] | None = None) -> str | None:
    """The backend that quantizes on this kind of device, if one is installed: bitsandbytes
    only on CUDA (never on MPS or CPU), else optimum-quanto anywhere."""
    installed = installed_quant_backends() if installed is None else installed
    return next((b for b, kinds in _BACKENDS.items() if b in installed and kind in kinds), None)


@dataclass(frozen=True)
class MemoryFigures:
    """Peak GB per offload tier, in half precision, at the family's reference size."""

    gb: Mapping[Offload, float]
    source: str  # "catalog" (published or noted figures) or "estimated from the weights"
    # The same with 8-bit weights in QUANTIZED_COMPONENTS, for the tiers that offer it.
    int8: Mapping[Offload, float] = field(default_factory=dict)

    @classmethod
    def from_tiers(
        cls, tiers: Mapping[str, float], source: str, int8: Mapping[str, float] | None = None
    ) -> MemoryFigures:
        missing = [t.value for t in TIERS if t.value not in tiers]
        if missing:
            raise ValueError(f"memory figures lack tier(s) {', '.join(missing)}")
        unknown = sorted(set(int8 or {}) - {t.value for t in _QUANTIZABLE_TIERS})
        if unknown:
            raise ValueError(f"8-bit figures for tier(s) {', '.join(unknown)}: only none, model")
        quantized = {Offload(t): float(gb) for t, gb in (int8 or {}).items()}
        return cls({t: float(tiers[t.value]) for t in TIERS}, source, quantized)

    @classmethod
    def from_weights(cls, components_gb: Mapping[str, float]) -> MemoryFigures:
        """A rough estimate from each component's half-precision weights: activations are
        taken as 1 GB plus a quarter of the largest component; 8-bit weights halve the
        quantized components."""
        half = {name: gb / 2 if quantized(name) else gb for name, gb in components_gb.items()}

        def tiers(weights: Mapping[str, float]) -> dict[Offload, float]:
            largest = max(weights.values(), default=0.0)
            active = 1.0 + 0.25 * max(components_gb.values(), default=0.0)
            return {
                Offload.NONE: sum(weights.values()) + active,
                Offload.MODEL: largest + active,
                Offload.GROUP: 0.2 * largest + active,
                Offload.SEQUENTIAL: active,
            }

        int8 = {t: round(v, 2) for t, v in tiers(half).items() if t in _QUANTIZABLE_TIERS}
        full = {t: round(v, 2) for t, v in tiers(components_gb).items()}
        return cls(full, "estimated from the weights", int8)

    @property
    def least_gb(self) -> float:
        """The least memory any tier runs in: what a worker must have to take the job."""
        return min(self.gb.values())

    def need(self, rung: Rung) -> float:
        offload, quantize = rung
        return (self.int8 if quantize else self.gb)[offload]


def quantized(component: str) -> bool:
    """Whether 8-bit plans quantize this pipeline component."""
    return component.startswith(QUANTIZED_COMPONENTS)


# One setting of the ladder a plan climbs down: an offload tier and whether weights are 8-bit.
Rung = tuple[Offload, bool]


def ladder(kind: str, figures: MemoryFigures, backend: str | None) -> list[Rung]:
    """The settings a device offers, fastest first: each offload tier, then, where a backend
    quantizes there and the figures say what it needs, the same tier with 8-bit weights, so
    quantizing is preferred to offloading more."""
    rungs: list[Rung] = []
    for tier in _TIERS_ON[kind]:
        rungs.append((tier, False))
        if backend is not None and tier in figures.int8:
            rungs.append((tier, True))
    return rungs


@dataclass(frozen=True)
class Plan:
    """How a pipeline is placed on a device for one generation."""

    device: str  # torch device: "cuda:0", "mps", "cpu"
    dtype: str
    vae_dtype: str
    offload: Offload
    vae_tiling: bool
    vae_slicing: bool
    need_gb: float  # the chosen tier's figure, in the plan's dtype
    usable_gb: float
    figures: str  # where the memory figures came from
    notes: tuple[str, ...] = ()
    decode_chunk: int | None = None  # frames the VAE decodes at once (SVD), None: all
    quantize: str | None = None  # "int8": 8-bit weights in QUANTIZED_COMPONENTS
    quant_backend: str | None = None  # "quanto" or "bitsandbytes" (the one installed)
    free_gb: float | None = None  # what the device said was free when planned (None: unknown)

    def call_kwargs(self) -> dict[str, Any]:
        """What the plan adds to the pipeline call."""
        return {} if self.decode_chunk is None else {"decode_chunk_size": self.decode_chunk}

    def key(self) -> tuple[str, ...]:
        """What a loaded pipeline depends on: the model cache keys on it."""
        quant = f"{self.quantize}-{self.quant_backend}" if self.quantize else "unquantized"
        return (self.device, self.dtype, self.vae_dtype, self.offload.value, quant)

    @property
    def rung(self) -> Rung:
        return (self.offload, self.quantize is not None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["offload"] = self.offload.value
        data["notes"] = list(self.notes)
        return data

    def describe(self) -> str:
        """One line for people: `vfx generate --plan-only` prints it."""
        tiling = "on" if self.vae_tiling else "off"
        chunks = (
            "" if self.decode_chunk is None else f", decoding {self.decode_chunk} frames at once"
        )
        weights = f", int8 weights ({self.quant_backend})" if self.quantize else ""
        free = "" if self.free_gb is None else f", {self.free_gb:g} GB free"
        return (
            f"{self.device}: {self.dtype} (VAE {self.vae_dtype}), offload {self.offload.value}"
            f"{weights}, VAE tiling {tiling}{chunks}; needs ~{self.need_gb:g} GB of "
            f"{self.usable_gb:g} GB usable{free} ({self.figures})"
        )


def _held_gb(kind: str) -> float:
    if kind != "cpu":
        return 0.0
    from vfxmocap.models.cache import model_cache

    return model_cache().used_gb  # their half-precision sizes: at most what they hold


def _rung_label(rung: Rung, backend: str | None) -> str:
    offload, quantize = rung
    return f"offload {offload.value}" + (f", int8 weights ({backend})" if quantize else "")


def dtype_for(device: DeviceReport, family: Family) -> tuple[str, str, list[str]]:
    """(dtype, VAE dtype, notes): bf16 where CUDA has it, else fp16; the family's dtype on
    MPS (fp16 gives NaN / black frames there, and MPS has no float64); fp32 on CPU."""
    notes: list[str] = []
    if device.kind == "cpu":
        return "float32", "float32", notes
    if device.kind == "mps":
        dtype = family.mps_dtype
    elif device.bf16:
        dtype = "bfloat16"
    else:
        dtype = "float16"
        notes.append("this GPU has no native bfloat16: float16 may overflow to black frames")
    return dtype, family.vae_dtype or dtype, notes


def plan(
    device: DeviceReport,
    figures: MemoryFigures,
    family: Family,
    pixels: int | None = None,
    *,
    held_gb: float | None = None,
    backends: Collection[str] | None = None,
) -> Plan:
    """The fastest setting of the device's ladder whose figure fits what is free there
    (the device's own memory when it cannot say what is free), with the dtype for it; VAE
    tiling when memory is tight or the video is larger than the figures' reference.

    `held_gb`: what this process holds for warm pipelines that the free figure counts as
    taken (None: on CPU what the model cache counts, the half-precision sizes, at most what
    its float32 pipelines hold; device.py already adds back what an accelerator's allocator
    holds), so a second job on a warm model plans as the first did. `backends`: the quantization
    backends installed (None: looked up)."""
    dtype, vae_dtype, notes = dtype_for(device, family)
    scale = _BYTES[dtype] / 2  # the figures are for half precision
    room = device.usable_memory_gb
    free = device.free_memory_gb
    if free is not None:
        free = round(free + (_held_gb(device.kind) if held_gb is None else held_gb), 2)
        room = min(room, free)
    usable = round(room * _HEADROOM[device.kind], 2)
    backend = quant_backend(device.kind, backends)
    rungs = ladder(device.kind, figures, backend)
    rung = next((r for r in rungs if figures.need(r) * scale <= usable), None)
    if rung is None:
        last = rungs[-1]
        unquantizable = backend is None and bool(figures.int8)
        free_note = "" if free is None else f" ({free:g} GB free)"
        raise InsufficientMemory(
            f"the model needs ~{figures.need(last) * scale:g} GB on {device.torch_device} "
            f"even with {_rung_label(last, backend)} ({dtype}, {figures.source}); "
            f"{usable:g} GB usable there{free_note}",
            hint="Free memory on the device (other jobs, other programs), or use a device "
            "with more memory or a smaller model"
            + ("; or install optimum-quanto for 8-bit weights." if unquantizable else "."),
        )
    tier, quantize = rung
    if free is not None and free < device.usable_memory_gb:
        notes.append(f"{free:g} GB of {device.usable_memory_gb:g} GB free: planned for that")
    larger = pixels is not None and pixels > family.reference_pixels
    tiling = device.kind != "cpu" and (tier is not Offload.NONE or larger)
    if larger:
        notes.append("larger than the size the memory figures are for: VAE tiling on")
    return Plan(
        device=device.torch_device,
        dtype=dtype,
        vae_dtype=vae_dtype,
        offload=tier,
        vae_tiling=tiling,
        vae_slicing=tiling,
        need_gb=round(figures.need(rung) * scale, 2),
        usable_gb=usable,
        figures=figures.source,
        notes=tuple(notes),
        decode_chunk=_decode_chunk(family, tiling),
        quantize="int8" if quantize else None,
        quant_backend=backend if quantize else None,
        free_gb=free,
    )


def _decode_chunk(family: Family, tight: bool) -> int | None:
    """SVD decodes its frames in chunks: 8 at once (Stability's example), 2 when tight."""
    if not family.decode_chunks:
        return None
    return _TIGHT_CHUNK if tight else _DECODE_CHUNK


@dataclass(frozen=True)
class StepDown:
    """The next try after an out-of-memory: a lighter plan or a smaller request, and why."""

    plan: Plan
    request: Request
    note: str


def step_down(
    placed: Plan,
    request: Request,
    asked: Request,
    figures: MemoryFigures,
    family: Family,
    *,
    backends: Collection[str] | None = None,
) -> StepDown | None:
    """What to try after `placed` ran out of memory on `request`: the next setting of the
    device's ladder (8-bit weights, then the next offload tier), then a smaller resolution,
    then fewer frames (never below the floors relative to the `asked` request); None when
    nothing lighter is left."""
    where = f"{request.width}x{request.height}x{request.frames}, " + _rung_label(
        placed.rung, placed.quant_backend
    )
    kind = placed.device.partition(":")[0]
    backend = placed.quant_backend or quant_backend(kind, backends)
    rungs = ladder(kind, figures, backend)
    lighter = rungs[rungs.index(placed.rung) + 1 :] if placed.rung in rungs else ()
    if lighter:
        tier, quantize = rung = lighter[0]
        scale = _BYTES[placed.dtype] / 2
        plan = replace(
            placed,
            offload=tier,
            vae_tiling=True,
            vae_slicing=True,
            decode_chunk=_decode_chunk(family, True),
            need_gb=round(figures.need(rung) * scale, 2),
            quantize="int8" if quantize else None,
            quant_backend=backend if quantize else None,
        )
        note = f"out of memory at {where}: {_rung_label(rung, backend)}"
        return StepDown(plan, request, note)
    smaller = _smaller_sides(request, asked, family)
    if smaller is not None:
        note = f"out of memory at {where}: {smaller.width}x{smaller.height}"
        return StepDown(placed, smaller, note)
    fewer = _fewer_frames(request, asked, family)
    if fewer is not None:
        return StepDown(placed, fewer, f"out of memory at {where}: {fewer.frames} frames")
    return None


def _smaller_sides(request: Request, asked: Request, family: Family) -> Request | None:
    width, height = (round(side * _SIDE_STEP) for side in (request.width, request.height))
    shrunk = family.conform(replace(request, width=width, height=height)).request
    floor = (asked.width * _SIDE_FLOOR, asked.height * _SIDE_FLOOR)
    if (shrunk.width, shrunk.height) == (request.width, request.height):
        return None
    if shrunk.width < floor[0] or shrunk.height < floor[1]:
        return None
    return shrunk


def _fewer_frames(request: Request, asked: Request, family: Family) -> Request | None:
    shrunk = family.conform(replace(request, frames=(request.frames - 1) // 2 + 1)).request
    if shrunk.frames >= request.frames or shrunk.frames < asked.frames * _FRAME_FLOOR:
        return None
    return shrunk
