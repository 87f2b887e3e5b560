"""The shared decode -> process -> encode pipeline: ordered, overlapped, bounded, fail-safe."""

from __future__ import annotations

import logging
import threading
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vfxmocap.core.errors import Cancelled
from vfxmocap.core.progress import CancelToken, Progress, ProgressEvent
from vfxmocap.media.pipeline import run_pipeline, transform_video
from vfxmocap.media.sources import open_source
from vfxmocap.media.video import VideoReader, probe


def test_order_is_preserved_and_every_frame_arrives(carphone: Path) -> None:
    seen: list[int] = []
    with VideoReader(carphone) as reader:
        stats = run_pipeline(enumerate(reader), lambda item: item[0], seen.append)
    assert seen == list(range(120)) and stats.frames == 120


def test_stages_run_concurrently() -> None:
    """Three stages of 10 ms each take ~10 ms per item together, not 30."""

    def slow_source():
        for i in range(30):
            time.sleep(0.01)
            yield i

    def slow(x: int) -> int:
        time.sleep(0.01)
        return x

    started = time.perf_counter()
    run_pipeline(slow_source(), slow, lambda _: time.sleep(0.01))
    assert time.perf_counter() - started < 0.75  # serial would take >= 0.9 s


def test_queues_are_bounded() -> None:
    """A fast decoder never runs more than the queue size ahead of a slow consumer."""
    produced = 0

    def source():
        nonlocal produced
        for i in range(100):
            produced += 1
            yield i

    lead = []

    def process(x: int) -> int:
        lead.append(produced - x)
        time.sleep(0.002)
        return x

    run_pipeline(source(), process, lambda _: None, queue_size=4)
    assert max(lead) <= 4 + 2


def test_error_in_process_stops_everything_and_propagates() -> None:
    def process(x: int) -> int:
        if x == 7:
            raise ValueError("bad frame 7")
        return x

    written: list[int] = []
    with pytest.raises(ValueError, match="bad frame 7"):
        run_pipeline(range(1000), process, written.append)
    assert len(written) <= 7
    assert not [t for t in threading.enumerate() if t.name.startswith("vfx-")]


def test_error_in_source_propagates() -> None:
    def source():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        run_pipeline(source(), lambda x: x, lambda _: None)


def test_error_in_sink_propagates() -> None:
    def sink(x: int) -> None:
        if x == 3:
            raise RuntimeError("encoder failed")

    with pytest.raises(RuntimeError, match="encoder failed"):
        run_pipeline(range(100), lambda x: x, sink)
    assert not [t for t in threading.enumerate() if t.name.startswith("vfx-")]


def test_cancel_between_frames() -> None:
    token = CancelToken()

    def process(x: int) -> int:
        if x == 5:
            token.cancel()
        return x

    with pytest.raises(Cancelled):
        run_pipeline(range(1000), process, lambda _: None, cancel=token)


