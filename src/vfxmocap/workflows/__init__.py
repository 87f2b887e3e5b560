"""Named, typed units of work. The CLI, the API, the job runner and the UI all use this registry."""

from vfxmocap.workflows.registry import (
    LiveSpec,
    Resources,
    Workflow,
    WorkflowResult,
    all_workflows,
    get_live,
    get_workflow,
    register,
)

__all__ = [
    "LiveSpec",
    "Resources",
    "Workflow",
    "WorkflowResult",
    "all_workflows",
    "get_live",
    "get_workflow",
    "register",
]
