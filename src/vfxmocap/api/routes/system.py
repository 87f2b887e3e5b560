"""The catalog and the machine: workflows, models, device, queue, workers, health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from vfxmocap import __version__
from vfxmocap.api.errors import NotFound
from vfxmocap.core.errors import VfxError
from vfxmocap.core.log import get_logger
from vfxmocap.jobs.service import JobService
from vfxmocap.workflows import LiveSpec, all_workflows

log = get_logger("api")


def router(service: JobService) -> APIRouter:
    api = APIRouter(tags=["system"])
    settings = service.settings
    workers_device = service.runner.device  # what this server's workers run on: "cuda:1"

    @api.get("/workflows")
    def workflows() -> list[dict[str, Any]]:
        """Every workflow with its input schema, outputs, resource needs, live stream, and
        whether this server's workers can run it (what is missing, and the fix)."""
        from vfxmocap.device import resolve_device
        from vfxmocap.workflows.readiness import readiness

        device, store = resolve_device(workers_device), service.models
        return [
            {
                "name": w.name,
                "summary": w.summary,
                "inputs": w.inputs.model_json_schema(),
                "outputs": list(w.outputs),
                "files": list(w.files),
                "resources": {
                    "device": w.resources.device,
                    "memory_gb": w.resources.memory_gb,
                    "models": list(w.resources.models),
                    "timeout_s": w.resources.timeout_s,
                    "extras": list(w.resources.extras),
                },
                "live": None if w.live is None else _live(w.live),
                "here": readiness(w, device, store, public=True),
            }
            for w in all_workflows()
        ]

    @api.get("/models")
    def models() -> list[dict[str, Any]]:
        store = service.models
        return [
            {"task": spec.task, "memory_gb": spec.memory_gb, **_public(store.status(spec.name))}
            for spec in store.catalog
        ]

    @api.get("/models/{name}/requirements")
    def model_requirements(name: str) -> dict[str, Any]:
        """Can this model run here: its files present and whole, and memory enough."""
        from vfxmocap.device import resolve_device

        store = service.models
        try:
            spec = store.catalog.get(name)
        except VfxError as exc:
            raise NotFound(exc.message, hint=exc.hint) from None
        status = store.status(name)
        device = resolve_device(workers_device)
        return {
            **_public(status),
            "memory_gb": spec.memory_gb,
            "device_memory_gb": device.memory_gb,
            "usable_memory_gb": device.usable_memory_gb,
            "memory_fits": spec.memory_gb <= device.usable_memory_gb,
        }

    @api.get("/system")
    def system() -> dict[str, Any]:
        """The device report, and expected speed per workflow from the benchmarks."""
        from vfxmocap.api.reference import expected_fps
        from vfxmocap.device import resolve_device

        device = resolve_device(workers_device)
        return {
            "version": __version__,
            "device": device.to_dict(),
            "workers": settings.workers,
            "backends": service.available_backends(),
            "expected_fps": expected_fps(device),
        }

    @api.get("/queue")
    def queue() -> dict[str, Any]:
        """Jobs per state, local workers, and the Celery fleet (advertised capabilities)."""
        body: dict[str, Any] = {
            "states": service.store.stats(),
            "workers": settings.workers,
            "busy": service.runner.busy,
        }
        if service.celery is not None:
            body["celery"] = service.celery.fleet()
        return body

    @api.get("/workers")
    def workers() -> dict[str, Any]:
        """Local worker processes and Celery workers, with Celery's own health check."""
        body: dict[str, Any] = {
            "local": {"slots": settings.workers, "alive": service.runner.alive_workers()}
        }
        if service.celery is not None:
            body["celery"] = service.celery.fleet()
            body["celery_ping"] = service.celery.ping()
        return body

    @api.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.head("/healthz", include_in_schema=False)  # load balancers' probes
    def healthz_head() -> Response:
        return Response(status_code=200)

    @api.get("/readyz")
    def readyz() -> JSONResponse:
        """Ready when the job store answers and the worker processes are alive."""
        alive = service.runner.alive_workers()
        try:
            service.store.stats()
            store_ok = True
        except SQLAlchemyError as exc:  # the database is down or locked: not ready, say why
            log.warning("readiness: job store unavailable: %s", exc)
            store_ok = False
        fleet = service.celery.live_count() if service.celery is not None else 0
        ready = store_ok and (alive > 0 or fleet > 0)
        body = {"ready": ready, "store": store_ok, "workers_alive": alive, "celery_workers": fleet}
        return JSONResponse(body, status_code=200 if ready else 503)

    return api


def _public(status: Any) -> dict[str, Any]:
    """A model's readiness without the server's directories."""
    return {
        "name": status.name,
        "readiness": status.readiness.value,
        "ready": status.ready,
        "missing_files": list(status.missing),
        "corrupt_files": list(status.corrupt),
    }


def _live(spec: LiveSpec) -> dict[str, Any]:
    """A live stream as a client opens it: `WS /api/stream/{name}`, settings first;
    `frames` names the input a preview (`POST /api/preview`) reads a frame of, or is null."""
    return {
        "name": spec.name,
        "settings": spec.settings.model_json_schema(),
        "files": list(spec.files),
        "frames": spec.frames,
    }
