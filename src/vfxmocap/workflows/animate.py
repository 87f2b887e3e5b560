"""Portrait animation workflow: a still portrait driven by a video, image sequence, still or
camera -> an MP4 at the portrait's full resolution with the driver's frame rate, frame count
and audio (or one image for a still driver)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import cv2
from pydantic import Field

from vfxmocap.core.errors import InputError, InvalidParams
from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.media.image import WRITABLE_SUFFIXES, Frame, is_image_path, write_image
from vfxmocap.media.pipeline import transform_video
from vfxmocap.media.sources import FrameSource, ImageSource, open_source
from vfxmocap.portrait.processor import (
    AnimateSetup,
    AnimateState,
    PortraitAnimator,
    engine_models,
)
from vfxmocap.samples import sample_path
from vfxmocap.workflows.registry import LiveSpec, Resources, Workflow, WorkflowResult, register


class AnimateInputs(AnimateSetup):
    driving: str = Field(description="Driving video, image sequence, image, or camera:N.")
    output: Path = Field(description="Output .mp4 (an image for a still driver).")
    neutral: int = Field(
        0, ge=0, description="Driving frame of the neutral pose (0: the first with a face)."
    )
    max_frames: int | None = Field(None, ge=1, description="Stop after N frames (a camera).")


def _check_output(inputs: AnimateInputs, still: bool) -> None:
    suffix = inputs.output.suffix.lower()
    if still and suffix not in WRITABLE_SUFFIXES:
        raise InvalidParams(
            f"a still driver gives one image: use an image output ({', '.join(WRITABLE_SUFFIXES)})"
        )
    if not still and suffix not in (".mp4", ".mov", ".m4v"):
        raise InvalidParams("a video, sequence or camera driver needs a .mp4 output")


def _neutral_frame(inputs: AnimateInputs, source: FrameSource) -> Frame | None:
    """Driving frame `neutral` (read in a pass of its own), or None for the default."""
    if inputs.neutral == 0:
        return None
    if source.live:
        raise InvalidParams("--neutral needs a file driver; a camera's first face is neutral")
    if source.frame_count is not None and inputs.neutral >= source.frame_count:
        raise InvalidParams(
            f"--neutral {inputs.neutral}: the driver has {source.frame_count} frames "
            f"(0 to {source.frame_count - 1})"
        )
    with open_source(inputs.driving) as again:
        frame = next(itertools.islice(again, inputs.neutral, None), None)
    if frame is None:
        raise InvalidParams(f"--neutral {inputs.neutral}: the driver ends before that frame")
    return frame


def _summary(state: AnimateState, extra: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {**state.summary(), **extra}
    if state.frames and state.frames_without_face == state.frames:
        summary["warning"] = "no face found in the driver: every frame shows the portrait as is"
    return summary


def run(inputs: AnimateInputs, progress: Progress, cancel: CancelToken) -> WorkflowResult:
    # The driver is opened first (a bad file fails at once), then the portrait is analysed
    # (no face: exit 3), all before the first driving frame is processed.
    with open_source(inputs.driving) as source:
        still = isinstance(source, ImageSource)
        _check_output(inputs, still)
        if source.live and inputs.max_frames is None:
            raise InvalidParams("a camera driver needs max_frames (or use `vfx animate --camera`)")
        neutral = _neutral_frame(inputs, source)
        processor = PortraitAnimator()
        progress.stage("analyse portrait", 1)
        state = processor.prepare(inputs)
        progress.advance()
        try:
            if neutral is not None and not state.engine.set_neutral(
                cv2.cvtColor(neutral, cv2.COLOR_RGB2BGR)
            ):
                raise InputError(
                    f"driving frame {inputs.neutral} has no face to be the neutral pose",
                    hint="Choose a --neutral frame where the driver's face is visible.",
                )
            if still:
                write_image(inputs.output, processor.process(next(iter(source)), state, 0.0))
                return WorkflowResult({"output": inputs.output}, _summary(state, {}))
            frames = _limited(source, inputs.max_frames)
            fps = source.fps

            def animate(frame: Frame) -> Frame:
                return processor.process(frame, state, state.frames / fps)

            result = transform_video(
                frames, animate, inputs.output, progress=progress, cancel=cancel
            )
            extra = {"fps": round(result.stats.fps, 2), "frame_rate": round(fps, 3)}
            return WorkflowResult({"output": result.output}, _summary(state, extra))
        finally:
            processor.close(state)


def _limited(source: FrameSource, max_frames: int | None) -> FrameSource:
    """The source, ending after `max_frames` (a camera has no end of its own)."""
    if max_frames is None:
        return source
    from vfxmocap.media.sources import IteratorSource

    limited = IteratorSource(
        itertools.islice(source, max_frames), fps=source.fps, count=max_frames, name=source.name
    )
    limited.audio_path = source.audio_path
    return limited


def place_outputs(inputs: dict[str, Any], job_dir: Path) -> dict[str, Any]:
    """A still driver gives an image (PNG), anything else a video."""
    name = "output.png" if is_image_path(str(inputs.get("driving", ""))) else "output.mp4"
    return {"output": job_dir / name}


def demo(out_dir: Path) -> AnimateInputs:
    return AnimateInputs(
        source=str(sample_path("astronaut")),
        driving=str(sample_path("carphone")),
        output=out_dir / "astronaut_carphone.mp4",
    )


def _neutral_index(inputs: AnimateInputs) -> int:
    """A preview drives the portrait from the render's neutral frame (frame 0 when the first
    with a face is: the render also sees frame 0 first)."""
    return inputs.neutral


RESOURCES = Resources(device="any", memory_gb=1.0, models=engine_models("builtin"))


def requirements(inputs: AnimateInputs) -> Resources:
    """The liveportrait engine needs its ONNX files."""
    return Resources(
        device="any", memory_gb=RESOURCES.memory_gb, models=engine_models(inputs.engine)
    )


ANIMATE = register(
    Workflow(
        name="animate",
        summary="Animate a still portrait with a driving video, sequence, image or camera.",
        inputs=AnimateInputs,
        outputs=("output",),
        run=run,
        resources=RESOURCES,
        requires=requirements,
        demo=demo,
        files=("source", "driving"),
        place_outputs=place_outputs,
        live=LiveSpec(
            "animate",
            PortraitAnimator(),
            files=("source",),
            frames="driving",
            reference=_neutral_index,
        ),
    )
)
