"""Diffusers video families behind one interface: each a thin adapter over its pipeline classes.

An adapter knows its pipeline classes, its frame and size rules (applied with a message when
a value is rounded, never silently), its defaults, the dtype that works for it on Apple
Silicon, how to turn a request into the pipeline's call arguments, and how to look at its
latents for a preview. Nothing here imports torch or diffusers at module import.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from vfxmocap.core.errors import InvalidParams

Mode = Literal["text-to-video", "image-to-video", "video-to-video", "control-to-video"]
# Conditioning a request can carry, and how messages name each (the field names are the
# workflow's input fields, so an error names the option to change).
WHAT = {  # field -> (with an article, bare)
    "prompt": ("a prompt", "prompt"),
    "negative": ("a negative prompt", "negative prompt"),
    "image": ("an image", "image"),
    "last_image": ("a last frame", "last frame"),
    "video": ("a video", "video"),
    "mask": ("a mask video", "mask video"),
    "reference": ("reference images", "reference images"),
}
TEXT = frozenset({"prompt", "negative"})
LastFrame = Literal["no", "optional", "required"]


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
    image: Any = None  # a PIL image: the first frame (image->video)
    last_image: Any = None  # a PIL image: the last frame (first-last-frame)
    video: Any = None  # PIL frames: a control / source video (VACE, ControlNet, video->video)
    mask: Any = None  # PIL frames: where VACE generates (white) and keeps (black)
    reference: Any = None  # PIL images: VACE's reference images (a character, a background)


@dataclass(frozen=True)
class Conformed:
    """A request that satisfies the family's rules, and what was rounded to get there."""

    request: Request
    notes: list[str] = field(default_factory=list)


