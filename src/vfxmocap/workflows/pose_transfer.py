"""Pose transfer: a character (a reference image and a prompt) moving like the performer in a
driving video, in one command.

Our mocap tracks the driver and draws its OpenPose control video; a pose-conditioned model
renders it: Wan VACE (the pose video as its control, the reference image as its reference)
or AnimateDiff with an OpenPose ControlNet (the pose video as its conditioning frames). The
video keeps the driver's timing (its frame rate, as many frames as the model's rules allow)
and its audio. The two layers are called as functions, not through the job queue.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.generation.loader import resolve
from vfxmocap.media.video import probe
from vfxmocap.workflows import generate
from vfxmocap.workflows.generate import GenerateInputs
from vfxmocap.workflows.registry import (
    Resources,
    Workflow,
    WorkflowResult,
    get_workflow,
    register,
)


class PoseTransferInputs(BaseModel):
    driving: str = Field(description="The performer's video: its motion, timing and audio.")
    reference: str | None = Field(
        None, description="The character's image (Wan VACE's reference; AnimateDiff takes none)."
    )
    prompt: str = Field(description="The character and the scene.")
    negative: str = Field(
        "", description="What to avoid; replaces the model family's default negative."
    )
    template: bool = Field(
        True, description="Word the prompt with the model family's template and default negative."
    )
    expand_prompt: str | None = Field(
        None, description="A local text model that expands the prompt first; off by default."
    )
    model: str = Field(
        description="A pose-conditioned model: Wan VACE, or AnimateDiff with an OpenPose "
        "ControlNet (catalog name, cached Hub repo id, or folder)."
    )
    frames: int | None = Field(
        None, ge=1, le=4096, description="Default: the driver's length (chained past one segment)."
    )
    segment_frames: int | None = Field(
        None, ge=2, le=1025, description="Frames per segment of a chained video."
    )
    seam_frames: int = Field(
        4, ge=1, le=64, description="Frames each segment overlaps the one before (cross-faded)."
    )
    width: int | None = Field(None, ge=16, le=4096, description="Default: the driver's shape.")
    height: int | None = Field(None, ge=16, le=4096, description="Default: the driver's shape.")
    steps: int | None = Field(None, ge=1, le=500, description="Denoising steps.")
    guidance: float | None = Field(None, ge=0, le=50, description="Classifier-free guidance.")
    seed: int | None = Field(None, ge=0, lt=2**63, description="Default: a random one, recorded.")
    quantize: Literal["auto", "off"] = Field(
        "auto", description="8-bit weights where they help the model fit (auto), or never (off)."
    )
    output: Path = Field(description="Output .mp4; its sidecar JSON and pose video go beside it.")


def run(inputs: PoseTransferInputs, progress: Progress, cancel: CancelToken) -> WorkflowResult:
    driver = probe(inputs.driving)
    _check_model(inputs)
    width, height = _size(inputs, driver.width, driver.height)
    # The pose video is drawn beside the output and kept only when the generation succeeds.
    inputs.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pose-", dir=inputs.output.parent) as tmp:
        pose = _pose_video(inputs, Path(tmp), progress, cancel)
        made = generate.run(
            GenerateInputs(
                model=inputs.model,
                prompt=inputs.prompt,
                negative=inputs.negative,
                template=inputs.template,
                expand_prompt=inputs.expand_prompt,
                frames=inputs.frames,
                segment_frames=inputs.segment_frames,
                seam_frames=inputs.seam_frames,
                width=width,
                height=height,
                steps=inputs.steps,
                guidance=inputs.guidance,
                seed=inputs.seed,
                quantize=inputs.quantize,
                fps=driver.fps,
                audio=inputs.driving if driver.has_audio else None,
                output=inputs.output,
                video=str(pose),
                reference=[inputs.reference] if inputs.reference else [],
            ),
            progress,
            cancel,
        )
        kept = shutil.move(pose, inputs.output.with_suffix(".pose.mp4"))
    outputs = {**made.outputs, "pose_video": Path(kept)}
    return replace(made, outputs=outputs, summary={**made.summary, "driver_fps": driver.fps})


def _check_model(inputs: PoseTransferInputs) -> None:
    """Refuse a missing model, or one that cannot take a pose video (and the reference),
    before the mocap pass spends its seconds."""
    planned = GenerateInputs(
        model=inputs.model,
        prompt=inputs.prompt,
        negative=inputs.negative,
        video=inputs.driving,
        reference=[inputs.reference] if inputs.reference else [],
        output=inputs.output,
    )
    ref = resolve(inputs.model)
    ref.family.pipeline_class(ref.class_name, generate.given(planned))


def _pose_video(
    inputs: PoseTransferInputs, folder: Path, progress: Progress, cancel: CancelToken
) -> Path:
    """The driver's OpenPose control video, from our mocap (only as many frames as asked)."""
    captured = get_workflow("mocap")(
        {
            "input": inputs.driving,
            "output_dir": folder,
            "bvh": False,
            "json": False,
            "pose_video": True,
            "merge_takes": True,
            "max_frames": inputs.frames,
        },
        progress,
        cancel,
    )
    return captured.outputs["pose_video"]


def _size(inputs: PoseTransferInputs, width: int, height: int) -> tuple[int, int]:
    """The driver's shape at the model's default pixel count, unless given (the family's
    rules then round it, and say so)."""
    aspect = width / height
    if inputs.width is not None and inputs.height is not None:
        return inputs.width, inputs.height
    if inputs.width is not None:
        return inputs.width, round(inputs.width / aspect)
    if inputs.height is not None:
        return round(inputs.height * aspect), inputs.height
    family = resolve(inputs.model, files=False).family
    side = math.sqrt(family.default("width") * family.default("height") / aspect)
    return round(side * aspect), round(side)


def requirements(inputs: PoseTransferInputs) -> Resources:
    """The generation's needs (mocap's are far smaller)."""
    return generate.requirements(GenerateInputs(model=inputs.model, output=inputs.output))


POSE_TRANSFER = register(
    Workflow(
        name="pose-transfer",
        summary="A character (reference image + prompt) moving like the performer in a video.",
        inputs=PoseTransferInputs,
        outputs=("video", "metadata", "pose_video"),
        run=run,
        resources=generate.RESOURCES,
        requires=requirements,
        files=("driving", "reference"),
        model_inputs=("model", "expand_prompt"),
        place_outputs=generate.place_outputs,  # video.mp4 in the job's folder
    )
)
