"""A plugin only the server loads (its Celery workers do not): for the fallback test."""

from __future__ import annotations

from tests.plugin_workflows import SleepInputs, run
from vfxmocap.workflows import Resources, Workflow, register

register(
    Workflow(
        name="sleep_local",
        summary="Sleep (tests only), a workflow the Celery fleet lacks.",
        inputs=SleepInputs,
        outputs=(),
        run=run,
        resources=Resources(device="cpu", memory_gb=0.0, timeout_s=120.0),
    )
)