def test_progress_counts_written_frames(carphone: Path, tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    with open_source(carphone) as source:
        progress = Progress(events.append, job_id="j1", min_interval_s=0)
        transform_video(source, lambda f: f, tmp_path / "o.mp4", progress=progress)
    assert events[-1].value == 120 and events[-1].max == 120 and events[-1].percent == 100.0
    assert events[-1].job_id == "j1" and events[-1].eta_s == 0.0


def test_ahead_runs_in_frame_order_off_the_processing_thread(
    carphone: Path, tmp_path: Path
) -> None:
    """`ahead` (a processor's analysis) sees every frame in order in the decode thread and
    hands `process` what it returns, while `process` runs in the caller's thread."""
    ahead_threads: set[str] = set()
    process_threads: set[str] = set()
    planned = iter(range(10**6))

    def plan(frame: np.ndarray) -> tuple[int, np.ndarray]:
        ahead_threads.add(threading.current_thread().name)
        return next(planned), frame

    seen: list[int] = []

    def draw(item: tuple[int, np.ndarray]) -> np.ndarray:
        process_threads.add(threading.current_thread().name)
        seen.append(item[0])
        return item[1]

    with open_source(carphone) as source:
        result = transform_video(source, draw, tmp_path / "o.mp4", ahead=plan)
    assert seen == list(range(120)) and result.stats.frames == 120
    assert ahead_threads == {"vfx-decode"}
    assert process_threads == {threading.current_thread().name}


def test_transform_video_keeps_rate_and_audio(tmp_path: Path, video_with_audio: Path) -> None:
    with open_source(video_with_audio) as source:
        result = transform_video(
            source, lambda f: np.ascontiguousarray(f[:, ::-1]), tmp_path / "mirror.mp4"
        )
    info, src = probe(result.output), probe(video_with_audio)
    assert info.frame_count == src.frame_count and info.frame_rate == src.frame_rate
    assert info.has_audio
    first = next(iter(VideoReader(result.output)))
    original = next(iter(VideoReader(video_with_audio)))
    assert np.abs(first.astype(int) - original[:, ::-1].astype(int)).mean() < 4


def test_non_square_pixels_are_kept_for_frames_of_the_source_size(
    tmp_path: Path, carphone: Path
) -> None:
    """carphone's QCIF pixels are 128/117 wide: a same-size output plays in the same shape,
    a resized one (its pixels made by the process) is square."""
    assert probe(carphone).sample_aspect == Fraction(128, 117)
    with open_source(carphone) as source:
        same = transform_video(source, lambda f: f, tmp_path / "same.mp4")
    assert probe(same.output).sample_aspect == Fraction(128, 117)
    with open_source(carphone) as source:
        half = transform_video(
            source, lambda f: np.ascontiguousarray(f[::2, ::2]), tmp_path / "h.mp4"
        )
    assert probe(half.output).sample_aspect == 1


def test_cancel_leaves_no_output(tmp_path: Path, carphone: Path) -> None:
    token = CancelToken()
    count = 0

    def process(frame):
        nonlocal count
        count += 1
        if count == 30:
            token.cancel()
        return frame

    with pytest.raises(Cancelled), open_source(carphone) as source:
        transform_video(source, process, tmp_path / "out.mp4", cancel=token)
    assert list(tmp_path.iterdir()) == []


def test_memory_stays_flat_with_length(bikes: Path) -> None:
    """Peak traced memory for 250 frames is about that for 50: frames are streamed."""

    def peak(limit: int) -> int:
        tracemalloc.start()
        with open_source(bikes) as source:
            frames = (f for f, _ in zip(source, range(limit), strict=False))
            run_pipeline(frames, lambda f: f.copy(), lambda _: None, queue_size=4)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    short, long = peak(50), peak(250)
    frame_bytes = 640 * 272 * 3
    # At most what the pipeline can hold: its two queues full and one frame in each of the
    # decode, process (in and out) and encode hands. How full the queues get differs with
    # load, not with length: 200 more frames kept would be ~100 MB.
    in_flight = 2 * 4 + 4
    assert long < short + in_flight * frame_bytes
    assert long < 40 * frame_bytes


# --- failure paths: a job fails or continues, never hangs ----------------------------------


class _Records(logging.Handler):
    """Collects the records of one logger (vfxmocap's logger may not propagate to caplog)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> list[logging.LogRecord]:
        self.logger.addHandler(self)
        return self.records

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)


@pytest.mark.timeout(60)
def test_a_failing_progress_listener_is_logged_once_and_the_video_completes(
    carphone: Path, tmp_path: Path
) -> None:
    """A listener that starts raising mid-video (Redis goes down) must not stop or hang it."""
    calls = 0

    def broken(event: ProgressEvent) -> None:
        nonlocal calls
        calls += 1
        if event.value >= 5:
            raise ConnectionError("redis: connection refused")

    with _Records("vfxmocap") as records, open_source(carphone) as source:
        progress = Progress(broken, min_interval_s=0)
        result = transform_video(source, lambda f: f, tmp_path / "o.mp4", progress=progress)
    assert result.stats.frames == 120 and probe(result.output).frame_count == 120
    assert calls > 100  # still called: a blip ends, and progress resumes
    warnings = [r for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "redis: connection refused" in warnings[0].getMessage()


@pytest.mark.timeout(60)
def test_an_error_in_the_writer_outside_the_sink_ends_the_pipeline() -> None:
    class Failing(Progress):
        def advance(self, n: int = 1, message: str = "") -> None:
            raise RuntimeError("progress store gone")

    with pytest.raises(RuntimeError, match="progress store gone"):
        run_pipeline(range(1000), lambda x: x, lambda _: None, progress=Failing(), queue_size=2)
    assert not [t for t in threading.enumerate() if t.name.startswith("vfx-")]


@pytest.mark.timeout(60)
def test_cancel_is_seen_while_waiting_for_a_stalled_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A camera that stops delivering frames: cancel still ends the job promptly."""
    monkeypatch.setattr("vfxmocap.media.pipeline._GRACE_S", 0.5)
    stalled, token = threading.Event(), CancelToken()

    def camera():
        yield 0
        stalled.wait(30)  # no more frames until the test ends
        yield 1

    threading.Timer(0.3, token.cancel).start()
    started = time.perf_counter()
    try:
        with pytest.raises(Cancelled):
            run_pipeline(camera(), lambda x: x, lambda _: None, cancel=token)
        assert time.perf_counter() - started < 5
    finally:
        stalled.set()


@pytest.mark.timeout(60)
def test_cancel_is_seen_while_the_writer_is_stalled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sink that blocks (a network write): the processing thread does not wait on it forever."""
    monkeypatch.setattr("vfxmocap.media.pipeline._GRACE_S", 0.5)
    stalled, token = threading.Event(), CancelToken()
    threading.Timer(0.3, token.cancel).start()
    started = time.perf_counter()
    try:
        with pytest.raises(Cancelled):
            run_pipeline(range(100), lambda x: x, lambda _: stalled.wait(30), cancel=token)
        assert time.perf_counter() - started < 5
    finally:
        stalled.set()
