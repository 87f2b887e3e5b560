"""Live streams over WebSocket: `WS /api/stream/{name}` for every workflow with a live
spec in the registry (`swap`, `pose` or its workflow's name `mocap`, plugins' streams).

Protocol: the client first sends a JSON text message with its settings: the live
processor's options model, with upload ids in its file fields (swap:
`{"sources": [upload ids], "options": {...}}`; pose: `{"draw": "preview" | "control"}`),
then binary frames (JPEG or WebP). The server answers each processed frame with a JPEG,
and about once a second with a JSON stats message `{type: "stats", fps_in, fps_out,
latency_p50_ms, latency_p95_ms, dropped, frames}`.

Back-pressure: only the newest frame waits. A frame that arrives while another waits
replaces it and is counted as dropped (and never answered), so nothing queues without bound
and latency stays one frame deep. The waiting frame is taken up before a processed frame is
answered, so a client that keeps two frames in flight (one processed, one waiting) and sends
the next on each answer sees a drop only when two frames arrive together (one was still in
transit). Everything a connection holds (the processor, its
models, the waiting frame) is released when it disconnects.

Limits: a frame over `stream_max_pixels` (4K) is refused from its header with an error
message, before it is decoded; a client address may hold `stream_max_per_client` streams
and the server `stream_max_total`: beyond them a stream is closed with 1013 (try again
later) and the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import json
import time
from collections import Counter, deque
from collections.abc import Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from vfxmocap.api.errors import public_text
from vfxmocap.api.security import client_address, websocket_allowed
from vfxmocap.core.config import Settings
from vfxmocap.core.errors import InvalidParams, VfxError
from vfxmocap.core.log import get_logger
from vfxmocap.media.image import Frame, decode_image, encode_image, stream_limit
from vfxmocap.processors.base import Prepared
from vfxmocap.workflows.registry import LiveSpec, get_live

log = get_logger("api.stream")

Process = Callable[[Frame, float], Frame]


def _open(spec: LiveSpec, config: Any, app: FastAPI) -> Prepared[Any, Any]:
    """The stream's processor, prepared from the client's settings (upload ids made paths)."""
    if not isinstance(config, dict):
        raise InvalidParams("the first message must be a JSON object of stream settings")
    settings = app.state.service.uploads.resolve(config, spec.files)
    return spec.start(settings)


class StreamSlots:
    """Streams open per client address and in all: each holds a processor and its models,
    so their number must be bounded. Used from the event loop only, so needs no lock."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client, self.total = per_client, total
        self.open: Counter[str] = Counter()

    def take(self, client: str) -> str | None:
        """Take a slot for `client`, or say why none is free."""
        if sum(self.open.values()) >= self.total:
            return f"the server has its limit of {self.total} live streams open; try again later"
        if self.open[client] >= self.per_client:
            return f"this client has its limit of {self.per_client} live streams open"
        self.open[client] += 1
        return None

    def release(self, client: str) -> None:
        self.open[client] -= 1
        if self.open[client] <= 0:
            del self.open[client]


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


_LIBC = _load_libc()


def _return_memory() -> None:
    """After a stream ends: collect its cycles and hand glibc's freed heap back to the
    system. Measured (bench/api.py hostile, 50 pose streams 16 at a time): RSS stays +2.2 GB
    after they close without either, +140 MB with the trim alone, +40 MB with both."""
    gc.collect()
    trim = getattr(_LIBC, "malloc_trim", None)  # glibc only (not musl, macOS, Windows)
    if trim is not None:
        trim(0)


class _Counters:
    def __init__(self) -> None:
        self.received = self.processed = self.dropped = 0
        self.latencies: deque[float] = deque(maxlen=300)
        self.started = time.monotonic()
        self.window_start = self.started
        self.window_in = self.window_out = 0

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        span = max(now - self.window_start, 1e-6)
        lat = np.array(self.latencies) * 1000 if self.latencies else np.zeros(1)
        stats = {
            "type": "stats",
            "frames": self.processed,
            "received": self.received,
            "dropped": self.dropped,
            "fps_in": round(self.window_in / span, 2),
            "fps_out": round(self.window_out / span, 2),
            "latency_p50_ms": round(float(np.percentile(lat, 50)), 2),
            "latency_p95_ms": round(float(np.percentile(lat, 95)), 2),
        }
        self.window_start, self.window_in, self.window_out = now, 0, 0
        return stats


