"""The memory planner: dtype, offload tier and VAE tiling for one model on one device.

Decided from the model's memory figures (peak accelerator GB per offload tier, from the
catalog or estimated from the weights) and what the device report says it has; nothing here
probes a device (device.py does). `vfx generate --plan-only` prints the plan; the sidecar
JSON records it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
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


@dataclass(frozen=True)
class MemoryFigures:
    """Peak GB per offload tier, in half precision, at the family's reference size."""

    gb: Mapping[Offload, float]
    source: str  # "catalog" (published or noted figures) or "estimated from the weights"

    @classmethod
    def from_tiers(cls, tiers: Mapping[str, float], source: str) -> MemoryFigures:
        missing = [t.value for t in TIERS if t.value not in tiers]
        if missing:
            raise ValueError(f"memory figures lack tier(s) {', '.join(missing)}")
        return cls({t: float(tiers[t.value]) for t in TIERS}, source)

    @classmethod
    def from_weights(cls, components_gb: Mapping[str, float]) -> MemoryFigures:
        """A rough estimate from each component's half-precision weights: activations are
        taken as 1 GB plus a quarter of the largest component."""
        total = sum(components_gb.values())
        largest = max(components_gb.values(), default=0.0)
        active = 1.0 + 0.25 * largest
        tiers = {
            Offload.NONE: total + active,
            Offload.MODEL: largest + active,
            Offload.GROUP: 0.2 * largest + active,
            Offload.SEQUENTIAL: active,
        }
        return cls({t: round(v, 2) for t, v in tiers.items()}, "estimated from the weights")

    @property
    def least_gb(self) -> float:
        """The least memory any tier runs in: what a worker must have to take the job."""
        return min(self.gb.values())


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

    def call_kwargs(self) -> dict[str, Any]:
        """What the plan adds to the pipeline call."""
        return {} if self.decode_chunk is None else {"decode_chunk_size": self.decode_chunk}

    def key(self) -> tuple[str, ...]:
        """What a loaded pipeline depends on: the model cache keys on it."""
        return (self.device, self.dtype, self.vae_dtype, self.offload.value)

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
        return (
            f"{self.device}: {self.dtype} (VAE {self.vae_dtype}), offload {self.offload.value}, "
            f"VAE tiling {tiling}{chunks}; needs ~{self.need_gb:g} GB of {self.usable_gb:g} GB "
            f"usable ({self.figures})"
        )


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
    device: DeviceReport, figures: MemoryFigures, family: Family, pixels: int | None = None
) -> Plan:
    """The lightest offload tier whose figure fits the device, with the dtype for it; VAE
    tiling when memory is tight or the video is larger than the figures' reference."""
    dtype, vae_dtype, notes = dtype_for(device, family)
    scale = _BYTES[dtype] / 2  # the figures are for half precision
    usable = round(device.usable_memory_gb * _HEADROOM[device.kind], 2)
    tiers = _TIERS_ON[device.kind]
    tier = next((t for t in tiers if figures.gb[t] * scale <= usable), None)
    if tier is None:
        raise InsufficientMemory(
            f"the model needs ~{figures.gb[tiers[-1]] * scale:g} GB on {device.torch_device} "
            f"even with offload {tiers[-1].value} ({dtype}, {figures.source}); "
            f"{usable:g} GB usable there",
            hint="Use a device with more memory or a smaller model.",
        )
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
        need_gb=round(figures.gb[tier] * scale, 2),
        usable_gb=usable,
        figures=figures.source,
        notes=tuple(notes),
        decode_chunk=_decode_chunk(family, tiling),
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
    placed: Plan, request: Request, asked: Request, figures: MemoryFigures, family: Family
) -> StepDown | None:
    """What to try after `placed` ran out of memory on `request`: the next offload tier the
    device offers, then a smaller resolution, then fewer frames (never below the floors
    relative to the `asked` request); None when nothing lighter is left."""
    where = f"{request.width}x{request.height}x{request.frames}, offload {placed.offload.value}"
    tiers = _TIERS_ON[placed.device.partition(":")[0]]
    lighter = tiers[tiers.index(placed.offload) + 1 :] if placed.offload in tiers else ()
    if lighter:
        tier = lighter[0]
        scale = _BYTES[placed.dtype] / 2
        plan = replace(
            placed,
            offload=tier,
            vae_tiling=True,
            vae_slicing=True,
            decode_chunk=_decode_chunk(family, True),
            need_gb=round(figures.gb[tier] * scale, 2),
        )
        return StepDown(plan, request, f"out of memory at {where}: offload {tier.value}")
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
