"""How failures become HTTP answers: one error shape, a status per error code."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from vfxmocap.api.security import error_response
from vfxmocap.core.errors import InputError, MediaTooLarge, VfxError
from vfxmocap.core.log import get_logger
from vfxmocap.jobs.service import JobService, JobStateConflict
from vfxmocap.jobs.uploads import path_pattern

log = get_logger("api")

ROUTES_HINT = "See /api/docs for the routes and their methods."
BODY_HINT = "Send a well-formed body: JSON for jobs, one multipart/form-data file for uploads."

STATUS = {
    "input_error": 400,
    "invalid_params": 422,
    "model_not_found": 424,
    "insufficient_memory": 507,
    "device_error": 503,
    "worker_unavailable": 503,
    "timeout": 504,
    "cancelled": 409,
}


def public_text(service: JobService, text: str) -> str:
    """A message fit for a client: uploads named as the client named them, files in a
    job's folder by their name alone, the models folder as `<models>`; no server path."""
    job_folder = path_pattern(service.jobs_dir, r"[0-9a-f]{32}[/\\]")
    return service.models.public_path(service.uploads.scrub(job_folder.sub("", text)))


def public_error(service: JobService, error: dict[str, Any] | None) -> dict[str, Any] | None:
    """A job's stored error, its message and hint made `public_text`."""
    if not error:
        return error
    return {k: public_text(service, v) if isinstance(v, str) else v for k, v in error.items()}


class NotFound(InputError):
    """A job, output, upload or model that does not exist (HTTP 404)."""


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(VfxError)
    async def vfx_error(request: Request, exc: VfxError) -> JSONResponse:
        if isinstance(exc, NotFound):
            status = 404
        elif isinstance(exc, MediaTooLarge):
            status = 413
        elif isinstance(exc, JobStateConflict):
            status = 409
        else:
            status = STATUS.get(exc.code, 500)
        service = request.app.state.service
        message, hint = (public_text(service, text) for text in (exc.message, exc.hint))
        return error_response(status, exc.code, message, hint)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's own refusals (unknown route, wrong method) in the one error shape."""
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "input_error")
        hint = ROUTES_HINT if exc.status_code in (404, 405) else BODY_HINT  # 400: unparsable
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), hint, headers)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        broken = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if broken is not None:  # not a field to fix: the body as a whole does not parse
            reason = broken.get("ctx", {}).get("error") or broken.get("msg", "")
            return error_response(400, "input_error", f"the body is not JSON: {reason}", BODY_HINT)
        return validation_response(errors)

    @app.exception_handler(ValidationError)
    async def inputs_invalid(request: Request, exc: ValidationError) -> JSONResponse:
        return validation_response(exc.errors(), prefix=("inputs",))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(
            500, "internal", "internal server error", "See the server log; report it if it repeats."
        )


def validation_response(errors: Any, prefix: tuple[str, ...] = ()) -> JSONResponse:
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
