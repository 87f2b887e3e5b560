"""Expression editing workflow: a still portrait with slider values (smile, blink, gaze, mouth
shapes, head turn) -> one image; every slider at 0 gives the portrait back unchanged."""

from __future__ import annotations

from pathlib import Path

import cv2
from pydantic import Field

from vfxmocap.core.errors import InvalidParams
from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.media.image import WRITABLE_SUFFIXES, write_image
from vfxmocap.portrait.processor import AnimateSetup, FaceEditSettings, engine_models, open_portrait
from vfxmocap.samples import sample_path
from vfxmocap.workflows.registry import Resources, Workflow, WorkflowResult, register


class EditFaceInputs(AnimateSetup):
    output: Path = Field(description="Output image.")
    edits: FaceEditSettings = Field(default_factory=FaceEditSettings)


def run(inputs: EditFaceInputs, progress: Progress, cancel: CancelToken) -> WorkflowResult:
    if inputs.output.suffix.lower() not in WRITABLE_SUFFIXES:
        raise InvalidParams(f"edit-face writes an image ({', '.join(WRITABLE_SUFFIXES)})")
    progress.stage("analyse portrait", 1)
    engine = open_portrait(inputs)
    try:
        progress.advance()
        cancel.check()
        edited = engine.edit(inputs.edits.edits())
    finally:
        engine.close()
    write_image(inputs.output, cv2.cvtColor(edited, cv2.COLOR_BGR2RGB))
    changed = {k: v for k, v in inputs.edits.model_dump().items() if v != 0.0}
    return WorkflowResult({"output": inputs.output}, {"engine": inputs.engine, "edits": changed})


def demo(out_dir: Path) -> EditFaceInputs:
    return EditFaceInputs(
        source=str(sample_path("astronaut")),
        output=out_dir / "astronaut_edited.png",
        edits=FaceEditSettings(smile=0.6, eyebrow=0.5, yaw=10.0),
    )


def requirements(inputs: EditFaceInputs) -> Resources:
    return Resources(device="any", memory_gb=1.0, models=engine_models(inputs.engine))


EDIT_FACE = register(
    Workflow(
        name="edit-face",
        summary="Edit a portrait's expression and head pose with sliders.",
        inputs=EditFaceInputs,
        outputs=("output",),
        run=run,
        resources=Resources(device="any", memory_gb=1.0, models=engine_models("builtin")),
        requires=requirements,
        demo=demo,
        files=("source",),
        place_outputs=lambda inputs, job_dir: {"output": job_dir / "output.png"},
    )
)
