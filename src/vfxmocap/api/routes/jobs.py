"""Jobs and uploads: submit, follow, cancel, retry, delete, outputs, logs, media uploads."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from vfxmocap.api.errors import NotFound, public_error
from vfxmocap.api.multipart import UPLOAD_BODY, UploadRefused, receive_upload
from vfxmocap.api.security import error_response
from vfxmocap.core.errors import InputError, InvalidParams
from vfxmocap.jobs.service import JobService
from vfxmocap.jobs.store import Job, JobState, StoreBusy
from vfxmocap.workflows import get_workflow


class JobRequest(BaseModel):
    workflow: str = Field(description="A name from GET /api/workflows.")
    inputs: dict[str, Any] = Field(default_factory=dict, description="The workflow's inputs.")
    priority: int = Field(0, ge=-100, le=100, description="Higher runs first.")
    timeout_s: float | None = Field(None, gt=0, le=7 * 86400)
    max_attempts: int = Field(3, ge=1, le=10)
    backend: Literal["auto", "local", "celery", "remote"] = Field(
        "auto",
        description="Where the job runs: auto (the configured order) or one backend; "
        "the job's `route` says where it went and why.",
    )


def job_view(service: JobService, job: Job, position: int | None = None) -> dict[str, Any]:
    data = job.to_dict()
    data["error"] = public_error(service, job.error)
    data["inputs"] = public_inputs(service, job)
    data["outputs"] = sorted(job.outputs or {})
    progress = job.progress or {}
    data["progress"] = progress
    data["percent"] = progress.get("percent")
    data["eta_s"] = progress.get("eta_s")
    data["position"] = position
    return data


def public_inputs(service: JobService, job: Job) -> dict[str, Any]:
    """A job's inputs as a client would send them again: upload ids for its files, and no
    server paths (the outputs the server placed in the job's folder are left out: a re-run
    gets its own). A file that did not come from an upload shows as null."""
    inputs = dict(job.inputs or {})
    job_dir = service.jobs_dir / job.id
    for key, value in list(inputs.items()):
        if isinstance(value, str) and Path(value).is_relative_to(job_dir):
            del inputs[key]
    try:
        flow = get_workflow(job.workflow)
        files, models = flow.files, flow.model_inputs
    except InvalidParams:  # a plugin no longer loaded: its files are still server paths
        files, models = tuple(inputs), ()
    for name in models:
        if isinstance(value := inputs.get(name), str):
            inputs[name] = service.models.public_model(value)
    for name in files:
        value = inputs.get(name)
        if isinstance(value, list):
            inputs[name] = [service.uploads.id_of(v) for v in value]
        elif isinstance(value, str):
            inputs[name] = service.uploads.id_of(value)
    return inputs


def range_refusal(header: str | None, path: Path) -> JSONResponse | None:
    """A bad `Range` in the one error shape (Starlette would answer it in plain text)."""
    if header is None:
        return None
    hint = "Ask for bytes=START-END within the file (GET without Range for all of it)."
    size = path.stat().st_size
    try:
        FileResponse._parse_range_header(header, size)
    except MalformedRangeHeader as exc:
        message = f"bad Range {header[:100]!r}: {exc.content}"
        return error_response(400, "input_error", message, hint)
    except RangeNotSatisfiable:
        message = f"the range {header[:100]!r} is outside the file ({size} bytes)"
        headers = {"Content-Range": f"bytes */{size}"}
        return error_response(416, "range_not_satisfiable", message, hint, headers)
    return None


def router(service: JobService) -> APIRouter:
    api = APIRouter(tags=["jobs"])

    def get_job(job_id: str) -> Job:
        try:
            return service.get(job_id)
        except InputError as exc:
            raise NotFound(exc.message, hint=exc.hint) from None

    # The two hottest routes run on the event loop: their store calls take well under a
    # millisecond, less than a hop to the thread pool costs under load.
    @api.post("/jobs", status_code=202)
    async def submit(request: JobRequest) -> JSONResponse:
        """Queue a job; returns its id and how many queued jobs run before it."""
        submit_job = functools.partial(
            service.submit,
            request.workflow,
            request.inputs,
            priority=request.priority,
            timeout_s=request.timeout_s,
            max_attempts=request.max_attempts,
            backend=request.backend,
        )
        # The fast path runs on the loop (a thread hop costs more than the write), but only
        # when the write can start at once: a lock held by another thread or process,
        # routing that asks Celery or a remote server over the network, or a workflow whose
        # needs depend on its inputs (it may read a model's files to tell) goes to a thread.
        remote = service.celery is not None or service.remote is not None
        try:
            if remote:
                raise StoreBusy("routing asks the network")
            if get_workflow(request.workflow).requires is not None:
                raise StoreBusy("the requirement check may read files")
            job = submit_job(wait=False)
        except StoreBusy:
            job = await asyncio.to_thread(submit_job)
        body = {
            "id": job.id,
            "state": job.state.value,
            "position": service.store.position(job.id),
            "backend": job.backend,
            "route": job.route,
        }
        return JSONResponse(body, status_code=202)  # plain JSON: no encoder walk per request

    @api.get("/jobs/{job_id}")
    async def show(job_id: str) -> JSONResponse:
        """State, progress (percent, ETA), error with its hint, output names."""
        job = get_job(job_id)
        queued = job.state == JobState.QUEUED
        return JSONResponse(
            job_view(service, job, service.store.position(job_id) if queued else None)
        )

    @api.get("/jobs")
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
        return {"jobs": [job_view(service, j) for j in jobs], "next_cursor": next_cursor}

    @api.post("/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> dict[str, Any]:
        """A queued job is cancelled at once; a running one stops at its next frame."""
        get_job(job_id)
        return job_view(service, service.cancel(job_id))

    @api.post("/jobs/{job_id}/retry")
    def retry(job_id: str) -> dict[str, Any]:
        get_job(job_id)
        return job_view(service, service.retry(job_id))

    @api.delete("/jobs/{job_id}", status_code=204)
    def delete(job_id: str) -> Response:
        get_job(job_id)
        service.delete(job_id)
        return Response(status_code=204)

    @api.get("/jobs/{job_id}/outputs/{name}", response_model=None)
    def output(request: Request, job_id: str, name: str) -> FileResponse | JSONResponse:
        """The file, streamed; HTTP range requests work (video players seek)."""
        get_job(job_id)
        try:
            path = service.output(job_id, name)
        except InputError as exc:
            raise NotFound(exc.message, hint=exc.hint) from None
        return range_refusal(request.headers.get("range"), path) or FileResponse(
            path, filename=path.name
        )

    @api.get("/jobs/{job_id}/log", response_class=PlainTextResponse)
    def job_log(job_id: str) -> str:
        """What the job's worker logged, as text."""
        get_job(job_id)
        return service.log(job_id)

    @api.post("/uploads", status_code=201, tags=["uploads"], openapi_extra=UPLOAD_BODY)
    async def upload(request: Request) -> Any:
        """Media for job inputs: one multipart/form-data part named `file`. The type comes
        from the content (an image PIL reads, a video that decodes), not the name; returns
        the id that inputs refer to. Streamed to disk once, in a thread."""
        try:
            return await receive_upload(request, service.uploads)
        except UploadRefused as exc:
            return exc.response

    @api.get("/uploads/{upload_id}", tags=["uploads"], response_model=None)
    def uploaded(request: Request, upload_id: str) -> FileResponse | JSONResponse:
        """An upload's bytes, under the client's file name (range requests work): what a
        job's inputs were, for a before / after beside its output."""
        try:
            path = service.uploads.path(upload_id)
        except InputError as exc:
            raise NotFound(exc.message, hint=exc.hint) from None
        return range_refusal(request.headers.get("range"), path) or FileResponse(
            path, filename=service.uploads.client_name(upload_id)
        )

    return api
