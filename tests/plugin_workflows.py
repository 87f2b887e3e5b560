"""A workflow plugin for the service tests (loaded through VFX_WORKFLOW_MODULES, as a user's
plugin would be): it sleeps, fails on demand, or ignores cancel, so the queue's timing,
retries, kills and recovery can be tested without model run times in the way."""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from vfxmocap.core.errors import InputError, InsufficientMemory
from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.workflows import Resources, Workflow, WorkflowResult, register


class SleepInputs(BaseModel):
    seconds: float = Field(0.0, ge=0, le=600)
    ignore_cancel: bool = False
    fail: str | None = Field(None, pattern="^(input|memory|crash)$")


def run(inputs: SleepInputs, progress: Progress, cancel: CancelToken) -> WorkflowResult:
    if inputs.fail == "input":
        raise InputError("this input is wrong on purpose")
    if inputs.fail == "memory":
        raise InsufficientMemory("out of memory on purpose")
    if inputs.fail == "crash":
        import os

        os._exit(9)  # the worker process dies mid-job
    steps = max(1, int(inputs.seconds * 20))
    progress.stage("sleep", steps)
    for _ in range(steps):
        if not inputs.ignore_cancel:
            cancel.check()
        time.sleep(inputs.seconds / steps)
        progress.advance()
    return WorkflowResult({}, {"slept_s": inputs.seconds})


register(
    Workflow(
        name="sleep",
        summary="Sleep (tests only).",
        inputs=SleepInputs,
        outputs=(),
        run=run,
        resources=Resources(device="cpu", memory_gb=0.0, timeout_s=120.0),
    )
)


register(
    Workflow(
        name="sleep_gpu",
        summary="Sleep on a GPU (tests only): no CPU-only worker can take it.",
        inputs=SleepInputs,
        outputs=(),
        run=run,
        resources=Resources(device="gpu", memory_gb=0.0, timeout_s=120.0),
    )
)
