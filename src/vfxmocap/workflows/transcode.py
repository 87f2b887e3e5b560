"""Transcode: any video, image sequence or camera to an H.264 MP4 (audio kept), optionally smaller.

The simplest workflow, and the reference for the others: open a source, run the shared
pipeline, write atomically.
"""

from __future__ import annotations

from pathlib import Path

import cv2
from pydantic import BaseModel, Field

from vfxmocap.core.config import X264Preset
from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.media.image import Frame
from vfxmocap.media.pipeline import transform_video
from vfxmocap.media.sources import open_source
from vfxmocap.samples import sample_path
from vfxmocap.workflows.registry import Resources, Workflow, WorkflowResult, register


class TranscodeInputs(BaseModel):
    input: str = Field(description="Video file, image sequence pattern or folder, or camera:N.")
    output: Path = Field(description="Output .mp4 path.")
    max_height: int | None = Field(None, ge=16, le=8640, description="Downscale to this height.")
    crf: int | None = Field(None, ge=0, le=51, description="H.264 quality; default from config.")
    preset: X264Preset | None = Field(None, description="x264 preset; default from config.")
    fps: float | None = Field(None, gt=0, le=480, description="Frame rate for image sequences.")


def run(inputs: TranscodeInputs, progress: Progress, cancel: CancelToken) -> WorkflowResult:
    with open_source(inputs.input, fps=inputs.fps) as source:
        max_h = inputs.max_height

        def process(frame: Frame) -> Frame:
            h, w = frame.shape[:2]
            if max_h is None or h <= max_h:
                return frame
            width = max(2, round(w * max_h / h))
            small: Frame = cv2.resize(frame, (width, max_h), interpolation=cv2.INTER_AREA)
            return small

        result = transform_video(
            source,
            process,
            inputs.output,
            progress=progress,
            cancel=cancel,
            crf=inputs.crf,
            preset=inputs.preset,
        )
    return WorkflowResult({"video": result.output}, result.summary())


def demo(out_dir: Path) -> TranscodeInputs:
    return TranscodeInputs(input=str(sample_path("carphone")), output=out_dir / "carphone.mp4")


TRANSCODE = register(
    Workflow(
        name="transcode",
        summary="Re-encode a video, image sequence or camera to H.264 MP4, keeping audio.",
        inputs=TranscodeInputs,
        outputs=("video",),
        run=run,
        resources=Resources(device="cpu", memory_gb=0.3),
        demo=demo,
        files=("input",),
        place_outputs=lambda inputs, job_dir: {"output": job_dir / "video.mp4"},
    )
)
