"""Face swap workflow: source face image(s) onto a target image, video, image sequence."""

from __future__ import annotations

from dataclasses import replace
from itertools import count
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from vfxmocap.core.errors import InvalidParams
from vfxmocap.core.log import get_logger
from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.media.image import WRITABLE_SUFFIXES, Frame, is_image_path, write_image
from vfxmocap.media.pipeline import transform_video
from vfxmocap.media.sources import ImageSource, open_source
from vfxmocap.processors.face_swap.processor import (
    FaceSwapProcessor,
    SwapOptions,
    SwapPlan,
    SwapSetup,
    SwapState,
)
from vfxmocap.samples import sample_path
from vfxmocap.workflows.registry import LiveSpec, Resources, Workflow, WorkflowResult, register

log = get_logger("workflows.swap")


class SwapInputs(BaseModel):
    sources: list[str] = Field(min_length=1, description="Source face image(s).")
    target: str = Field(description="Target image, video, image sequence or folder.")
    output: Path = Field(description="Output image (for an image target) or .mp4.")
    references: list[str] = Field(
        default_factory=list, description="Per source, a photo of the target face it replaces."
    )
    options: SwapOptions = Field(default_factory=SwapOptions)


def _summary(state: SwapState, extra: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"engine": state.options.engine, **state.stats.as_dict(), **extra}
    if state.stats.faces_swapped == 0:
        summary["warning"] = "no face found in the target: the output equals the input"
        log.warning("no face found in the target; the output equals the input")
    return summary


def run(inputs: SwapInputs, progress: Progress, cancel: CancelToken) -> WorkflowResult:
    # Opened first, so a bad target fails before any model loads; what it is (not its name)
    # decides the output: a folder, glob or %06d pattern of .png files writes a video.
    with open_source(inputs.target) as source:
        image_target = isinstance(source, ImageSource)
        suffix = inputs.output.suffix.lower()
        if image_target and suffix not in WRITABLE_SUFFIXES:
            raise InvalidParams(
                f"an image target needs an image output ({', '.join(WRITABLE_SUFFIXES)})"
            )
        if not image_target and suffix not in (".mp4", ".mov", ".m4v"):
            raise InvalidParams("a video or sequence target needs a .mp4 output")
        processor = FaceSwapProcessor()
        progress.stage("analyse sources", len(inputs.sources))
        state = processor.prepare(_setup(inputs))
        progress.advance(len(inputs.sources))
        try:
            if image_target:
                image = next(iter(source))
                write_image(inputs.output, processor.process_still(image, state))
                return WorkflowResult({"output": inputs.output}, _summary(state, {}))
            times = (i / source.fps for i in count())

            def plan(frame: Frame) -> SwapPlan:  # tracking, a frame ahead, in the decode thread
                return processor.analyze(frame, state, next(times))

            def draw(planned: SwapPlan) -> Frame:
                return processor.render(planned, state)

            result = transform_video(
                source, draw, inputs.output, ahead=plan, progress=progress, cancel=cancel
            )
            return WorkflowResult(
                {"output": result.output}, _summary(state, {"fps": round(result.stats.fps, 2)})
            )
        finally:
            processor.close(state)


def place_outputs(inputs: dict[str, Any], job_dir: Path) -> dict[str, Any]:
    """An image target gives an image (PNG), anything else a video."""
    name = "output.png" if is_image_path(str(inputs.get("target", ""))) else "output.mp4"
    return {"output": job_dir / name}


def demo(out_dir: Path) -> SwapInputs:
    return SwapInputs(
        sources=[str(sample_path("astronaut"))],
        target=str(sample_path("carphone")),
        output=out_dir / "astronaut_carphone.mp4",
    )


RESOURCES = Resources(
    device="any", memory_gb=1.0, models=("mediapipe-face-detection", "mediapipe-face-mesh")
)


def _setup(inputs: SwapInputs) -> SwapSetup:
    return SwapSetup(
        sources=inputs.sources, references=inputs.references, options=inputs.options, live=False
    )


def requirements(inputs: SwapInputs) -> Resources:
    """The models these options use (an inswapper or --enhance swap needs their weights)."""
    return replace(RESOURCES, models=FaceSwapProcessor().models(_setup(inputs)))


SWAP = register(
    Workflow(
        name="swap",
        summary="Swap source face(s) onto the faces of a target image, video or sequence.",
        inputs=SwapInputs,
        outputs=("output",),
        run=run,
        resources=RESOURCES,
        requires=requirements,
        demo=demo,
        files=("sources", "target", "references"),
        place_outputs=place_outputs,
        live=LiveSpec(
            "swap",
            FaceSwapProcessor(),
            files=("sources", "references"),
            frames="target",
            setup=_setup,
        ),
    )
)
