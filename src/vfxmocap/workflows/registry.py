"""The one registry of workflows: each declared once, with typed inputs and resource needs."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from vfxmocap.core.config import get_settings
from vfxmocap.core.errors import InvalidParams
from vfxmocap.core.extras import missing_extra
from vfxmocap.core.memory import keep_freed_memory
from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.processors.base import FrameProcessor, Prepared, prepare

# Modules that declare the built-in workflows; importing one registers its workflows.
BUILTIN_MODULES = (
    "vfxmocap.workflows.probe",
    "vfxmocap.workflows.transcode",
    "vfxmocap.workflows.swap",
    "vfxmocap.workflows.mocap",
    "vfxmocap.workflows.animate",
    "vfxmocap.workflows.edit_face",
    "vfxmocap.workflows.generate",
    "vfxmocap.workflows.pose_transfer",
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
    timeout_s: float = 3600.0  # a job's default time limit
    extras: tuple[str, ...] = ()  # pip extras whose modules it imports ("gen")

    def unmet(self, kind: str, memory_gb: float, ready: Collection[str] | None) -> str | None:
        """Why a worker (device kind, memory, ready models; None: not known) cannot run
        this, or None when it can. Memory 0 means the worker could not measure it."""
        if self.device not in device_classes(kind):
            return f"needs a GPU (the worker has {kind})"
        missing = [m for m in self.models if ready is not None and m not in ready]
        if missing:
            return f"needs model(s) {', '.join(missing)}"
        if memory_gb > 0 and self.memory_gb > memory_gb:
            return f"needs {self.memory_gb:g} GB of memory (has {memory_gb:g} GB)"
        return None


def device_classes(kind: str) -> frozenset[str]:
    """The `Resources.device` values a worker of this device kind (cpu, cuda, mps) runs:
    an accelerator runs every class (a "cpu" job runs there on its CPU), a CPU not "gpu"."""
    accelerated = kind.partition(":")[0] in ("cuda", "mps")  # "cuda:1" is a cuda worker
    return frozenset({"any", "cpu", "gpu"} if accelerated else {"any", "cpu"})


@dataclass(frozen=True)
class LiveSpec:
    """A workflow that also runs on live frames: `WS /api/stream/{name}`, `vfx live NAME`."""

    name: str  # the stream's name (its workflow's name serves it too)
    processor: FrameProcessor[Any, Any]  # stateless; its options model is the stream's settings
    # Settings fields that name files (a path, or a list of paths): upload ids over the API.
    files: tuple[str, ...] = ()
    # The workflow's input field whose frames the processor turns (a preview reads one).
    frames: str | None = None
    # The processor's options from the workflow's parsed inputs, as its render sets them up
    # (default: the inputs' fields of the same names).
    setup: Callable[[Any], BaseModel] | None = None
    # The frame of that input the processor sees first, before the previewed one, given the
    # workflow's parsed inputs: one that later frames are measured from (animate's neutral
    # pose). None: the previewed frame alone.
    reference: Callable[[Any], int] | None = None

    @property
    def settings(self) -> type[BaseModel]:
        return self.processor.options_model

    def start(self, settings: dict[str, Any] | BaseModel) -> Prepared[Any, Any]:
        """The processor prepared for one stream (call it per frame, close it at the end)."""
        return prepare(self.processor, settings)


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
    # Input fields that name files (a path, or a list of paths). Over the API they hold
    # upload ids, never paths.
    files: tuple[str, ...] = ()
    # Where a job's outputs go: the output fields' values inside the job's own folder,
    # given the (resolved) inputs. The API sets these; clients cannot.
    place_outputs: Callable[[dict[str, Any], Path], dict[str, Any]] | None = None
    live: LiveSpec | None = None
    # Input fields that name a model (a catalog name, a Hub repo id or a folder). Over the
    # API a folder must lie in the server's models folder.
    model_inputs: tuple[str, ...] = ()
    # What given inputs need (e.g. the models their options use), when that differs from
    # the static `resources`; called with parsed inputs. It may read files (a model's
    # weights): the API calls it off the event loop.
    requires: Callable[[Any], Resources] | None = None

    def parse(self, data: dict[str, Any] | BaseModel) -> BaseModel:
        """Validate raw inputs (CLI flags, JSON) into this workflow's input model."""
        if isinstance(data, self.inputs):
            return data
        return self.inputs.model_validate(data)

    def requirements(self, inputs: dict[str, Any] | BaseModel) -> Resources:
        """What running these inputs needs: routing and scheduling read this."""
        if self.requires is None:
            return self.resources
        return self.requires(self.parse(inputs))

    def __call__(
        self,
        inputs: dict[str, Any] | BaseModel,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
    ) -> WorkflowResult:
        parsed = self.parse(inputs)
        self._spare_inputs(parsed)
        keep_freed_memory()  # frame loops reuse their big arrays instead of faulting them in
        try:
            return self.run(parsed, progress or Progress(), cancel or CancelToken())
        except ModuleNotFoundError as exc:  # an optional dependency: say which extra
            raise (missing_extra(exc) or exc) from None

    def _spare_inputs(self, parsed: BaseModel) -> None:
        """Refuse an output path that is one of the inputs (the same file, a symlink or a
        hard link to it): writing it would destroy the input."""
        sources = [Path(p) for p in _paths(parsed, self.files) if Path(p).is_file()]
        outputs = [
            Path(value)
            for name in type(parsed).model_fields
            if isinstance(value := getattr(parsed, name), Path) and value.exists()
        ]
        for output in outputs:
            for source in sources:
                if os.path.samefile(output, source):
                    raise InvalidParams(
                        f"the output {output} is the input {source}: writing it would destroy"
                        " the input",
                        hint="Choose another output path.",
                    )


