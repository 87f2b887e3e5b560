"""Live frames through any workflow's live processor: from a camera (or a file played as
one) to a window or a file. Not a queued job: it runs until stopped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from vfxmocap.core.progress import CancelToken
from vfxmocap.media.image import Frame
from vfxmocap.media.sources import FrameSource
from vfxmocap.processors.live import LiveSession, LiveStats
from vfxmocap.workflows.registry import get_live

Sink = Callable[[Frame], bool]  # returns False to stop (a closed window, a key press)


def run_live(
    name: str,
    settings: dict[str, Any] | BaseModel,
    frames: FrameSource,
    sink: Sink,
    *,
    max_frames: int | None = None,
    cancel: CancelToken | None = None,
) -> LiveStats:
    """Process every frame as it arrives through the live stream `name` (a stream's or its
    workflow's name); returns latency and throughput statistics."""
    running = get_live(name).start(settings)
    session = LiveSession(running)
    try:
        for frame in frames:
            if cancel is not None and cancel.cancelled:
                break
            if not sink(session.push(frame)):
                break
            if max_frames is not None and session.frames >= max_frames:
                break
    finally:
        running.close()
    return session.stats()
