"""The one registry of workflows: each declared once, with typed inputs and resource needs."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from vfxmocap.core.errors import InvalidParams
from vfxmocap.core.progress import CancelToken, Progress

# Modules that declare the built-in workflows; importing one registers its workflows.
BUILTIN_MODULES = (
    "vfxmocap.workflows.transcode",
    "vfxmocap.workflows.swap",
    "vfxmocap.workflows.mocap",
)


@dataclass
class WorkflowResult:
    """Named output files, and a summary of what was done (frames, faces, fps...)."""

    outputs: dict[str, Path]
    summary: dict[str, Any] = field(default_factory=dict)


RunFn = Callable[[Any, Progress, CancelToken], WorkflowResult]


@dataclass(frozen=True)
class Resources:
    """What a run needs, for scheduling and routing."""

    device: Literal["any", "gpu", "cpu"] = "any"
    memory_gb: float = 0.5
    models: tuple[str, ...] = ()  # catalog names


@dataclass(frozen=True)
class Workflow:
    name: str
    summary: str
    inputs: type[BaseModel]
    outputs: tuple[str, ...]
    run: RunFn
    resources: Resources = field(default_factory=Resources)
    # Inputs that run this workflow on the bundled sample media, writing under a folder.
    demo: Callable[[Path], BaseModel] | None = None

    def parse(self, data: dict[str, Any] | BaseModel) -> BaseModel:
        """Validate raw inputs (CLI flags, JSON) into this workflow's input model."""
        if isinstance(data, self.inputs):
            return data
        return self.inputs.model_validate(data)

    def __call__(
        self,
        inputs: dict[str, Any] | BaseModel,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
    ) -> WorkflowResult:
        return self.run(self.parse(inputs), progress or Progress(), cancel or CancelToken())


_REGISTRY: dict[str, Workflow] = {}


def register(workflow: Workflow) -> Workflow:
    if workflow.name in _REGISTRY and _REGISTRY[workflow.name] is not workflow:
        raise ValueError(f"workflow {workflow.name!r} is registered twice")
    _REGISTRY[workflow.name] = workflow
    return workflow


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def all_workflows() -> list[Workflow]:
    _load_builtins()
    return list(_REGISTRY.values())


def get_workflow(name: str) -> Workflow:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidParams(
            f"unknown workflow {name!r}", hint=f"Known workflows: {', '.join(_REGISTRY)}."
        ) from None
