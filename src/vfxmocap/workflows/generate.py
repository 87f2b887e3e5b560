"""Generate: a video from a prompt (and a first-frame image) with a diffusers model, in-process.

The model is a catalog name, a Hub repo id in the local cache or a diffusers folder; the
planner places it on this device; the pipeline stays warm in the model cache for the next
job. Output: an MP4 and a sidecar JSON saying how it was made. torch and diffusers are
imported inside the run only: the API imports every workflow at start.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from vfxmocap.core.errors import (
    DeviceError,
    InsufficientMemory,
    InvalidParams,
    ModelMissing,
    insufficient_memory,
)
from vfxmocap.core.files import atomic_path
from vfxmocap.core.log import get_logger
from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.device import release_memory, resolve_device
from vfxmocap.generation.chain import Segment, conditioning, join, plan_segments
from vfxmocap.generation.families import Conformed, Family, Request
from vfxmocap.generation.loader import ModelRef, configure_vae, load, resolve, unload
from vfxmocap.generation.planner import Plan, plan, step_down
from vfxmocap.generation.prompts import (
    Expanded,
    Scene,
    Worded,
    is_schedule,
    parse_schedule,
    scene_frames,
    text_model_folder,
    word,
)
from vfxmocap.generation.prompts import expand as expand_prompts
from vfxmocap.media.image import read_image
from vfxmocap.media.video import VideoReader, VideoWriter, probe
from vfxmocap.workflows.registry import Resources, Workflow, WorkflowResult, register

log = get_logger("workflows.generate")

_MEDIA = ("image", "last_image", "video", "mask", "reference", "audio")
_LIBRARIES = ("torch", "diffusers", "transformers", "accelerate", "vfxmocap")


class GenerateInputs(BaseModel):
    model: str = Field(
        description="Catalog name, Hub repo id in the local cache (hf:org/name: never a "
        "folder), or a folder (over the API: one in the server's models folder)."
    )
    prompt: str = Field(
        "",
        description="What to show; required for text-to-video. A schedule makes a "
        "multi-scene clip: '0s: a man walks, 4s: he starts running'.",
    )
    negative: str = Field(
        "", description="What to avoid; replaces the model family's default negative."
    )
    template: bool = Field(
        True,
        description="Word the prompt with the model family's template and default negative "
        "(prompts.toml, VFX_PROMPT_TEMPLATES); off: the prompt as given.",
    )
    expand_prompt: str | None = Field(
        None,
        description="A local text model (catalog name, folder or cached repo id) that "
        "expands each prompt into a paragraph first; off by default.",
    )
    image: str | None = Field(None, description="First frame, for image-to-video.")
    last_image: str | None = Field(None, description="Last frame (Wan first-last-frame, LTX).")
    video: str | None = Field(
        None,
        description="Control or source video: a pose / depth video for Wan VACE or an "
        "AnimateDiff ControlNet, the source of AnimateDiff video-to-video, LTX conditioning.",
    )
    mask: str | None = Field(
        None, description="Mask video for Wan VACE: white where to generate, black to keep."
    )
    reference: list[str] = Field(
        default_factory=list, description="Reference images for Wan VACE (a character...)."
    )
    frames: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Default: the control video's length, else the family's. More than one "
        "segment takes makes a chain of segments.",
    )
    duration: float | None = Field(
        None, gt=0, le=600, description="Seconds instead of --frames (at --fps)."
    )
    segment_frames: int | None = Field(
        None,
        ge=2,
        le=1025,
        description="Frames per segment of a long or multi-scene video (default: what the "
        "family makes at once).",
    )
    seam_frames: int = Field(
        4, ge=1, le=64, description="Frames each segment overlaps the one before (cross-faded)."
    )
    width: int | None = Field(None, ge=16, le=4096, description="Default: the family's.")
    height: int | None = Field(None, ge=16, le=4096, description="Default: the family's.")
    steps: int | None = Field(None, ge=1, le=500, description="Denoising steps.")
    guidance: float | None = Field(None, ge=0, le=50, description="Classifier-free guidance.")
    seed: int | None = Field(None, ge=0, lt=2**63, description="Default: a random one, recorded.")
    fps: float | None = Field(None, gt=0, le=120, description="Default: the family's.")
    audio: str | None = Field(
        None, description="A file whose audio the MP4 carries (cut at the video's end)."
    )
    output: Path = Field(description="Output .mp4; its sidecar JSON goes beside it.")
    quantize: Literal["auto", "off"] = Field(
        "auto",
        description="8-bit weights where they keep a model resident or spare an offload "
        "tier (auto), or never (off: full-precision weights, more offload).",
    )
    plan_only: bool = Field(False, description="Print the memory plan; generate nothing.")


def request_for(inputs: GenerateInputs, family: Family, frames: int | None) -> Request:
    """The request with the defaults filled in where the inputs leave them: `frames` (the
    clip's or one segment's), else the family's, and the family's for the rest."""

    def pick(value: Any, key: str) -> Any:
        return family.default(key) if value is None else value

    return Request(
        prompt=inputs.prompt,
        negative=inputs.negative,
        frames=pick(frames, "frames"),
        width=pick(inputs.width, "width"),
        height=pick(inputs.height, "height"),
        steps=pick(inputs.steps, "steps"),
        guidance=pick(inputs.guidance, "guidance"),
        seed=secrets.randbelow(2**31) if inputs.seed is None else inputs.seed,
    )


def given(inputs: GenerateInputs) -> frozenset[str]:
    """The conditioning the inputs carry (the field names a family's rules speak of)."""
    text = {name for name in ("prompt", "negative") if getattr(inputs, name).strip()}
    media = {n for n in ("image", "last_image", "video", "mask") if getattr(inputs, n)}
    return frozenset(text | media | ({"reference"} if inputs.reference else set()))


def scenes_of(inputs: GenerateInputs) -> list[Scene]:
    """The prompt's scenes: a schedule (`0s: ..., 4s: ...`) or one scene."""
    if is_schedule(inputs.prompt):
        return parse_schedule(inputs.prompt)
    return [Scene(0.0, inputs.prompt)]


@dataclass(frozen=True)
class Shape:
    """The clip's frames and how they are made: one pass, or a chain of segments."""

    conformed: Conformed  # one pass's request, or one segment's (frames: the limit)
    total: int  # the output's frames
    scene_starts: list[int]  # each scene's first frame
    chained: bool
    seam: int = 0  # frames each segment overlaps the one before


def _total_frames(inputs: GenerateInputs, family: Family, length: int | None, fps: float) -> int:
    if inputs.duration is not None and inputs.frames is not None:
        raise InvalidParams(
            "duration: give --frames or --duration, not both",
            hint="Drop one of them (duration x fps is the frame count).",
        )
    if inputs.duration is not None:
        frames = max(1, round(inputs.duration * fps))
        if length is not None and frames > length:
            raise InvalidParams(
                f"duration: {inputs.duration:g}s is {frames} frames at {fps:g} fps; "
                f"{inputs.video} has {length}",
                hint="Give a shorter --duration, or leave it out (the video's length).",
            )
        return frames
    if inputs.frames is not None:
        return inputs.frames
    return int(length if length is not None else family.default("frames"))


def shape_of(
    inputs: GenerateInputs, ref: ModelRef, class_name: str, scenes: list[Scene], fps: float
) -> tuple[Shape, str]:
    """The clip's frames, and the class that makes them: more frames than one segment
    takes, or more than one scene, make a chain where the family can start a segment from
    frames; a model that cannot is refused when a chain was asked for (a schedule, a
    duration, --segment-frames) and otherwise makes one pass, as its rules allow."""
    family = ref.family
    length = probe(inputs.video).frame_count if inputs.video else None
    total = _total_frames(inputs, family, length, fps)
    segment = inputs.segment_frames or family.segment_frames()
    limit = family.conform(request_for(inputs, family, segment))
    field = "prompt" if len(scenes) > 1 else "duration" if inputs.duration else "frames"
    needed = len(scenes) > 1 or total > limit.request.frames
    asked = len(scenes) > 1 or inputs.duration is not None or inputs.segment_frames is not None
    chain_class = family.chain_class(class_name) if needed else None
    if needed and chain_class is None and asked:
        why = "a multi-scene schedule" if len(scenes) > 1 else f"{total} frames"
        raise InvalidParams(
            f"{field}: {why} needs a chain of segments, each starting from the previous "
            f"one's frames, and this {family.label} model ({class_name}) is "
            f"{family.mode_of(class_name)}: it cannot start from a frame",
            hint=f"Use an image-to-video model (or Wan VACE, LTX-Video), or keep to one "
            f"segment: one scene and at most {limit.request.frames} frames.",
        )
    if chain_class is None:
        single = _conform(inputs, ref, total, length)
        if needed:
            single.notes.append(
                f"frames {total}: more than the {limit.request.frames} a {family.label} "
                "segment takes, and this model cannot chain segments: one pass"
            )
        starts = scene_frames(scenes, fps, single.request.frames, field)
        return Shape(single, single.request.frames, starts, False), class_name
    _chainable(inputs, family, chain_class)
    _check_length(inputs, length)
    starts = scene_frames(scenes, fps, total, field)
    return Shape(limit, total, starts, True, inputs.seam_frames), chain_class


def _chainable(inputs: GenerateInputs, family: Family, class_name: str) -> None:
    """A chain's segments all run as `class_name`: what a later segment cannot take."""
    family.check(class_name, given(inputs))
    if inputs.last_image:
        raise InvalidParams(
            "last_image: a chained video (more than one segment) takes no last frame",
            hint="Drop --last-image, or keep to one segment.",
        )
    if inputs.video and not family.chains_control:
        raise InvalidParams(
            f"video: a chained {family.label} video cannot also follow a video",
            hint="Drop --video, or keep to one segment (fewer frames, one scene).",
        )


def _check_length(inputs: GenerateInputs, length: int | None) -> None:
    """--frames may not ask for more frames than the control video has."""
    if length is not None and inputs.frames is not None and inputs.frames > length:
        raise InvalidParams(
            f"video: {inputs.video} has {length} frames, fewer than the {inputs.frames} asked",
            hint="Give --frames no more than the video has, or leave it out.",
        )


def _conform(inputs: GenerateInputs, ref: ModelRef, total: int, length: int | None) -> Conformed:
    """The request by the family's rules; with a control video, never more frames than it
    has (rounded down to the rules, and said)."""
    conformed = ref.family.conform(request_for(inputs, ref.family, total))
    request, notes = conformed.request, list(conformed.notes)
    _check_length(inputs, length)
    if length is not None and request.frames > length:  # rounded up past the video's end
        fewer = ref.family.conform(replace(request, frames=request.frames - ref.family.frame_step))
        if fewer.request.frames > length:
            raise InvalidParams(
                f"video: {inputs.video} has {length} frames; this model needs at least "
                f"{fewer.request.frames}",
                hint="Give a longer control video.",
            )
        notes.append(f"frames {request.frames} -> {fewer.request.frames}: the video has {length}")
        request = fewer.request
    return Conformed(request, notes)


def with_media(inputs: GenerateInputs, request: Request, frames: int | None = None) -> Request:
    """The request with its images and videos read and resized to the request's size, as
    the PIL images diffusers takes (`frames` of the videos: default the request's)."""
    size = (request.width, request.height)
    count = frames or request.frames
    return replace(
        request,
        image=_image(inputs.image, size),
        last_image=_image(inputs.last_image, size),
        video=_video("video", inputs.video, size, count),
        mask=_video("mask", inputs.mask, size, count),
        reference=[_image(path, size) for path in inputs.reference] or None,
    )


def _image(path: str | None, size: tuple[int, int]) -> Any:
    if path is None:
        return None
    return _pil(read_image(path), size)


def _video(field: str, path: str | None, size: tuple[int, int], frames: int) -> Any:
    """The first `frames` frames of a video; a shorter one is refused (a mask shorter than
    its control video cannot say where to generate)."""
    if path is None:
        return None
    taken = []
    with VideoReader(path) as reader:
        for frame in reader:
            taken.append(_pil(frame, size))
            if len(taken) == frames:
                return taken
    raise InvalidParams(
        f"{field}: {path} has {len(taken)} frames, the request {frames}",
        hint="Give --frames no more than the video has, or a longer video.",
    )


def _pil(frame: Any, size: tuple[int, int]) -> Any:
    import cv2
    from PIL import Image

    return Image.fromarray(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))


