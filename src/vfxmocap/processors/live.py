"""Live frames: run a stateful frame processor on a stream and measure it.

`LiveSession` is what `vfx live` and the API's WebSocket stream use. It keeps no frame
history (memory stays flat however long the stream), timestamps frames with a monotonic
clock for the trackers' filters, and keeps a bounded window of latencies for statistics.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vfxmocap.core.memory import keep_freed_memory
from vfxmocap.media.image import Frame

ProcessFn = Callable[[Frame, float], Frame]


@dataclass(frozen=True)
class LiveStats:
    frames: int
    fps: float
    latency_p50_ms: float
    latency_p95_ms: float

    def as_dict(self) -> dict[str, float]:
        return {
            "frames": self.frames,
            "fps": round(self.fps, 2),
            "latency_p50_ms": round(self.latency_p50_ms, 2),
            "latency_p95_ms": round(self.latency_p95_ms, 2),
        }


class LiveSession:
    def __init__(
        self,
        process: ProcessFn,
        *,
        window: int = 300,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        keep_freed_memory()  # each frame reuses the last one's arrays instead of faulting them in
        self._process = process
        self._clock = clock
        self._latencies: deque[float] = deque(maxlen=window)
        self._times: deque[float] = deque(maxlen=window)
        self._start: float | None = None
        self.frames = 0

    def push(self, frame: Frame) -> Frame:
        """Process one frame now; returns the processed frame."""
        started = self._clock()
        if self._start is None:
            self._start = started
        out = self._process(frame, started - self._start)
        done = self._clock()
        self._latencies.append(done - started)
        self._times.append(done)
        self.frames += 1
        return out

    def stats(self) -> LiveStats:
        if not self._latencies:
            return LiveStats(0, 0.0, 0.0, 0.0)
        lat = np.array(self._latencies) * 1000.0
        span = self._times[-1] - self._times[0]
        fps = (len(self._times) - 1) / span if span > 0 else 0.0
        return LiveStats(
            self.frames, fps, float(np.percentile(lat, 50)), float(np.percentile(lat, 95))
        )
