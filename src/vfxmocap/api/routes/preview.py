"""`POST /api/preview`: a frame workflow's processor on one frame of its input, at once."""

from __future__ import annotations

import asyncio
import base64
import threading
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from vfxmocap.core.errors import JobTimeout, WorkerUnavailable
from vfxmocap.jobs.service import JobService
from vfxmocap.media.image import Frame, encode_image
from vfxmocap.workflows import get_workflow
from vfxmocap.workflows.preview import Preview, preview_spec, run_preview

MAX_PREVIEWS = 2  # at once: each loads its processor's models in the server process


class PreviewRequest(BaseModel):
    workflow: str = Field(description="A frame workflow: one whose `live.frames` is set.")
    inputs: dict[str, Any] = Field(description="The workflow's inputs, as a job takes them.")
    frame: int = Field(0, ge=0, description="Which frame of the input (past its end: the last).")
    time_limit_s: float = Field(30.0, gt=0, le=300)


def data_url(frame: Frame) -> str:
    jpeg = encode_image(frame, ".jpg", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def router(service: JobService) -> APIRouter:
    api = APIRouter(tags=["preview"])
    slots = threading.BoundedSemaphore(MAX_PREVIEWS)

    def guarded(run: Any, *args: Any) -> Preview:
        try:
            result: Preview = run(*args)
            return result
        finally:
            slots.release()  # when the work ends, even after the client was answered

    @api.post("/preview")
    async def preview(request: PreviewRequest) -> dict[str, Any]:
        """Before and after (JPEG data URLs) of one frame, with the same processor and
        settings the render uses; refused past `time_limit_s` (504, code timeout)."""
        flow = get_workflow(request.workflow)
        preview_spec(flow)  # a workflow without a frame preview is refused before any work
        inputs = service.parse_inputs(flow, request.inputs, service.jobs_dir / "preview")
        if not slots.acquire(blocking=False):
            raise WorkerUnavailable(
                f"{MAX_PREVIEWS} previews are running already",
                hint="Wait for them to finish, then preview again.",
            )
        work = asyncio.to_thread(
            guarded, run_preview, flow, inputs, request.frame, request.time_limit_s
        )
        try:
            shown = await asyncio.wait_for(work, request.time_limit_s)
        except TimeoutError:
            raise JobTimeout(
                f"the preview took longer than {request.time_limit_s:g} s",
                hint="Raise time_limit_s, or preview a smaller target.",
            ) from None
        return {
            "workflow": flow.name,
            "frame": shown.frame,
            "frames": shown.frames,
            "elapsed_s": round(shown.elapsed_s, 3),
            "before": data_url(shown.before),
            "after": data_url(shown.after),
        }

    return api