@dataclass(frozen=True)
class Wording:
    """Each scene's prompt as the pipeline gets it, and how it got there."""

    scenes: list[Scene]
    worded: list[Worded]
    expanded: Expanded | None

    def to_dict(self) -> dict[str, Any]:
        first = self.worded[0]
        return {
            "template": first.template,
            "default_negative": first.default_negative,
            "expanded": None
            if self.expanded is None
            else {"model": self.expanded.model, "prompts": self.expanded.prompts},
            "scenes": [
                {"at_s": scene.at_s, "given": scene.prompt, "prompt": worded.prompt}
                for scene, worded in zip(self.scenes, self.worded, strict=True)
            ],
        }


def word_scenes(
    inputs: GenerateInputs, family: Family, scenes: list[Scene], *, expand: bool
) -> Wording:
    """The scenes' prompts expanded (when asked and `expand`), then worded by the family's
    template; the negative is the user's, else the family's default."""
    expanded = None
    texts = [scene.prompt for scene in scenes]
    if inputs.expand_prompt and expand:
        expanded = expand_prompts(texts, inputs.expand_prompt)
        texts = [expanded.prompts.get(text, text) for text in texts]
    elif inputs.expand_prompt:  # a plan: the text model must be there, not run
        text_model_folder(inputs.expand_prompt)
    worded = [
        word(family.name, text, inputs.negative, use_template=inputs.template) for text in texts
    ]
    return Wording(scenes, worded, expanded)


