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
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from vfxmocap.core.errors import (
    InsufficientMemory,
    InvalidParams,
    ModelMissing,
    insufficient_memory,
)
from vfxmocap.core.files import atomic_path
from vfxmocap.core.log import get_logger
from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.device import release_memory, resolve_device
from vfxmocap.generation.families import Conformed, Family, Request
from vfxmocap.generation.loader import ModelRef, configure_vae, load, resolve, unload
from vfxmocap.generation.planner import Plan, plan, step_down
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
    prompt: str = Field("", description="What to show; required for text-to-video.")
    negative: str = Field("", description="What to avoid.")
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
        None, ge=1, le=1025, description="Default: the control video's length, else the family's."
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
    plan_only: bool = Field(False, description="Print the memory plan; generate nothing.")


def request_for(inputs: GenerateInputs, family: Family, video_frames: int | None) -> Request:
    """The request with the defaults filled in where the inputs leave them: the control
    video's length for frames, the family's for the rest."""

    def pick(value: Any, key: str) -> Any:
        return family.default(key) if value is None else value

    frames = inputs.frames if inputs.frames is not None else video_frames
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


def _conform(inputs: GenerateInputs, ref: ModelRef) -> Conformed:
    """The request by the family's rules; with a control video, never more frames than it
    has (rounded down to the rules, and said)."""
    length = probe(inputs.video).frame_count if inputs.video else None
    conformed = ref.family.conform(request_for(inputs, ref.family, length))
    request, notes = conformed.request, list(conformed.notes)
    if length is not None and inputs.frames is not None and inputs.frames > length:
        raise InvalidParams(
            f"video: {inputs.video} has {length} frames, fewer than the {inputs.frames} asked",
            hint="Give --frames no more than the video has, or leave it out.",
        )
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


def with_media(inputs: GenerateInputs, request: Request) -> Request:
    """The request with its images and videos read and resized to the request's size, as
    the PIL images diffusers takes."""
    size = (request.width, request.height)
    return replace(
        request,
        image=_image(inputs.image, size),
        last_image=_image(inputs.last_image, size),
        video=_video("video", inputs.video, size, request.frames),
        mask=_video("mask", inputs.mask, size, request.frames),
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


def run(inputs: GenerateInputs, progress: Progress, cancel: CancelToken) -> WorkflowResult:
    ref = resolve(inputs.model, files=not inputs.plan_only)
    class_name = ref.family.pipeline_class(ref.class_name, given(inputs))
    conformed = _conform(inputs, ref)
    for note in conformed.notes:
        log.warning("%s", note)
    request = conformed.request
    pixels = request.width * request.height * request.frames
    placed = plan(resolve_device(), ref.figures, ref.family, pixels)
    if inputs.plan_only:
        return WorkflowResult({}, _summary(ref, class_name, request, placed, conformed.notes))
    # The job shows its plan from the start (its progress message), not only at the end.
    progress.stage("plan", 1, message=placed.describe())
    progress.advance(1, message=placed.describe())
    run = _Run(inputs, ref, class_name, conformed.notes, progress, cancel)
    return run.with_recovery(placed, with_media(inputs, request))


class _Run:
    """One generation, tried again lighter after each out-of-memory until it fits."""

    def __init__(
        self,
        inputs: GenerateInputs,
        ref: ModelRef,
        class_name: str,
        notes: list[str],
        progress: Progress,
        cancel: CancelToken,
    ) -> None:
        self.inputs, self.ref, self.class_name = inputs, ref, class_name
        self.notes, self.progress, self.cancel = notes, progress, cancel
        self.step_downs: list[str] = []

    def with_recovery(self, placed: Plan, request: Request) -> WorkflowResult:
        """Generate; on out-of-memory free what the try held, then step down (offload tier,
        then resolution, then frames), each step logged, sent as progress and recorded."""
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
            step = step_down(placed, request, asked, self.ref.figures, self.ref.family)
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
            placed, request = step.plan, with_media(self.inputs, step.request)

    def generate(self, placed: Plan, request: Request) -> WorkflowResult:
        from vfxmocap.generation.render import render

        inputs, ref, progress, cancel = self.inputs, self.ref, self.progress, self.cancel
        started = time.perf_counter()
        progress.stage("load model", 1)
        loaded = load(ref, self.class_name, placed)
        progress.advance(1, message="warm" if not loaded.cold else "loaded")
        cancel.check()
        configure_vae(loaded.pipe, placed)
        extra = placed.call_kwargs()
        rendered = render(
            loaded.pipe, ref.family, request, progress, cancel, self.class_name, extra
        )
        fps = inputs.fps or ref.family.default("fps")
        encode_started = time.perf_counter()
        _write_video(inputs.output, rendered.frames, fps, inputs.audio, progress, cancel)
        timings = {
            "load_s": round(loaded.seconds, 4),
            "warm": not loaded.cold,
            **rendered.timings,
            "encode_s": round(time.perf_counter() - encode_started, 4),
            "total_s": round(time.perf_counter() - started, 4),
        }
        sidecar = inputs.output.with_suffix(".json")
        recorded = {"notes": self.notes, "step_downs": self.step_downs}
        _write_sidecar(
            sidecar, inputs, ref, self.class_name, request, placed, fps, timings, recorded
        )
        summary = _summary(ref, self.class_name, request, placed, self.notes)
        if self.step_downs:
            summary["step_downs"] = self.step_downs
        outputs = {"video": inputs.output, "metadata": sidecar}
        return WorkflowResult(outputs, {**summary, **timings})


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
    recorded: dict[str, list[str]],
) -> None:
    """How the video was made: enough to make it again (with what was rounded and what an
    out-of-memory stepped down)."""
    data = {
        "prompt": request.prompt,
        "negative": request.negative,
        "model": inputs.model,
        "model_path": str(ref.path),
        "revision": ref.revision,
        "pipeline": class_name,
        **{name: getattr(inputs, name) for name in _MEDIA},
        "seed": request.seed,
        "frames": request.frames,
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
        model_inputs=("model",),
        place_outputs=place_outputs,
    )
)
