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
from vfxmocap.generation.families import Family, Request
from vfxmocap.generation.loader import ModelRef, configure_vae, load, resolve, unload
from vfxmocap.generation.planner import Plan, plan, step_down
from vfxmocap.media.image import read_image
from vfxmocap.media.video import VideoWriter
from vfxmocap.workflows.registry import Resources, Workflow, WorkflowResult, register

log = get_logger("workflows.generate")

_LIBRARIES = ("torch", "diffusers", "transformers", "accelerate", "vfxmocap")


class GenerateInputs(BaseModel):
    model: str = Field(description="Catalog name, Hub repo id in the local cache, or a folder.")
    prompt: str = Field("", description="What to show; required for text-to-video.")
    negative: str = Field("", description="What to avoid.")
    image: str | None = Field(None, description="First frame, for image-to-video.")
    frames: int | None = Field(None, ge=1, le=1025, description="Default: the family's.")
    width: int | None = Field(None, ge=16, le=4096, description="Default: the family's.")
    height: int | None = Field(None, ge=16, le=4096, description="Default: the family's.")
    steps: int | None = Field(None, ge=1, le=500, description="Denoising steps.")
    guidance: float | None = Field(None, ge=0, le=50, description="Classifier-free guidance.")
    seed: int | None = Field(None, ge=0, lt=2**63, description="Default: a random one, recorded.")
    fps: float | None = Field(None, gt=0, le=120, description="Default: the family's.")
    output: Path = Field(description="Output .mp4; its sidecar JSON goes beside it.")
    plan_only: bool = Field(False, description="Print the memory plan; generate nothing.")


def request_for(inputs: GenerateInputs, family: Family, image: Any) -> Request:
    """The request with the family's defaults filled in where the inputs leave them."""
    d = family.defaults

    def pick(value: Any, key: str) -> Any:
        return d[key] if value is None else value

    return Request(
        prompt=inputs.prompt,
        negative=inputs.negative,
        frames=pick(inputs.frames, "frames"),
        width=pick(inputs.width, "width"),
        height=pick(inputs.height, "height"),
        steps=pick(inputs.steps, "steps"),
        guidance=pick(inputs.guidance, "guidance"),
        seed=secrets.randbelow(2**31) if inputs.seed is None else inputs.seed,
        image=image,
    )


def _class_for(inputs: GenerateInputs, ref: ModelRef) -> str:
    """The pipeline class to run, refusing a conditioning the model cannot take."""
    class_name = ref.family.pipeline_class(ref.class_name, inputs.image is not None)
    if ref.family.mode_of(class_name) == "text-to-video" and not inputs.prompt.strip():
        raise InvalidParams("prompt: a text-to-video model needs a prompt", hint="Give --prompt.")
    return class_name


def _first_frame(inputs: GenerateInputs, width: int, height: int) -> Any:
    """The conditioning image, resized to the video's size, as the PIL image diffusers takes."""
    if inputs.image is None:
        return None
    import cv2
    from PIL import Image

    frame = read_image(inputs.image)
    return Image.fromarray(cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA))


def run(inputs: GenerateInputs, progress: Progress, cancel: CancelToken) -> WorkflowResult:
    ref = resolve(inputs.model, files=not inputs.plan_only)
    class_name = _class_for(inputs, ref)
    conformed = ref.family.conform(request_for(inputs, ref.family, None))
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
    request = replace(request, image=_first_frame(inputs, request.width, request.height))
    run = _Run(inputs, ref, class_name, conformed.notes, progress, cancel)
    return run.with_recovery(placed, request)


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
            if step is None or step.plan.offload is not placed.offload:
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
            image = _first_frame(self.inputs, step.request.width, step.request.height)
            placed, request = step.plan, replace(step.request, image=image)

    def generate(self, placed: Plan, request: Request) -> WorkflowResult:
        from vfxmocap.generation.render import render

        inputs, ref, progress, cancel = self.inputs, self.ref, self.progress, self.cancel
        started = time.perf_counter()
        progress.stage("load model", 1)
        loaded = load(ref, self.class_name, placed)
        progress.advance(1, message="warm" if not loaded.cold else "loaded")
        cancel.check()
        configure_vae(loaded.pipe, placed)
        rendered = render(loaded.pipe, ref.family, request, progress, cancel)
        fps = inputs.fps or ref.family.defaults["fps"]
        encode_started = time.perf_counter()
        _write_video(inputs.output, rendered.frames, fps, progress, cancel)
        timings = {
            "load_s": round(loaded.seconds, 4),
            "warm": not loaded.cold,
            **rendered.timings,
            "encode_s": round(time.perf_counter() - encode_started, 4),
            "total_s": round(time.perf_counter() - started, 4),
        }
        sidecar = inputs.output.with_suffix(".json")
        _write_sidecar(sidecar, inputs, ref, request, placed, fps, timings, self.recorded)
        summary = _summary(ref, self.class_name, request, placed, self.notes)
        if self.step_downs:
            summary["step_downs"] = self.step_downs
        outputs = {"video": inputs.output, "metadata": sidecar}
        return WorkflowResult(outputs, {**summary, **timings})

    @property
    def recorded(self) -> dict[str, list[str]]:
        return {"notes": self.notes, "step_downs": self.step_downs}


def _write_video(
    path: Path, frames: list[Any], fps: float, progress: Progress, cancel: CancelToken
) -> None:
    progress.stage("encode", len(frames))
    with VideoWriter(path, fps=fps) as writer:
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
        "pipeline": ref.family.pipeline_class(ref.class_name, request.image is not None),
        "image": inputs.image,
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
        files=("image",),
        place_outputs=place_outputs,
    )
)