def run(inputs: GenerateInputs, progress: Progress, cancel: CancelToken) -> WorkflowResult:
    ref = resolve(inputs.model, files=not inputs.plan_only)
    class_name = ref.family.pipeline_class(ref.class_name, given(inputs))
    scenes = scenes_of(inputs)
    fps = inputs.fps or ref.family.default("fps")
    shape, class_name = shape_of(inputs, ref, class_name, scenes, fps)
    for note in shape.conformed.notes:
        log.warning("%s", note)
    request = shape.conformed.request
    pixels = request.width * request.height * request.frames
    placed = plan(resolve_device(), ref.figures, ref.family, pixels, backends=_backends(inputs))
    if inputs.plan_only:
        wording = word_scenes(inputs, ref.family, scenes, expand=False)
        segments = _segments(ref.family, shape, request)
        summary = _summary(ref, class_name, request, placed, shape.conformed.notes)
        return WorkflowResult({}, {**summary, **_told(segments, wording)})
    # The job shows its plan from the start (its progress message), not only at the end.
    progress.stage("plan", 1, message=placed.describe())
    progress.advance(1, message=placed.describe())
    if inputs.expand_prompt:
        progress.stage("expand prompt", 1, message=inputs.expand_prompt)
    wording = word_scenes(inputs, ref.family, scenes, expand=True)
    if inputs.expand_prompt:
        progress.advance(1)
        cancel.check()
    run = _Run(inputs, ref, class_name, shape, wording, progress, cancel)
    return run.with_recovery(placed, run.media(request))


