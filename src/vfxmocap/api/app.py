"""The REST + WebSocket API (FastAPI), all under /api.

Jobs are validated against the one workflow registry and queued in the persistent store;
the embedded runner's worker processes run them. Progress is readable over HTTP
(`GET /api/jobs/{id}`) and pushed over `WS /api/ws`. Live frames go through
`WS /api/stream/{name}` (see `vfxmocap.api.stream`). The routes live in `api.routes` by
concern (jobs and uploads, system, events); this module assembles them with the guard
middleware and the error handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from vfxmocap import __version__
from vfxmocap.api.errors import add_error_handlers
from vfxmocap.api.routes import events, jobs, preview, studio, system
from vfxmocap.api.security import GuardMiddleware, RateLimiter
from vfxmocap.api.stream import add_stream_routes
from vfxmocap.jobs.service import JobService
from vfxmocap.workflows import all_workflows


def create_app(service: JobService, *, start: bool = True) -> FastAPI:
    settings = service.settings
    limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_burst)
    # Wrong tokens: ten in a burst, then one every two seconds per address.
    auth_failures = RateLimiter(rate=0.5, burst=10)

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
    app.state.auth_failures = auth_failures  # WebSockets count failures in the same buckets
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
        auth_failures=auth_failures,
        upload_max_bytes=service.uploads.max_bytes,
        body_max_bytes=int(settings.body_max_kb * 1024),
    )

    add_error_handlers(app)
    for routes in (jobs, system, events, preview):
        app.include_router(routes.router(service), prefix="/api")
    add_stream_routes(app, settings)
    app.include_router(studio.router())
    return app


def default_app() -> FastAPI:
    """For `uvicorn vfxmocap.api.app:default_app --factory`."""
    from vfxmocap.device import resolve_device

    return create_app(JobService(device=resolve_device().spec))  # "cuda:1", not just "cuda"
