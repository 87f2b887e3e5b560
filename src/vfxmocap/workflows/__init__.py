"""Named, typed units of work. The CLI, the API, the job runner and the UI all use this registry."""

from vfxmocap.workflows.registry import (
    LiveSpec,
    Resources,
    Workflow,
    WorkflowResult,
    all_workflows,
    device_classes,
    get_live,
    get_workflow,
    is_registered,
    register,
)

__all__ = [
    "LiveSpec",
    "Resources",
    "Workflow",
    "WorkflowResult",
    "all_workflows",
    "device_classes",
    "get_live",
    "get_workflow",
    "is_registered",
    "register",
]
