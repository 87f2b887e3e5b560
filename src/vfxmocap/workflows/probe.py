"""Probe: what a media file is (size, frame rate, frames, duration, audio), as a job.

The cheapest workflow there is: API clients use it to check an upload, and the service's
load benchmark uses it to measure the queue rather than a model.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.media.sources import media_info
from vfxmocap.workflows.registry import Resources, Workflow, WorkflowResult, register


class ProbeInputs(BaseModel):
    input: str = Field(description="A video or image file.")


def run(inputs: ProbeInputs, progress: Progress, cancel: CancelToken) -> WorkflowResult:
    cancel.check()
    progress.stage("probe", 1)
    info = media_info(inputs.input)
    info.pop("path", None)  # a server-side path means nothing to a client
    progress.advance()
    return WorkflowResult({}, info)


PROBE = register(
    Workflow(
        name="probe",
        summary="Describe a video or image: size, frame rate, frames, duration, audio.",
        inputs=ProbeInputs,
        outputs=(),
        run=run,
        resources=Resources(device="cpu", memory_gb=0.1, timeout_s=60.0),
        files=("input",),
    )
)
