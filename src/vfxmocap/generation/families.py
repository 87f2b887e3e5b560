"""Diffusers video families behind one interface: each a thin adapter over its pipeline classes.

An adapter knows its pipeline classes, its frame and size rules (applied with a message when
a value is rounded, never silently), its defaults, the dtype that works for it on Apple
Silicon, how to turn a request into the pipeline's call arguments, and how to look at its
latents for a preview. Nothing here imports torch or diffusers at module import.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from vfxmocap.core.errors import InvalidParams

Mode = Literal["text-to-video", "image-to-video"]


@dataclass(frozen=True)
class Request:
    """One generation, in pixels and frames, before the family's rules are applied."""

    prompt: str
    negative: str
    frames: int
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    image: Any = None  # a PIL image for image->video


@dataclass(frozen=True)
class Conformed:
    """A request that satisfies the family's rules, and what was rounded to get there."""

    request: Request
    notes: list[str] = field(default_factory=list)


def _round_to(value: int, multiple: int, offset: int = 0) -> int:
    """The nearest `k * multiple + offset` (k >= 1), ties rounding up."""
    k = max(1, (value - offset + multiple // 2) // multiple)
    return k * multiple + offset


class Family:
    """One diffusers family: its classes, rules, defaults and call conventions."""

    name: ClassVar[str]
    label: ClassVar[str]
    classes: ClassVar[dict[str, Mode]]  # pipeline `_class_name` -> what it generates
    frame_step: ClassVar[int]  # frames must be frame_step * k + 1 (the VAE's time stride)
    side_multiple: ClassVar[int]  # width and height must be multiples of this
    defaults: ClassVar[dict[str, Any]]  # frames, width, height, steps, guidance, fps
    reference_pixels: ClassVar[int]  # width * height * frames the memory figures are for
    mps_dtype: ClassVar[str] = "bfloat16"
    vae_dtype: ClassVar[str | None] = None  # a VAE that needs its own dtype (else the plan's)

    def conform(self, request: Request) -> Conformed:
        """Round frames and sides to the family's rules, saying what changed."""
        notes: list[str] = []
        frames = _round_to(request.frames, self.frame_step, 1)
        if frames != request.frames:
            notes.append(
                f"frames {request.frames} -> {frames}: {self.label} needs "
                f"{self.frame_step}k+1 frames"
            )
        sides = {}
        for side in ("width", "height"):
            value = getattr(request, side)
            sides[side] = _round_to(value, self.side_multiple)
            if sides[side] != value:
                notes.append(
                    f"{side} {value} -> {sides[side]}: {self.label} needs multiples of "
                    f"{self.side_multiple}"
                )
        return Conformed(
            replace(request, frames=frames, width=sides["width"], height=sides["height"]), notes
        )

    def mode_of(self, class_name: str) -> Mode:
        return self.classes[class_name]

    def pipeline_class(self, class_name: str, with_image: bool) -> str:
        """The class to load a checkpoint of `class_name` as, for a request with or without
        an image; InvalidParams when the checkpoint cannot take that conditioning."""
        mode = self.classes[class_name]
        if with_image and mode == "text-to-video":
            raise InvalidParams(
                f"image: this {self.label} model is text-to-video and takes no image",
                hint="Drop --image, or use an image-to-video model.",
            )
        if not with_image and mode == "image-to-video":
            raise InvalidParams(
                f"image: this {self.label} model is image-to-video and needs an image",
                hint="Give --image IMG (the first frame).",
            )
        return class_name

    def call_kwargs(self, request: Request) -> dict[str, Any]:
        """The pipeline call's arguments for a conformed request (generator and callback
        are added by the runner)."""
        kwargs: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative,
            "num_frames": request.frames,
            "width": request.width,
            "height": request.height,
            "num_inference_steps": request.steps,
            "guidance_scale": request.guidance,
            "output_type": "np",
        }
        if request.image is not None:
            kwargs["image"] = request.image
        return kwargs

    def video_latents(self, latents: Any, pipe: Any, request: Request) -> Any:
        """Latents as (batch, channels, frames, height, width) for a preview."""
        return latents


class Wan(Family):
    """Wan 2.1 text->video and image->video (diffusers' WanPipeline family)."""

    name = "wan"
    label = "Wan"
    classes: ClassVar[dict[str, Mode]] = {
        "WanPipeline": "text-to-video",
        "WanImageToVideoPipeline": "image-to-video",
    }
    frame_step = 4
    side_multiple = 16
    defaults: ClassVar[dict[str, Any]] = {
        "frames": 81,
        "width": 832,
        "height": 480,
        "steps": 50,
        "guidance": 5.0,
        "fps": 16,
    }
    reference_pixels = 832 * 480 * 81
    # diffusers' Wan examples keep the VAE in float32: in half precision it overflows.
    vae_dtype = "float32"


class LTX(Family):
    """LTX-Video: one checkpoint serves text->video and image->video."""

    name = "ltx"
    label = "LTX-Video"
    classes: ClassVar[dict[str, Mode]] = {
        "LTXPipeline": "text-to-video",
        "LTXImageToVideoPipeline": "image-to-video",
    }
    frame_step = 8
    side_multiple = 32
    defaults: ClassVar[dict[str, Any]] = {
        "frames": 121,
        "width": 704,
        "height": 480,
        "steps": 50,
        "guidance": 3.0,
        "fps": 24,
    }
    reference_pixels = 704 * 480 * 121

    def pipeline_class(self, class_name: str, with_image: bool) -> str:
        """The same weights load as either pipeline: the image picks which."""
        return "LTXImageToVideoPipeline" if with_image else "LTXPipeline"

    def video_latents(self, latents: Any, pipe: Any, request: Request) -> Any:
        """LTX denoises packed (batch, tokens, channels) latents: unpack them to a video."""
        return pipe._unpack_latents(
            latents,
            (request.frames - 1) // pipe.vae_temporal_compression_ratio + 1,
            request.height // pipe.vae_spatial_compression_ratio,
            request.width // pipe.vae_spatial_compression_ratio,
            pipe.transformer_spatial_patch_size,
            pipe.transformer_temporal_patch_size,
        )


FAMILIES: tuple[Family, ...] = (Wan(), LTX())


def family_of(class_name: str, where: str) -> Family:
    """The family whose adapter handles pipeline class `class_name` (from model_index.json)."""
    for family in FAMILIES:
        if class_name in family.classes:
            return family
    known = ", ".join(c for f in FAMILIES for c in f.classes)
    raise InvalidParams(
        f"model: {where} is a {class_name!r}, not a video pipeline vfxmocap runs",
        hint=f"Supported pipeline classes: {known}.",
    )
