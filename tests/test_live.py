"""Live face swap: the stateful processor on a stream, and `vfx live` without a display."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import cv2
import pytest

from tests.conftest import run_vfx
from vfxmocap.media.sources import IteratorSource
from vfxmocap.media.video import probe
from vfxmocap.processors.live import LiveSession
from vfxmocap.workflows.live import run_live


def test_session_stats_from_a_known_clock() -> None:
    ticks = iter([0.0, 0.010, 0.033, 0.043, 0.066, 0.086])
    session = LiveSession(lambda frame, t: frame, clock=lambda: next(ticks))
    for _ in range(3):
        session.push(None)  # type: ignore[arg-type]
    stats = session.stats()
    assert stats.frames == 3
    # done at 10, 43 and 86 ms: latencies 10, 10, 20 ms; two intervals over 76 ms
    assert stats.latency_p50_ms == pytest.approx(10.0)
    assert stats.fps == pytest.approx(2 / 0.076)


def test_live_swap_is_stateful_and_bounded(carphone_frames, astronaut: Path) -> None:
    frames = [cv2.resize(f, (640, 480)) for f in carphone_frames]
    outputs = []
    stats = run_live(
        "swap",
        {"sources": [str(astronaut)]},
        IteratorSource(iter(frames * 3)),
        lambda f: outputs.append(f.mean()) or True,
        max_frames=60,
    )
    assert stats.frames == 60 and len(outputs) == 60
    assert stats.latency_p95_ms > 0


def test_memory_does_not_grow_with_stream_length(carphone_frames, astronaut: Path) -> None:
    frames = [cv2.resize(f, (320, 240)) for f in carphone_frames]

    def peak(n: int) -> int:
        tracemalloc.start()
        settings = {"sources": [str(astronaut)]}
        run_live("swap", settings, IteratorSource(iter(frames * 10)), lambda f: True, max_frames=n)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    short, long = peak(30), peak(240)
    assert long < short * 1.5 + 2_000_000


def test_cli_live_records_a_file_without_display(
    tmp_path: Path, carphone: Path, astronaut: Path
) -> None:
    out = tmp_path / "live.mp4"
    result = run_vfx(
        "live",
        "swap",
        "-s",
        f"sources={astronaut}",
        "-i",
        carphone,
        "-o",
        out,
        "--max-frames",
        50,
        "--json",
        drop=("DISPLAY", "WAYLAND_DISPLAY"),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frames"] == 50 and report["latency_p95_ms"] > 0
    assert probe(out).frame_count == 50


def test_cli_live_without_a_camera_exits_3(astronaut: Path) -> None:
    result = run_vfx("live", "swap", "-s", f"sources={astronaut}", "--camera", 7)
    assert result.returncode == 3 and "camera 7 could not be opened" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("stream", "settings"),
    [("pose", ["-s", "draw=control"]), ("stamp", ["-s", "image={astronaut}", "-s", "size=8"])],
)
def test_cli_live_runs_any_live_workflow(
    tmp_path: Path, carphone: Path, astronaut: Path, stream: str, settings: list[str]
) -> None:
    """The pose stream of mocap, and a plugin's, with settings as `vfx run` takes them."""
    out = tmp_path / "live.mp4"
    sets = [s.format(astronaut=astronaut) for s in settings]
    result = run_vfx(
        "live",
        stream,
        *sets,
        "-i",
        carphone,
        "-o",
        out,
        "--max-frames",
        10,
        "--json",
        env={"VFX_WORKFLOW_MODULES": json.dumps(["tests.plugin_workflows"])},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frames"] == 10 and probe(out).frame_count == 10


def test_cli_live_names_the_live_workflows(carphone: Path) -> None:
    result = run_vfx("live", "transcode", "-i", carphone)
    assert result.returncode == 2, result.stderr
    assert "no live stream 'transcode'" in result.stderr and "swap, pose" in result.stderr