def add_stream_routes(app: FastAPI, settings: Settings) -> None:
    slots = StreamSlots(settings.stream_max_per_client, settings.stream_max_total)
    app.state.stream_slots = slots

    @app.websocket("/api/stream/{name}")
    async def stream(websocket: WebSocket, name: str) -> None:
        if not await websocket_allowed(websocket, settings.api_token, settings.cors_origins):
            return
        try:
            spec = get_live(name)
        except InvalidParams as exc:
            await websocket.close(code=1008, reason=f"{exc.message}; {exc.hint}"[:120])
            return
        await websocket.accept()  # first, so a refused client gets the close code and reason
        address = client_address(websocket.scope)  # an IPv6 host by its /64
        refusal = slots.take(address)
        if refusal is not None:
            await _refuse(websocket, StreamRefusal(1013, refusal))  # 1013: try again later
            return
        # One thread per connection: its processor sees one frame at a time, in order, and
        # never blocks the event loop or another stream.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stream-{name}")
        loop = asyncio.get_running_loop()
        running: Prepared[Any, Any] | None = None
        try:
            config = await _settings(websocket)
            running = await loop.run_in_executor(pool, _open, spec, config, app)
            await websocket.send_json({"type": "ready", "stream": name})
            await _serve(websocket, running, pool, loop)
        except (ValidationError, VfxError, StreamRefusal) as exc:
            await _refuse(websocket, exc)
        except WebSocketDisconnect:
            log.debug("stream %s: client left", name)
        finally:
            slots.release(address)
            if running is not None:
                await loop.run_in_executor(pool, running.close)
            pool.shutdown(wait=False)
            await asyncio.to_thread(_return_memory)


class StreamRefusal(Exception):
    """A message of the wrong kind, or one too many streams: answered with an error and a
    close code, never a traceback (1003: wrong data type, 1007: unparsable payload, 1008:
    policy, 1013: try again later)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


SETTINGS_TIMEOUT_S = 30.0


async def receive_message(
    websocket: WebSocket, timeout: float | None = None
) -> MutableMapping[str, Any]:
    """The next text or binary message; a disconnect raises WebSocketDisconnect."""
    try:
        message = await asyncio.wait_for(websocket.receive(), timeout=timeout)
    except TimeoutError:
        raise StreamRefusal(1008, f"nothing received within {timeout:.0f} s") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    return message


async def _settings(websocket: WebSocket) -> Any:
    message = await receive_message(websocket, SETTINGS_TIMEOUT_S)
    text = message.get("text")
    if text is None:
        raise StreamRefusal(1003, "send the stream settings as a JSON text message first")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StreamRefusal(1007, f"the settings are not JSON: {exc.msg}") from None


async def _refuse(websocket: WebSocket, exc: ValidationError | VfxError | StreamRefusal) -> None:
    """Tell the client what was wrong, then close with the matching code."""
    if isinstance(exc, ValidationError):
        message, code = _first_error(exc), 1008
    else:
        message, code = exc.message, exc.code if isinstance(exc, StreamRefusal) else 1008
    message = public_text(websocket.app.state.service, message)
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await websocket.send_json({"type": "error", "message": message})
        await websocket.close(code=code, reason=message[:120])


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(map(str, error['loc']))}: {error['msg']}"


async def _serve(
    websocket: WebSocket,
    process: Process,
    pool: ThreadPoolExecutor,
    loop: asyncio.AbstractEventLoop,
) -> None:
    counters = _Counters()
    newest: list[tuple[bytes, float]] = []  # at most one waiting frame
    arrived = asyncio.Event()
    origin = time.monotonic()

    def work(data: bytes) -> bytes:
        frame = decode_image(data, source="stream frame", limit=stream_limit())
        out = process(frame, time.monotonic() - origin)
        return encode_image(out, ".jpg", quality=85)

    async def receive() -> None:
        while True:
            data = (await receive_message(websocket)).get("bytes")
            if data is None:
                raise StreamRefusal(1003, "frames must be binary messages (JPEG or WebP)")
            counters.received += 1
            counters.window_in += 1
            if newest:
                counters.dropped += 1  # stale: replaced by this newer frame
                newest.clear()
            newest.append((data, time.monotonic()))
            arrived.set()

    async def stats() -> None:
        while True:
            await asyncio.sleep(1.0)
            await websocket.send_json(counters.snapshot())

    receiver = asyncio.create_task(receive())
    reporter = asyncio.create_task(stats())
    taken: tuple[bytes, float] | None = None  # the next frame, out of `newest` already
    try:
        while True:
            if taken is None:
                waiter = asyncio.create_task(arrived.wait())
                done, _ = await asyncio.wait(
                    {waiter, receiver}, return_when=asyncio.FIRST_COMPLETED
                )
                if receiver in done:
                    waiter.cancel()
                    receiver.result()  # raises WebSocketDisconnect when the client left
                arrived.clear()
                taken = newest.pop()
            data, received_at = taken
            try:
                encoded = await loop.run_in_executor(pool, work, data)
            except VfxError as exc:  # an undecodable frame: say so, keep the stream
                encoded, message = None, public_text(websocket.app.state.service, exc.message)
            # Take up the waiting frame before answering: a client that sends its next frame
            # on each answer (one processed, one waiting) then does not overtake it.
            taken = newest.pop() if newest else None
            arrived.clear()
            if receiver.done():
                receiver.result()
            if encoded is None:
                await websocket.send_json({"type": "error", "message": message})
                continue
            await websocket.send_bytes(encoded)
            counters.processed += 1
            counters.window_out += 1
            counters.latencies.append(time.monotonic() - received_at)
    finally:
        for task in (receiver, reporter):
            task.cancel()
        for task in (receiver, reporter):
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