def _paths(parsed: BaseModel, fields: tuple[str, ...]) -> list[str]:
    """The file paths named by these input fields (a path, or a list of paths)."""
    found: list[str] = []
    for name in fields:
        value = getattr(parsed, name, None)
        if isinstance(value, str | Path):
            found.append(str(value))
        elif isinstance(value, list):
            found += [str(v) for v in value if isinstance(v, str | Path)]
    return found


_REGISTRY: dict[str, Workflow] = {}


def register(workflow: Workflow) -> Workflow:
    if workflow.name in _REGISTRY and _REGISTRY[workflow.name] is not workflow:
        raise ValueError(f"workflow {workflow.name!r} is registered twice")
    _REGISTRY[workflow.name] = workflow
    return workflow


_loaded: set[str] = set()


def _load_builtins() -> None:
    """Import the built-in workflows, then plugins: `workflow_modules` from the settings and
    packages that declare a `vfxmocap.workflows` entry point. Each module once: this runs
    on every lookup (an API submit), and scanning entry points costs milliseconds."""
    if not _loaded:
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        for entry in entry_points(group="vfxmocap.workflows"):
            entry.load()
        _loaded.add("")
    for module in get_settings().workflow_modules:
        if module in _loaded:
            continue
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise InvalidParams(
                f"workflow module {module!r} cannot be imported: {exc}",
                hint="Fix VFX_WORKFLOW_MODULES or install the package that provides it.",
            ) from exc
        _loaded.add(module)


def all_workflows() -> list[Workflow]:
    _load_builtins()
    return list(_REGISTRY.values())


def is_registered(name: str) -> bool:
    """Whether this process can run `name` (built-ins and loaded plugins)."""
    _load_builtins()
    return name in _REGISTRY


def get_workflow(name: str) -> Workflow:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidParams(
            f"unknown workflow {name!r}", hint=f"Known workflows: {', '.join(_REGISTRY)}."
        ) from None


def get_live(name: str) -> LiveSpec:
    """The live stream called `name`, or the one of the workflow called `name`."""
    streams = [(w.name, w.live) for w in all_workflows() if w.live is not None]
    for workflow, spec in streams:
        if name in (spec.name, workflow):
            return spec
    known = ", ".join(spec.name for _, spec in streams) or "none"
    raise InvalidParams(f"no live stream {name!r}", hint=f"Live streams: {known}.")
