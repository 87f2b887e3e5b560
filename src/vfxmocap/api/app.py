"""The REST + WebSocket API (FastAPI), all under /api.

Jobs are validated against the one workflow registry and queued in the persistent store;
the embedded runner's worker processes run them. Progress is readable over HTTP
(`GET /api/jobs/{id}`) and pushed over `WS /api/ws`. Live frames go through
`WS /api/stream/{name}` (see `vfxmocap.api.stream`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, File, Query, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from vfxmocap import __version__
from vfxmocap.api.security import (
    GuardMiddleware,
    RateLimiter,
    error_response,
    upload_too_large,
    websocket_allowed,
)
from vfxmocap.core.errors import InputError, VfxError
from vfxmocap.core.log import get_logger
from vfxmocap.jobs.events import FINAL_TYPES, AsyncListener, job_event
from vfxmocap.jobs.service import JobService, JobStateConflict
from vfxmocap.jobs.store import Job, JobState
from vfxmocap.workflows import all_workflows

log = get_logger("api")

_STATUS = {
    "input_error": 400,
    "invalid_params": 422,
    "model_not_found": 424,
    "insufficient_memory": 507,
    "device_error": 503,
    "worker_unavailable": 503,
    "timeout": 504,
    "cancelled": 409,
}
_UPLOAD_CHUNK = 1 << 20


class NotFound(InputError):
    """A job, output or upload id that does not exist (HTTP 404)."""


class JobRequest(BaseModel):
    workflow: str = Field(description="A name from GET /api/workflows.")
    inputs: dict[str, Any] = Field(default_factory=dict, description="The workflow's inputs.")
    priority: int = Field(0, ge=-100, le=100, description="Higher runs first.")
    timeout_s: float | None = Field(None, gt=0, le=7 * 86400)
    max_attempts: int = Field(3, ge=1, le=10)


def job_view(job: Job, position: int | None = None) -> dict[str, Any]:
    data = job.to_dict()
    data.pop("inputs")  # server-side paths are not the client's business
    data["outputs"] = sorted(job.outputs or {})
    progress = job.progress or {}
    data["progress"] = progress
    data["percent"] = progress.get("percent")
    data["eta_s"] = progress.get("eta_s")
    data["position"] = position
    return data


def create_app(service: JobService, *, start: bool = True) -> FastAPI:
    settings = service.settings
    limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_burst)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        all_workflows()  # import every workflow now, not inside the first request
        if start:
            service.start()
        # Everything loaded so far lives as long as the server: out of the collector's
        # sight, a full collection no longer walks it (it paused requests ~100 ms).
        gc.freeze()
        try:
            yield
        finally:
            if start:
                await asyncio.to_thread(service.stop)

    app = FastAPI(
        title="vfxmocap",
        version=__version__,
        summary="Local AI VFX and motion capture: jobs, live streams, models.",
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.service = service
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Range"],
        )

    app.add_middleware(
        GuardMiddleware,
        token=settings.api_token,
        origins=settings.cors_origins,
        limiter=limiter,
        upload_max_bytes=service.uploads.max_bytes,
    )

    @app.exception_handler(VfxError)
    async def vfx_error(request: Request, exc: VfxError) -> JSONResponse:
        if isinstance(exc, NotFound):
            status = 404
        elif isinstance(exc, JobStateConflict):
            status = 409
        else:
            status = _STATUS.get(exc.code, 500)
        return error_response(status, exc.code, exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(exc.errors())

    @app.exception_handler(ValidationError)
    async def inputs_invalid(request: Request, exc: ValidationError) -> JSONResponse:
        return _validation_response(exc.errors(), prefix=("inputs",))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(
            500, "internal", "internal server error", "See the server log; report it if it repeats."
        )

    def get_job(job_id: str) -> Job:
        try:
            return service.get(job_id)
        except InputError as exc:
            raise NotFound(exc.message, hint=exc.hint) from None

    # --- jobs -----------------------------------------------------------------------------

    # The two hottest routes run on the event loop: their store calls take well under a
    # millisecond, less than a hop to the thread pool costs under load.
    @app.post("/api/jobs", status_code=202, tags=["jobs"])
    async def submit(request: JobRequest) -> JSONResponse:
        """Queue a job; returns its id and how many queued jobs run before it."""
        submit_job = functools.partial(
            service.submit,
            request.workflow,
            request.inputs,
            priority=request.priority,
            timeout_s=request.timeout_s,
            max_attempts=request.max_attempts,
        )
        # Routing to Celery or a remote server asks them over the network: not on the loop.
        remote = service.celery is not None or service.remote is not None
        job = await asyncio.to_thread(submit_job) if remote else submit_job()
        body = {"id": job.id, "state": job.state.value, "position": service.store.position(job.id)}
        return JSONResponse(body, status_code=202)  # plain JSON: no encoder walk per request

    @app.get("/api/jobs/{job_id}", tags=["jobs"])
    async def show(job_id: str) -> JSONResponse:
        """State, progress (percent, ETA), error with its hint, output names."""
        job = get_job(job_id)
        queued = job.state == JobState.QUEUED
        return JSONResponse(job_view(job, service.store.position(job_id) if queued else None))

    @app.get("/api/jobs", tags=["jobs"])
    def history(
        state: JobState | None = None,
        workflow: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: float | None = None,
    ) -> dict[str, Any]:
        """Newest first; pass `next_cursor` back as `cursor` for the next page."""
        jobs, next_cursor = service.store.list(
            state=state.value if state else None, workflow=workflow, limit=limit, cursor=cursor
        )
        return {"jobs": [job_view(j) for j in jobs], "next_cursor": next_cursor}

    @app.post("/api/jobs/{job_id}/cancel", tags=["jobs"])
    def cancel(job_id: str) -> dict[str, Any]:
        """A queued job is cancelled at once; a running one stops at its next frame."""
        get_job(job_id)
        return job_view(service.cancel(job_id))

    @app.post("/api/jobs/{job_id}/retry", tags=["jobs"])
    def retry(job_id: str) -> dict[str, Any]:
        get_job(job_id)
        return job_view(service.retry(job_id))

    @app.delete("/api/jobs/{job_id}", status_code=204, tags=["jobs"])
    def delete(job_id: str) -> Response:
        get_job(job_id)
        service.delete(job_id)
        return Response(status_code=204)

    @app.get("/api/jobs/{job_id}/outputs/{name}", tags=["jobs"])
    def output(job_id: str, name: str) -> FileResponse:
        """The file, streamed; HTTP range requests work (video players seek)."""
        get_job(job_id)
        try:
            path = service.output(job_id, name)
        except InputError as exc:
            raise NotFound(exc.message, hint=exc.hint) from None
        return FileResponse(path, filename=path.name)

    @app.get("/api/jobs/{job_id}/log", tags=["jobs"], response_class=PlainTextResponse)
    def job_log(job_id: str) -> str:
        """What the job's worker logged, as text."""
        get_job(job_id)
        return service.log(job_id)

    # --- uploads --------------------------------------------------------------------------

    @app.post("/api/uploads", status_code=201, tags=["uploads"])
    async def upload(request: Request, file: Annotated[UploadFile, File()]) -> Any:
        """Media for job inputs. The type comes from the content (an image PIL reads, a
        video that decodes), not the name; returns the id that inputs refer to."""
        limit = service.uploads.max_bytes  # the declared size was checked before parsing
        upload_id, part = service.uploads.new_part()
        size = 0
        try:
            with part.open("wb") as fh:
                while chunk := await file.read(_UPLOAD_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise _TooLarge
                    fh.write(chunk)
        except _TooLarge:
            part.unlink(missing_ok=True)
            return upload_too_large(limit)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        meta = await asyncio.to_thread(service.uploads.commit, upload_id, part, file.filename)
        return meta

    # --- catalog, system, queue ------------------------------------------------------------

    @app.get("/api/workflows", tags=["system"])
    def workflows() -> list[dict[str, Any]]:
        """Every workflow with its input schema, outputs and resource needs."""
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
                },
            }
            for w in all_workflows()
        ]

    @app.get("/api/models", tags=["system"])
    def models() -> list[dict[str, Any]]:
        from vfxmocap.models.store import ModelStore

        store = ModelStore()
        return [
            {"task": spec.task, "memory_gb": spec.memory_gb, **_public(store.status(spec.name))}
            for spec in store.catalog
        ]

    @app.get("/api/models/{name}/requirements", tags=["system"])
    def model_requirements(name: str) -> dict[str, Any]:
        """Can this model run here: its files present and whole, and memory enough."""
        from vfxmocap.device import resolve_device
        from vfxmocap.models.store import ModelStore

        store = ModelStore()
        try:
            spec = store.catalog.get(name)
        except VfxError as exc:
            raise NotFound(exc.message, hint=exc.hint) from None
        status = store.status(name)
        device = resolve_device()
        return {
            **_public(status),
            "memory_gb": spec.memory_gb,
            "device_memory_gb": device.memory_gb,
            "memory_fits": spec.memory_gb <= device.memory_gb,
        }

    @app.get("/api/system", tags=["system"])
    def system() -> dict[str, Any]:
        """The device report, and expected speed per workflow from the benchmarks."""
        from vfxmocap.api.reference import expected_fps
        from vfxmocap.device import resolve_device

        device = resolve_device()
        return {
            "version": __version__,
            "device": device.to_dict(),
            "workers": settings.workers,
            "expected_fps": expected_fps(device),
        }

    @app.get("/api/queue", tags=["system"])
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

    @app.get("/api/workers", tags=["system"])
    def workers() -> dict[str, Any]:
        """Local worker processes and Celery workers, with Celery's own health check."""
        body: dict[str, Any] = {
            "local": {"slots": settings.workers, "alive": service.runner.alive_workers()}
        }
        if service.celery is not None:
            body["celery"] = service.celery.fleet()
            body["celery_ping"] = service.celery.ping()
        return body

    @app.get("/api/healthz", tags=["system"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/readyz", tags=["system"])
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

    # --- events ---------------------------------------------------------------------------

    @app.websocket("/api/ws")
    async def events(websocket: WebSocket, job_id: str | None = None) -> None:
        """Job events as JSON: queued, started, progress, succeeded, failed, cancelled.
        `?job_id=` follows one job: its state now, its events, then the socket closes
        after its end."""
        if not await websocket_allowed(websocket, settings.api_token, settings.cors_origins):
            return
        await websocket.accept()
        listener = AsyncListener(asyncio.get_running_loop())
        unsubscribe = service.bus.subscribe(listener)
        # Reading is how a disconnect shows; the client has nothing else to say.
        left = asyncio.create_task(_until_disconnect(websocket))
        try:
            if job_id is not None:
                job = service.store.get(job_id)
                if job is None:
                    await websocket.close(code=1008, reason=f"job {job_id} does not exist")
                    return
                await websocket.send_json(job_event("status", job_id, state=job.state.value))
                if job.state.value in FINAL_TYPES:
                    await websocket.close()
                    return
            while not left.done():
                getter = asyncio.create_task(listener.get())
                await asyncio.wait({getter, left}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                event = getter.result()
                if job_id is None or event["job_id"] == job_id:
                    await websocket.send_json(event)
                    if job_id is not None and event["type"] in FINAL_TYPES:
                        await websocket.close()
                        break
        except WebSocketDisconnect:
            log.debug("events socket closed by the client")
        finally:
            left.cancel()
            unsubscribe()

    from vfxmocap.api.stream import add_stream_routes

    add_stream_routes(app, settings)
    return app


async def _until_disconnect(websocket: WebSocket) -> None:
    try:
        while True:
            await websocket.receive_text()
    except (WebSocketDisconnect, RuntimeError):
        return


def _public(status: Any) -> dict[str, Any]:
    """A model's readiness without the server's directories."""
    return {
        "name": status.name,
        "readiness": status.readiness.value,
        "ready": status.ready,
        "missing_files": list(status.missing),
        "corrupt_files": list(status.corrupt),
    }


class _TooLarge(Exception):
    pass


def _validation_response(errors: Any, prefix: tuple[str, ...] = ()) -> JSONResponse:
    fields = [
        {
            "field": ".".join(str(p) for p in (*prefix, *e.get("loc", ()))),
            "message": e.get("msg", ""),
        }
        for e in errors
    ]
    text = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return error_response(
        422, "invalid_params", f"invalid request: {text}", "Fix the fields listed.", fields=fields
    )


def default_app() -> FastAPI:
    """For `uvicorn vfxmocap.api.app:default_app --factory`."""
    from vfxmocap.device import resolve_device

    return create_app(JobService(device=resolve_device().kind))
