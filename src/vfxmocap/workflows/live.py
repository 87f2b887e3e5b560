"""Live face swap: frames from a camera (or a file played as one) through the stateful
processor, to a window or a file. Not a queued job: it runs until stopped."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from vfxmocap.core.progress import CancelToken
from vfxmocap.media.image import Frame
from vfxmocap.media.sources import FrameSource
from vfxmocap.processors.face_swap.processor import FaceSwapProcessor, SwapOptions, SwapSetup
from vfxmocap.processors.live import LiveSession, LiveStats

Sink = Callable[[Frame], bool]  # returns False to stop (a closed window, a key press)


def live_swap(
    sources: Sequence[str | Path],
    frames: FrameSource,
    sink: Sink,
    options: SwapOptions | None = None,
    *,
    max_frames: int | None = None,
    cancel: CancelToken | None = None,
) -> LiveStats:
    """Swap every frame as it arrives; returns latency and throughput statistics."""
    processor = FaceSwapProcessor()
    state = processor.prepare(
        SwapSetup(sources=[str(s) for s in sources], options=options or SwapOptions())
    )
    session = LiveSession(lambda frame, t: processor.process(frame, state, t))
    try:
        for frame in frames:
            if cancel is not None and cancel.cancelled:
                break
            if not sink(session.push(frame)):
                break
            if max_frames is not None and session.frames >= max_frames:
                break
    finally:
        state.close()
    return session.stats()
