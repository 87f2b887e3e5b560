"""Job events, fanned out to whoever listens (WebSocket clients, the CLI's --wait).

One event shape for every surface: {type, job_id, stage, value, max, percent, eta_s,
message}. Publishing never blocks the runner: each listener has a bounded buffer and a
slow one loses its oldest progress events, never a final one.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

Event = dict[str, Any]
FINAL_TYPES = {"succeeded", "failed", "cancelled", "deleted"}  # no event follows these


def job_event(kind: str, job_id: str, **fields: Any) -> Event:
    event: Event = {
        "type": kind,
        "job_id": job_id,
        "stage": None,
        "value": None,
        "max": None,
        "percent": None,
        "eta_s": None,
        "message": "",
    }
    event.update(fields)
    return event


PROGRESS_FIELDS = ("stage", "value", "max", "percent", "eta_s", "message")
PREVIEW_INTERVAL_S = 2.0  # how often a running job sends a preview image


def stored_progress(progress: dict[str, Any]) -> dict[str, Any]:
    """A worker's progress report as the job store keeps it: no preview image."""
    return {k: progress.get(k) for k in PROGRESS_FIELDS}


def progress_event(job_id: str, progress: dict[str, Any]) -> Event:
    """The bus event for a worker's progress report: `preview` (with the image, base64
    JPEG) when the report carries one, `progress` otherwise."""
    fields = stored_progress(progress)
    if progress.get("preview"):
        return job_event("preview", job_id, **fields, image=progress["preview"], mime="image/jpeg")
    return job_event("progress", job_id, **fields)


def announce_failure(bus: EventBus, job_id: str, state: Any, error: dict[str, Any]) -> None:
    """Publish what a failure made of a job: queued again, failed, or cancelled. Nothing
    when the store changed nothing (the job had already ended)."""
    if state is not None:
        message = error.get("message", "")
        if state.value == "queued":
            message = f"retrying: {message}"
        bus.publish(job_event(state.value, job_id, message=message))


class AsyncListener:
    """A bounded buffer for one event-loop consumer, fed from any thread. When it is full,
    the oldest non-final event goes; final events (a job's end) are never dropped."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int = 256) -> None:
        self.loop = loop
        self.maxsize = maxsize
        self._items: deque[Event] = deque()
        self._ready = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.loop.call_soon_threadsafe(self._put, event)

    def _put(self, event: Event) -> None:
        if len(self._items) >= self.maxsize:
            for i, old in enumerate(self._items):
                if old["type"] not in FINAL_TYPES:
                    del self._items[i]
                    break
        self._items.append(event)
        self._ready.set()

    async def get(self) -> Event:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Event], None]] = []

    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def publish(self, event: Event) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except RuntimeError:  # a listener whose event loop has closed
                self._drop(listener)

    def _drop(self, listener: Callable[[Event], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
