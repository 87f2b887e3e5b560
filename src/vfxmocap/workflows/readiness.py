"""Can a workflow run on this machine, and if not, what exactly to do about it.

One answer for `vfx doctor` and `GET /api/workflows`: the extras it imports, the model
files it needs, the device class and the memory, each missing one with the command or the
step that fixes it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import Any, Literal

from vfxmocap.core.extras import EXTRA_OF
from vfxmocap.device import DeviceReport
from vfxmocap.models.store import ModelStore
from vfxmocap.workflows.registry import Workflow, device_classes


@dataclass(frozen=True)
class Gap:
    """One thing a workflow lacks here, and how to supply it."""

    kind: Literal["extra", "model", "device", "memory"]
    what: str
    fix: str


def gaps(
    workflow: Workflow, device: DeviceReport, store: ModelStore, *, public: bool = False
) -> list[Gap]:
    """What keeps `workflow` (with its default inputs' needs) from running here. `public`
    (the API): folders spelt from the models folder (`<models>/NAME`), no server path."""
    needs = workflow.resources
    found = [_extra_gap(extra) for extra in needs.extras]
    for name in needs.models:
        status = store.status(name)
        if not status.ready:
            folder = str(store.directory(store.catalog.get(name)))
            folder = store.public_path(folder) if public else folder
            found.append(
                Gap(
                    "model",
                    f"{name} ({status.readiness.value})",
                    f"vfx models pull {name} (offline: place its files in {folder})",
                )
            )
    if needs.device not in device_classes(device.kind):
        fix = "run it where a GPU is (a vfx worker on that machine takes it from the queue)"
        found.append(Gap("device", f"a GPU (this machine has {device.kind})", fix))
    usable = device.usable_memory_gb
    if usable and needs.memory_gb > usable:
        found.append(
            Gap(
                "memory",
                f"{needs.memory_gb:g} GB of {device.kind} memory (has {usable:g} GB usable)",
                "use a machine with more memory, or smaller settings",
            )
        )
    return [gap for gap in found if gap is not None]


def _extra_gap(extra: str) -> Gap | None:
    missing = [
        module
        for module, owner in EXTRA_OF.items()
        if owner == extra and importlib.util.find_spec(module) is None
    ]
    if not missing:
        return None
    return Gap(
        "extra", f"the '{extra}' extra ({', '.join(missing)})", f"pip install 'vfxmocap[{extra}]'"
    )


def readiness(
    workflow: Workflow, device: DeviceReport, store: ModelStore, *, public: bool = False
) -> dict[str, Any]:
    """`{"ready": bool, "missing": [{kind, what, fix}, ...]}` for reports (`public`: for
    the API, see `gaps`)."""
    found = gaps(workflow, device, store, public=public)
    return {"ready": not found, "missing": [asdict(gap) for gap in found]}
