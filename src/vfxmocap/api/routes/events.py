"""`WS /api/ws`: job events as they happen, for every job or one."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from vfxmocap.api.errors import public_text
from vfxmocap.api.security import websocket_allowed
from vfxmocap.api.stream import receive_message
from vfxmocap.core.log import get_logger
from vfxmocap.jobs.events import FINAL_TYPES, AsyncListener, job_event
from vfxmocap.jobs.service import JobService

log = get_logger("api")


def router(service: JobService) -> APIRouter:
    api = APIRouter()
    settings = service.settings

    @api.websocket("/ws")
    async def events(websocket: WebSocket, job_id: str | None = None) -> None:
        """Job events as JSON: queued, started, progress, succeeded, failed, cancelled, deleted.
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
                    if event.get("message"):  # a failure's message may name server files
                        event = {**event, "message": public_text(service, event["message"])}
                    await websocket.send_json(event)
                    if job_id is not None and event["type"] in FINAL_TYPES:
                        await websocket.close()
                        break
        except WebSocketDisconnect:
            log.debug("events socket closed by the client")
        finally:
            left.cancel()
            unsubscribe()

    return api


async def _until_disconnect(websocket: WebSocket) -> None:
    """Read until the client leaves (text is ignored: keep-alives); binary is refused."""
    try:
        while True:
            if (await receive_message(websocket)).get("bytes") is not None:
                reason = "this socket sends job events; it takes no binary messages"
                await websocket.close(code=1003, reason=reason)
                return
    except (WebSocketDisconnect, RuntimeError):
        return
