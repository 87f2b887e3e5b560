"""Named, typed units of work. The CLI, the API, the job runner and the UI all use this registry."""

from vfxmocap.workflows.registry import (
    Resources,
    Workflow,
    WorkflowResult,
    all_workflows,
    get_workflow,
    register,
)

__all__ = ["Resources", "Workflow", "WorkflowResult", "all_workflows", "get_workflow", "register"]