def _backends(inputs: GenerateInputs) -> tuple[str, ...] | None:
    """The quantization backends the planner may use: none with --quantize off, else the
    installed ones (None: looked up)."""
    return () if inputs.quantize == "off" else None


def _segments(family: Family, shape: Shape, request: Request) -> list[Segment]:
    """The chain's segments at `request`'s segment length, or the one pass as a segment."""
    if not shape.chained:
        return [Segment(0, 0, request.frames, 0, request.frames, 0)]
    return plan_segments(family, request, shape.total, shape.scene_starts, shape.seam)


def _told(segments: list[Segment], wording: Wording) -> dict[str, Any]:
    """What the job's result says of its prompts and segments."""
    first = wording.worded[0]
    return {
        "frames": segments[-1].start + segments[-1].kept,
        "segments": len(segments),
        "prompt": first.prompt,
        "negative": first.negative,
    }


class _Run:
    """One generation, tried again lighter after each out-of-memory until it fits."""

    def __init__(
        self,
        inputs: GenerateInputs,
        ref: ModelRef,
        class_name: str,
        shape: Shape,
        wording: Wording,
        progress: Progress,
        cancel: CancelToken,
    ) -> None:
        self.inputs, self.ref, self.class_name = inputs, ref, class_name
        self.shape, self.wording = shape, wording
        self.notes, self.progress, self.cancel = shape.conformed.notes, progress, cancel
        self.step_downs: list[str] = []

    def media(self, request: Request) -> Request:
        """The request's media; a chain's videos for the whole clip (segments take slices)."""
        return with_media(self.inputs, request, self.shape.total if self.shape.chained else None)

    def with_recovery(self, placed: Plan, request: Request) -> WorkflowResult:
        """Generate; on out-of-memory free what the try held, then step down (offload tier,
        then resolution, then frames: a chain's segments get shorter), each step logged,
        sent as progress and recorded."""
        asked = request
        while True:
            try:
                return self.generate(placed, request)
            except Exception as exc:
                oom = insufficient_memory(exc, f"generate with {self.inputs.model}")
                if oom is None:
                    raise
                reason = oom.message
            # Out of the except block: the traceback, and the tensors its frames held, are
            # gone before the memory is released.
            step = step_down(
                placed,
                request,
                asked,
                self.ref.figures,
                self.ref.family,
                backends=_backends(self.inputs),
            )
            if step is None or step.plan.key() != placed.key():  # placed otherwise
                unload(self.ref, self.class_name, placed)
            else:  # the weights fit as placed: keep them warm, free the activations
                release_memory(placed.device)
            if step is None:
                tried = "; ".join(self.step_downs) or "no lighter setting left"
                raise InsufficientMemory(
                    f"{reason}; step-downs tried: {tried}; last plan: {placed.describe()}",
                    hint="Use a device with more memory, a smaller model, or fewer frames "
                    "and pixels.",
                )
            log.warning("%s; trying again", step.note)
            self.step_downs.append(step.note)
            self.progress.stage("out of memory", 1, message=step.note)
            self.progress.advance(1, message=step.note)
            placed, request = step.plan, self.media(step.request)

    def generate(self, placed: Plan, request: Request) -> WorkflowResult:
        inputs, ref, progress, cancel = self.inputs, self.ref, self.progress, self.cancel
        started = time.perf_counter()
        progress.stage("load model", 1)
        loaded = load(ref, self.class_name, placed)
        progress.advance(1, message="warm" if not loaded.cold else "loaded")
        cancel.check()
        configure_vae(loaded.pipe, placed)
        segments = _segments(ref.family, self.shape, request)
        frames, timings, made = self.render_segments(loaded.pipe, placed, request, segments)
        fps = inputs.fps or ref.family.default("fps")
        encode_started = time.perf_counter()
        _write_video(inputs.output, frames, fps, inputs.audio, progress, cancel)
        timings = {
            "load_s": round(loaded.seconds, 4),
            "warm": not loaded.cold,
            **timings,
            "encode_s": round(time.perf_counter() - encode_started, 4),
            "total_s": round(time.perf_counter() - started, 4),
        }
        sidecar = inputs.output.with_suffix(".json")
        recorded = {
            "notes": self.notes,
            "step_downs": self.step_downs,
            **self.wording.to_dict(),
            "seam_frames": self.shape.seam,
            "segments": made,
        }
        told = _told(segments, self.wording)
        _write_sidecar(
            sidecar, inputs, ref, self.class_name, request, placed, fps, timings, recorded, told
        )
        summary = {**_summary(ref, self.class_name, request, placed, self.notes), **told}
        if self.step_downs:
            summary["step_downs"] = self.step_downs
        outputs = {"video": inputs.output, "metadata": sidecar}
        return WorkflowResult(outputs, {**summary, **timings})

    def render_segments(
        self, pipe: Any, placed: Plan, request: Request, segments: list[Segment]
    ) -> tuple[list[Any], dict[str, float], list[dict[str, Any]]]:
        """Each segment in turn, a later one conditioned on the frames it overlaps; the
        frames joined with the seams cross-faded, the timings summed, each segment recorded."""
        from vfxmocap.generation.render import render

        family, extra = self.ref.family, placed.call_kwargs()
        kept: list[list[Any]] = []
        timings = {"denoise_s": 0.0, "decode_s": 0.0}
        made = []
        for segment in segments:
            self.cancel.check()
            worded = self.wording.worded[segment.scene]
            asked = self._segment_request(request, segment, worded)
            if segment.index:
                size = (request.width, request.height)
                previous = [_pil(f, size) for f in conditioning(kept[-1], segment)]
                asked = family.chained(asked, previous)
            span = (segment.index, len(segments))
            rendered = render(
                pipe, family, asked, self.progress, self.cancel, self.class_name, extra, span
            )
            if len(rendered.frames) < segment.kept:
                raise DeviceError(
                    f"segment {segment.index + 1}: the pipeline made {len(rendered.frames)} "
                    f"frames, not the {asked.frames} asked",
                    hint="Report this with the sidecar of a shorter run.",
                )
            kept.append(rendered.frames[: segment.kept])
            for key, value in rendered.timings.items():
                timings[key] = round(timings[key] + value, 4)
            made.append(
                {
                    **segment.to_dict(),
                    "prompt": worded.prompt,
                    "negative": worded.negative,
                    "seed": asked.seed,
                    "conditioned_on": None
                    if not segment.index
                    else f"frames {segment.start}-{segment.start + segment.overlap - 1}",
                }
            )
        return join(kept, segments), timings, made

    def _segment_request(self, request: Request, segment: Segment, worded: Worded) -> Request:
        """One segment's request: its frames, prompt and seed (the clip's seed plus its
        index: the same seed, the same chain), and its slice of the videos."""

        def part(frames: Any) -> Any:
            if frames is None or not self.shape.chained:
                return frames
            piece = list(frames[segment.start : segment.start + segment.generated])
            return piece + [piece[-1]] * (segment.generated - len(piece))  # past the end

        return replace(
            request,
            frames=segment.generated,
            prompt=worded.prompt,
            negative=worded.negative,
            seed=(request.seed + segment.index) % 2**63,
            image=request.image if segment.index == 0 else None,
            video=part(request.video),
            mask=part(request.mask),
        )


