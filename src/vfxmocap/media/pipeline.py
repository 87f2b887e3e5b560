"""Decode -> process -> encode, overlapped in threads with bounded queues.

Decoding runs in one thread, encoding in another, and processing in the caller's thread,
one frame at a time in order (stateful processors: trackers, filters; the sink may run
models too, e.g. a matte, since a MediaPipe graph may be called from any thread as long as
calls do not overlap). `transform_video` may run a processor's first half (`ahead`: its
tracking) in the decode thread, in order, a frame or more before the rest. Queues are
bounded, so memory stays flat however long the video is. The first error in any stage
stops all three and is re-raised in the caller; cancellation is checked between frames and
while any stage waits, so a stalled source or sink cannot keep a cancelled job alive.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from vfxmocap.core.config import get_settings
from vfxmocap.core.log import get_logger
from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.media.image import Frame, thumbnail_jpeg
from vfxmocap.media.sources import FrameSource
from vfxmocap.media.video import VideoWriter

T = TypeVar("T")
U = TypeVar("U")

log = get_logger("media.pipeline")

_POLL_S = 0.05
# How long a stopping stage may take to finish its current item before it is left behind:
# a stalled camera or network write must not keep a failed or cancelled job alive.
_GRACE_S = 10.0


class _End:
    """Marks the end of a stream in a queue."""


class _Control:
    """What the stages of one run share: a stop flag, the first error, the cancel token."""

    def __init__(self, cancel: CancelToken | None) -> None:
        self.stop = threading.Event()
        self.cancel = cancel
        self.errors: list[BaseException] = []

    def fail(self, error: BaseException) -> None:
        """Record a stage's error (the first one wins) and stop every stage."""
        self.errors.append(error)
        self.stop.set()

    @property
    def halted(self) -> bool:
        return self.stop.is_set() or (self.cancel is not None and self.cancel.cancelled)

    def check(self) -> None:
        """Raise the first stage error, or Cancelled once the job is cancelled."""
        if self.errors:
            raise self.errors[0]
        if self.cancel is not None:
            self.cancel.check()


@dataclass(frozen=True)
class PipelineStats:
    frames: int
    seconds: float
    process_s: float
    waited_for_input_s: float
    waited_for_output_s: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class _Stage(Generic[T]):
    """A bounded queue whose blocking put/get give up once the run is halted (stopped or
    cancelled), so no stage waits forever on one that has died or stalled."""

    def __init__(self, size: int, control: _Control) -> None:
        self._queue: queue.Queue[T | _End] = queue.Queue(maxsize=size)
        self._control = control

    def put(self, item: T | _End) -> bool:
        while not self._control.halted:
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> T | _End:
        while not self._control.halted:
            try:
                return self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return _End()


def _wait_for(thread: threading.Thread, control: _Control) -> None:
    """Wait for a stage that is finishing its work, giving up on an error or a cancel."""
    while thread.is_alive():
        thread.join(_POLL_S)
        control.check()


def _join(thread: threading.Thread) -> None:
    """Let a stopping stage finish its current item; one stuck longer is left behind."""
    thread.join(_GRACE_S)
    if thread.is_alive():
        log.warning("%s did not stop within %.0f s; leaving it behind", thread.name, _GRACE_S)


def run_pipeline(
    frames: Iterable[T],
    process: Callable[[T], U],
    sink: Callable[[U], None],
    *,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    queue_size: int | None = None,
) -> PipelineStats:
    """Feed `frames` through `process` into `sink`, in order, overlapping the three stages."""
    size = queue_size or get_settings().queue_size
    control = _Control(cancel)
    inbox: _Stage[T] = _Stage(size, control)
    outbox: _Stage[U] = _Stage(size, control)

    def read() -> None:
        try:
            for item in frames:
                if not inbox.put(item):
                    return
            inbox.put(_End())
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread
            control.fail(exc)

    def write() -> None:
        try:
            while not isinstance(item := outbox.get(), _End):
                sink(item)
                if progress is not None:
                    progress.advance()
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread
            control.fail(exc)

    reader = threading.Thread(target=read, name="vfx-decode", daemon=True)
    writer = threading.Thread(target=write, name="vfx-encode", daemon=True)
    started = time.perf_counter()
    busy = wait_in = wait_out = 0.0
    count = 0
    reader.start()
    writer.start()
    try:
        while True:
            t0 = time.perf_counter()
            item = inbox.get()
            t1 = time.perf_counter()
            wait_in += t1 - t0
            control.check()  # a halted get returns _End: this tells an error from the end
            if isinstance(item, _End):
                break
            result = process(item)
            t2 = time.perf_counter()
            busy += t2 - t1
            if not outbox.put(result):
                control.check()
            wait_out += time.perf_counter() - t2
            count += 1
        outbox.put(_End())
        _wait_for(writer, control)
        control.check()
    finally:
        control.stop.set()
        _join(reader)
        _join(writer)
    return PipelineStats(
        frames=count,
        seconds=time.perf_counter() - started,
        process_s=busy,
        waited_for_input_s=wait_in,
        waited_for_output_s=wait_out,
    )


@dataclass(frozen=True)
class VideoResult:
    output: Path
    stats: PipelineStats
    size: tuple[int, int]
    fps: float

    def summary(self) -> dict[str, Any]:
        return {
            "frames": self.stats.frames,
            "seconds": round(self.stats.seconds, 3),
            "fps": round(self.stats.fps, 2),
            "size": list(self.size),
            "frame_rate": round(self.fps, 3),
        }


def with_previews(sink: Callable[[Frame], None], progress: Progress) -> Callable[[Frame], None]:
    """`sink`, which also sends a preview of the frame when one is due."""

    def write(frame: Frame) -> None:
        sink(frame)
        if progress.wants_preview():
            progress.preview(thumbnail_jpeg(frame))

    return write


def transform_video(
    source: FrameSource,
    process: Callable[[T], Frame],
    output: str | Path,
    *,
    ahead: Callable[[Frame], T] | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    crf: int | None = None,
    preset: str | None = None,
) -> VideoResult:
    """The common video-to-video loop: stream `source` through `process` into an H.264 MP4.

    `ahead`, when given, runs on each frame in the decode thread, in order, and `process`
    gets what it returns: a processor's analysis (tracking, its models) overlaps the drawing
    of the frame before. Audio is carried over from the source, the frame rate kept, and
    the output written atomically: on an error or a cancel no file appears at `output`.
    """
    if progress is not None:
        progress.stage("frames", source.frame_count)
    with VideoWriter(
        output,
        fps=source.fps,
        crf=crf,
        preset=preset,
        audio_from=source.audio_path,
        sample_aspect=source.sample_aspect,
    ) as writer:
        sink = writer.write if progress is None else with_previews(writer.write, progress)
        frames = cast(Iterable[T], source) if ahead is None else map(ahead, source)
        stats = run_pipeline(frames, process, sink, progress=progress, cancel=cancel)
    assert writer.size is not None
    return VideoResult(Path(output), stats, writer.size, source.fps)
