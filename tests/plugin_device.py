"""A workflow plugin that reports which device its worker process was given, so a test
can see what a spawned worker gets without a GPU."""

from __future__ import annotations

import os

from pydantic import BaseModel

from vfxmocap.core.config import get_settings
from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.workflows import Resources, Workflow, WorkflowResult, register


class NoInputs(BaseModel):
    pass


def run(inputs: NoInputs, progress: Progress, cancel: CancelToken) -> WorkflowResult:
    summary = {"VFX_DEVICE": os.environ.get("VFX_DEVICE"), "settings": get_settings().device}
    return WorkflowResult({}, summary)


register(
    Workflow(
        name="which_device",
        summary="Report the worker's device (tests only).",
        inputs=NoInputs,
        outputs=(),
        run=run,
        resources=Resources(device="any", memory_gb=0.0, timeout_s=60.0),
    )
)