def _json(path: Path) -> dict[str, Any]:
    """A checkpoint's JSON config, or {} when unreadable (the loader reports those)."""
    import json

    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _round_to(value: int, multiple: int, offset: int = 0) -> int:
    """The nearest `k * multiple + offset` (k >= 1), ties rounding up."""
    k = max(1, (value - offset + multiple // 2) // multiple)
    return k * multiple + offset


class Family:
    """One diffusers family: its classes, rules, defaults and call conventions."""

    name: ClassVar[str]
    label: ClassVar[str]
    classes: ClassVar[dict[str, Mode]]  # pipeline `_class_name` -> what it generates
    # Per class: the conditioning it takes, and what it needs (default: text, and a
    # text->video class needs its prompt, an image->video class its image).
    takes: ClassVar[dict[str, frozenset[str]]] = {}
    needs: ClassVar[dict[str, frozenset[str]]] = {}
    frame_step: ClassVar[int]  # frames must be frame_step * k + 1 (the VAE's time stride)
    max_frames: ClassVar[int | None] = None  # what the denoiser can attend over at once
    side_multiple: int  # width and height must be multiples of this (a checkpoint may say)
    defaults: ClassVar[dict[str, Any]]  # frames, width, height, steps, guidance, fps
    reference_pixels: ClassVar[int]  # width * height * frames the memory figures are for
    mps_dtype: ClassVar[str] = "bfloat16"
    vae_dtype: ClassVar[str | None] = None  # a VAE that needs its own dtype (else the plan's)
    decode_chunks: ClassVar[bool] = False  # the call takes decode_chunk_size (SVD)
    chains_control: ClassVar[bool] = False  # a chain can follow a control video (VACE)

    def for_folder(self, folder: Path) -> Family:
        """This family as a particular checkpoint has it (SVD: its frame count)."""
        return self

    def default(self, key: str) -> Any:
        """The family's default for a request field (frames, width, ..., fps)."""
        return self.defaults[key]

    def conform(self, request: Request) -> Conformed:
        """Round frames and sides to the family's rules, saying what changed."""
        notes: list[str] = []
        frames = self._frames(request.frames, notes)
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

    def _frames(self, asked: int, notes: list[str]) -> int:
        frames = _round_to(asked, self.frame_step, 1)
        if frames != asked:
            notes.append(
                f"frames {asked} -> {frames}: {self.label} needs {self.frame_step}k+1 frames"
            )
        if self.max_frames is not None and frames > self.max_frames:
            notes.append(
                f"frames {frames} -> {self.max_frames}: {self.label} takes at most "
                f"{self.max_frames} frames"
            )
            frames = self.max_frames
        return frames

    def mode_of(self, class_name: str) -> Mode:
        return self.classes[class_name]

    def pipeline_class(self, class_name: str, given: frozenset[str]) -> str:
        """The class to load a checkpoint of `class_name` as for a request carrying `given`;
        InvalidParams naming the field when the checkpoint cannot take that conditioning."""
        return self.check(class_name, given)

    def check(self, class_name: str, given: frozenset[str]) -> str:
        mode = self.classes[class_name]
        takes = self.takes.get(
            class_name, TEXT | ({"image"} if mode == "image-to-video" else set())
        )
        needs = self.needs.get(
            class_name, frozenset({"image" if mode == "image-to-video" else "prompt"})
        )
        for name in sorted(given - takes):
            raise InvalidParams(
                f"{name}: this {self.label} model ({class_name}) is {mode} and takes no "
                f"{WHAT[name][1]}",
                hint=f"Drop the {name} option, or use a model that takes {WHAT[name][0]}.",
            )
        for name in sorted(needs - given):
            raise InvalidParams(
                f"{name}: this {self.label} model ({class_name}) is {mode} and needs "
                f"{WHAT[name][0]}",
                hint=f"Give the {name} option.",
            )
        return class_name

    def segment_frames(self) -> int:
        """The frames one segment takes: what the model was trained to make at once (a
        longer video is a chain of segments where the family can chain)."""
        return self.max_frames or int(self.default("frames"))

    def chain_class(self, class_name: str) -> str | None:
        """The class every segment of a chained video runs as (each later segment starts
        from frames of the one before), or None when this checkpoint cannot start from a
        frame (a text-only model)."""
        return class_name if self.classes[class_name] == "image-to-video" else None

    def chained(self, request: Request, previous: list[Any]) -> Request:
        """A later segment's request: conditioned on the first of the previous segment's
        overlapping frames (PIL images), as its first frame."""
        return replace(request, image=previous[0])

    def call_kwargs(self, request: Request, class_name: str) -> dict[str, Any]:
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
    """Wan 2.1 / 2.2 text->video, image->video and first-last-frame (WanPipeline family; a
    Wan 2.2 A14B checkpoint adds its low-noise `transformer_2`, loaded as any component)."""

    name = "wan"
    label = "Wan"
    classes: ClassVar[dict[str, Mode]] = {
        "WanPipeline": "text-to-video",
        "WanImageToVideoPipeline": "image-to-video",
    }
    takes: ClassVar[dict[str, frozenset[str]]] = {
        "WanPipeline": TEXT,
        "WanImageToVideoPipeline": TEXT | {"image", "last_image"},
    }
    frame_step = 4
    side_multiple = 16  # the VAE's 8x times the transformer's 2x2 patches (Wan 2.2 5B: 16x)
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

    def __init__(self, last_frame: LastFrame = "optional") -> None:
        self.last_frame = last_frame

    def for_folder(self, folder: Path) -> Family:
        """The checkpoint's side rule (its VAE's spatial factor times its patch size, as
        diffusers floors to: 16, or 32 for Wan 2.2 TI2V-5B's 16x VAE) and whether it takes a
        last frame: Wan 2.1 FLF2V needs one (its image embedding has positions for two
        frames' CLIP tokens), Wan 2.2 I2V (no CLIP: frames go in as latents) may, Wan 2.1
        I2V does not."""
        index = _json(folder / "model_index.json")
        transformer = _json(folder / "transformer" / "config.json")
        last: LastFrame = "optional"
        if index.get("_class_name") == "WanImageToVideoPipeline":
            no_clip = None in (index.get("image_encoder") or [None])
            last = "optional" if no_clip else "no"
            if transformer.get("pos_embed_seq_len") is not None:
                last = "required"
        family = type(self)(last)
        patch = transformer.get("patch_size") or (1, 2, 2)
        vae = _json(folder / "vae" / "config.json").get("scale_factor_spatial", 8)
        family.side_multiple = int(vae) * int(patch[1])
        return family

    def check(self, class_name: str, given: frozenset[str]) -> str:
        if class_name == "WanImageToVideoPipeline":
            if self.last_frame == "no" and "last_image" in given:
                raise InvalidParams(
                    "last_image: this Wan image-to-video checkpoint was not trained with a "
                    "last frame",
                    hint="Drop --last-image, or use Wan 2.1 FLF2V or a Wan 2.2 image-to-video "
                    "model.",
                )
            if self.last_frame == "required" and "last_image" not in given:
                raise InvalidParams(
                    "last_image: this Wan first-last-frame checkpoint needs a last frame",
                    hint="Give --last-image IMG with --image IMG.",
                )
        return super().check(class_name, given)

    def call_kwargs(self, request: Request, class_name: str) -> dict[str, Any]:
        kwargs = super().call_kwargs(request, class_name)
        if request.last_image is not None:
            kwargs["last_image"] = request.last_image
        return kwargs


class WanVACE(Wan):
    """Wan VACE: generation steered by a control video (pose, depth, edges), a mask of
    where to generate, and reference images; with none of them, text->video."""

    name = "wan-vace"
    label = "Wan VACE"
    classes: ClassVar[dict[str, Mode]] = {"WanVACEPipeline": "control-to-video"}
    takes: ClassVar[dict[str, frozenset[str]]] = {
        "WanVACEPipeline": TEXT | {"video", "mask", "reference"}
    }
    needs: ClassVar[dict[str, frozenset[str]]] = {"WanVACEPipeline": frozenset({"prompt"})}

    def check(self, class_name: str, given: frozenset[str]) -> str:
        if "mask" in given and "video" not in given:
            raise InvalidParams(
                "mask: a VACE mask marks where to generate in its control video",
                hint="Give --video with --mask, or drop --mask.",
            )
        return super().check(class_name, given)

    chains_control = True

    def chain_class(self, class_name: str) -> str | None:
        return class_name

    def chained(self, request: Request, previous: list[Any]) -> Request:
        """VACE extends a video: the previous segment's overlapping frames lead its control
        video, masked black (kept); the rest is the segment's control (gray when none) under
        its mask (white: generate)."""
        from PIL import Image

        size = (request.width, request.height)
        seam = len(previous)
        rest = request.frames - seam
        video = list(request.video[seam:]) if request.video is not None else []
        video += [Image.new("RGB", size, (127, 127, 127))] * (rest - len(video))
        masks = list(request.mask[seam:]) if request.mask is not None else []
        masks += [Image.new("RGB", size, (255, 255, 255))] * (rest - len(masks))
        kept = [Image.new("RGB", size, (0, 0, 0))] * seam
        return replace(request, video=[*previous, *video], mask=[*kept, *masks])

    def call_kwargs(self, request: Request, class_name: str) -> dict[str, Any]:
        kwargs = super().call_kwargs(request, class_name)
        for key, value in (("video", request.video), ("mask", request.mask)):
            if value is not None:
                kwargs[key] = value
        if request.reference is not None:
            kwargs["reference_images"] = request.reference
        return kwargs


class LTX(Family):
    """LTX-Video: one checkpoint serves text->video, image->video and conditioning on
    keyframes and videos (LTXConditionPipeline)."""

    name = "ltx"
    label = "LTX-Video"
    classes: ClassVar[dict[str, Mode]] = {
        "LTXPipeline": "text-to-video",
        "LTXImageToVideoPipeline": "image-to-video",
        "LTXConditionPipeline": "video-to-video",
    }
    takes: ClassVar[dict[str, frozenset[str]]] = {
        "LTXPipeline": TEXT,
        "LTXImageToVideoPipeline": TEXT | {"image"},
        "LTXConditionPipeline": TEXT | {"image", "last_image", "video"},
    }
    needs: ClassVar[dict[str, frozenset[str]]] = {
        "LTXPipeline": frozenset({"prompt"}),
        "LTXImageToVideoPipeline": frozenset({"prompt", "image"}),
        "LTXConditionPipeline": frozenset({"prompt"}),
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

    def pipeline_class(self, class_name: str, given: frozenset[str]) -> str:
        """The same weights load as any of the three: the conditioning picks which."""
        if given & {"video", "last_image"}:
            chosen = "LTXConditionPipeline"
        elif "image" in given and class_name != "LTXConditionPipeline":
            chosen = "LTXImageToVideoPipeline"
        else:
            chosen = "LTXPipeline" if class_name != "LTXConditionPipeline" else class_name
        return self.check(chosen, given)

    def chain_class(self, class_name: str) -> str | None:
        """The same weights as LTXConditionPipeline: a later segment is conditioned on the
        previous one's frames (a keyframe at its frame 0)."""
        return "LTXConditionPipeline"

    def call_kwargs(self, request: Request, class_name: str) -> dict[str, Any]:
        kwargs = super().call_kwargs(request, class_name)
        if class_name != "LTXConditionPipeline":
            return kwargs
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        kwargs.pop("image", None)
        conditions = []  # keyframes at their frame, a video from the start
        if request.image is not None:
            conditions.append(LTXVideoCondition(image=request.image, frame_index=0))
        if request.last_image is not None:
            last = request.frames - 1
            conditions.append(LTXVideoCondition(image=request.last_image, frame_index=last))
        if request.video is not None:
            conditions.append(LTXVideoCondition(video=request.video, frame_index=0))
        if conditions:
            kwargs["conditions"] = conditions
        return kwargs

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


class StableVideoDiffusion(Family):
    """Stable Video Diffusion: image->video only, the checkpoint's own frame count (14 for
    img2vid, 25 for img2vid-xt); no prompt; decoded `decode_chunk_size` frames at a time."""

    name = "svd"
    label = "Stable Video Diffusion"
    classes: ClassVar[dict[str, Mode]] = {"StableVideoDiffusionPipeline": "image-to-video"}
    takes: ClassVar[dict[str, frozenset[str]]] = {
        "StableVideoDiffusionPipeline": frozenset({"image"})
    }
    frame_step = 1
    side_multiple = 64  # the UNet halves the 8x latent three times
    defaults: ClassVar[dict[str, Any]] = {
        "frames": 25,
        "width": 1024,
        "height": 576,
        "steps": 25,
        "guidance": 3.0,  # the last frame's guidance (it rises from 1.0 over the clip)
        "fps": 7,
    }
    reference_pixels = 1024 * 576 * 25
    mps_dtype = "float32"  # its UNet gives black frames in half precision on MPS
    decode_chunks = True

    def __init__(self, trained_frames: int = 25) -> None:
        self.trained_frames = trained_frames

    def for_folder(self, folder: Path) -> Family:
        config = _json(folder / "unet" / "config.json")
        return StableVideoDiffusion(int(config.get("num_frames", self.trained_frames)))

    def default(self, key: str) -> Any:
        return self.trained_frames if key == "frames" else super().default(key)

    def _frames(self, asked: int, notes: list[str]) -> int:
        if asked != self.trained_frames:
            notes.append(
                f"frames {asked} -> {self.trained_frames}: this {self.label} checkpoint "
                f"makes {self.trained_frames} frames"
            )
        return self.trained_frames

    def call_kwargs(self, request: Request, class_name: str) -> dict[str, Any]:
        return {
            "image": request.image,
            "num_frames": request.frames,
            "width": request.width,
            "height": request.height,
            "num_inference_steps": request.steps,
            "min_guidance_scale": min(1.0, request.guidance),
            "max_guidance_scale": request.guidance,
            "output_type": "np",
        }

    def video_latents(self, latents: Any, pipe: Any, request: Request) -> Any:
        return latents.permute(0, 2, 1, 3, 4)  # SVD's latents are (batch, frames, channels...)


class CogVideoX(Family):
    """CogVideoX text->video and image->video (2B / 5B, 720x480, 49 frames at 8 fps)."""

    name = "cogvideox"
    label = "CogVideoX"
    classes: ClassVar[dict[str, Mode]] = {
        "CogVideoXPipeline": "text-to-video",
        "CogVideoXImageToVideoPipeline": "image-to-video",
    }
    frame_step = 4
    side_multiple = 16  # the VAE's 8x times the transformer's 2x2 patches
    defaults: ClassVar[dict[str, Any]] = {
        "frames": 49,
        "width": 720,
        "height": 480,
        "steps": 50,
        "guidance": 6.0,
        "fps": 8,
    }
    reference_pixels = 720 * 480 * 49

    def video_latents(self, latents: Any, pipe: Any, request: Request) -> Any:
        return latents.permute(0, 2, 1, 3, 4)  # CogVideoX's latents are (batch, frames, ...)


class AnimateDiff(Family):
    """AnimateDiff: a motion adapter on a Stable Diffusion 1.5 base; text->video, video->video
    from the same checkpoint, and pose-driven with a ControlNet (the control video)."""

    name = "animatediff"
    label = "AnimateDiff"
    classes: ClassVar[dict[str, Mode]] = {
        "AnimateDiffPipeline": "text-to-video",
        "AnimateDiffVideoToVideoPipeline": "video-to-video",
        "AnimateDiffControlNetPipeline": "control-to-video",
    }
    takes: ClassVar[dict[str, frozenset[str]]] = {
        "AnimateDiffPipeline": TEXT,
        "AnimateDiffVideoToVideoPipeline": TEXT | {"video"},
        "AnimateDiffControlNetPipeline": TEXT | {"video"},
    }
    needs: ClassVar[dict[str, frozenset[str]]] = {
        "AnimateDiffPipeline": frozenset({"prompt"}),
        "AnimateDiffVideoToVideoPipeline": frozenset({"prompt", "video"}),
        "AnimateDiffControlNetPipeline": frozenset({"prompt", "video"}),
    }
    frame_step = 1
    max_frames = 32  # the motion module's positional embeddings
    side_multiple = 8
    defaults: ClassVar[dict[str, Any]] = {
        "frames": 16,
        "width": 512,
        "height": 512,
        "steps": 25,
        "guidance": 7.5,
        "fps": 8,
    }
    reference_pixels = 512 * 512 * 16
    mps_dtype = "float16"  # SD 1.5 is a float16 model; its UNet has no bf16 trouble there

    def pipeline_class(self, class_name: str, given: frozenset[str]) -> str:
        """A plain checkpoint runs video->video when given a video; a ControlNet one always
        takes its control video."""
        if class_name == "AnimateDiffPipeline" and "video" in given:
            class_name = "AnimateDiffVideoToVideoPipeline"
        return self.check(class_name, given)

    def call_kwargs(self, request: Request, class_name: str) -> dict[str, Any]:
        kwargs = super().call_kwargs(request, class_name)
        if class_name == "AnimateDiffVideoToVideoPipeline":
            del kwargs["num_frames"]  # the source video's length decides
            kwargs["video"] = request.video
        elif class_name == "AnimateDiffControlNetPipeline":
            kwargs["conditioning_frames"] = request.video
        return kwargs


FAMILIES: tuple[Family, ...] = (
    Wan(),
    WanVACE(),
    LTX(),
    StableVideoDiffusion(),
    CogVideoX(),
    AnimateDiff(),
)


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