def _write_video(
    path: Path,
    frames: list[Any],
    fps: float,
    audio: str | None,
    progress: Progress,
    cancel: CancelToken,
) -> None:
    progress.stage("encode", len(frames))
    with VideoWriter(path, fps=fps, audio_from=audio) as writer:
        for frame in frames:
            cancel.check()
            writer.write(frame)
            progress.advance(1)


def _summary(
    ref: ModelRef, class_name: str, request: Request, placed: Plan, notes: list[str]
) -> dict[str, Any]:
    return {
        "pipeline": class_name,
        "frames": request.frames,
        "size": f"{request.width}x{request.height}",
        "steps": request.steps,
        "seed": request.seed,
        "plan": placed.describe(),
        **({"rounded": "; ".join(notes)} if notes else {}),
    }


def _write_sidecar(
    path: Path,
    inputs: GenerateInputs,
    ref: ModelRef,
    class_name: str,
    request: Request,
    placed: Plan,
    fps: float,
    timings: dict[str, Any],
    recorded: dict[str, Any],
    told: dict[str, Any],
) -> None:
    """How the video was made: enough to make it again (with what was rounded, what an
    out-of-memory stepped down, the prompts as worded and each segment)."""
    data = {
        "prompt": told["prompt"],
        "negative": told["negative"],
        "prompt_given": inputs.prompt,
        "negative_given": inputs.negative,
        "expand_prompt": inputs.expand_prompt,
        "model": inputs.model,
        "model_path": str(ref.path),
        "revision": ref.revision,
        "pipeline": class_name,
        **{name: getattr(inputs, name) for name in _MEDIA},
        "seed": request.seed,
        "frames": told["frames"],
        "segment_frames": request.frames,
        "width": request.width,
        "height": request.height,
        "fps": fps,
        "steps": request.steps,
        "guidance": request.guidance,
        "plan": placed.to_dict(),
        **recorded,
        "timings": timings,
        "versions": _versions(),
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


RESOURCES = Resources(device="any", memory_gb=1.0, extras=("gen",), timeout_s=4 * 3600.0)


def requirements(inputs: GenerateInputs) -> Resources:
    """The model's memory (its least offload tier) and, for a catalog model, the model
    itself, so routing sends the job only to a worker that has it and can hold it. A folder
    or repo id not on this machine (it may be on a worker's) keeps the defaults."""
    try:
        ref = resolve(inputs.model, files=False)
    except (ModelMissing, InvalidParams):
        return RESOURCES
    models = (ref.spec.name,) if ref.spec is not None else ()
    return replace(
        RESOURCES, memory_gb=max(RESOURCES.memory_gb, ref.figures.least_gb), models=models
    )


def place_outputs(inputs: dict[str, Any], job_dir: Path) -> dict[str, Any]:
    return {"output": job_dir / "video.mp4"}


GENERATE = register(
    Workflow(
        name="generate",
        summary="Generate a video from a prompt (and a first frame) with a diffusers model.",
        inputs=GenerateInputs,
        outputs=("video", "metadata"),
        run=run,
        resources=RESOURCES,
        requires=requirements,
        files=_MEDIA,
        model_inputs=("model", "expand_prompt"),
        place_outputs=place_outputs,
    )
)
