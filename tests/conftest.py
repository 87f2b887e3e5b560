"""Shared fixtures: isolated settings, real sample media, and videos derived from it."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vfxmocap.core.config import reload_settings
from vfxmocap.media.video import VideoReader
from vfxmocap.samples import sample_path


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own models dir and no user config file."""
    home = tmp_path_factory.mktemp("vfxhome")
    monkeypatch.setenv("VFX_MODELS_DIR", str(home / "models"))
    monkeypatch.setenv("VFX_CONFIG", str(home / "config.toml"))
    for var in ("VFX_DEVICE", "VFX_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    reload_settings()
    yield
    monkeypatch.undo()
    reload_settings()


@pytest.fixture(scope="session")
def carphone() -> Path:
    return sample_path("carphone")


@pytest.fixture(scope="session")
def bikes() -> Path:
    return sample_path("bikes")


@pytest.fixture(scope="session")
def astronaut() -> Path:
    return sample_path("astronaut")


@pytest.fixture(scope="module")
def face_analyzer():
    """One MediaPipe face analyser for a test module (its graphs take a while to build)."""
    from vfxmocap.vision.faces import MediaPipeFaceAnalyzer

    analyzer = MediaPipeFaceAnalyzer()
    yield analyzer
    analyzer.close()


def encode_test_video(
    path: Path,
    frames: list[np.ndarray],
    *,
    rate: Fraction = Fraction(30000, 1001),
    rotation: int | None = None,
    tone_hz: float | None = None,
    audio_codec: str = "aac",
    pix_fmt: str = "yuv420p",
) -> Path:
    """Write real frames to an MP4/MOV, optionally with a display rotation and a sine tone."""
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=rate)
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = pix_fmt
    if rotation is not None:
        stream.set_display_rotation(rotation)
    audio = None
    if tone_hz is not None:
        audio = container.add_stream(audio_codec, rate=44100)
    for i, frame in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts = i
        for packet in stream.encode(vf):
            container.mux(packet)
    if audio is not None:
        seconds = len(frames) / float(rate)
        t = np.arange(int(44100 * seconds)) / 44100
        samples = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
        fmt = "fltp" if audio_codec == "aac" else "s16"
        data = samples[None, :] if fmt == "fltp" else (samples * 32767).astype(np.int16)[None, :]
        af = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
        af.sample_rate, af.pts = 44100, 0
        for packet in audio.encode(af):
            container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="session")
def carphone_frames(carphone: Path) -> list[np.ndarray]:
    """The first 30 frames of carphone (a talking man), decoded once per session."""
    with VideoReader(carphone) as reader:
        return [f for f, _ in zip(reader, range(30), strict=False)]


@pytest.fixture(scope="session")
def video_with_audio(tmp_path_factory: pytest.TempPathFactory, carphone_frames) -> Path:
    """carphone frames with a 440 Hz AAC tone: a real talking-head clip that has audio."""
    path = tmp_path_factory.mktemp("media") / "talk_with_audio.mp4"
    return encode_test_video(path, carphone_frames, tone_hz=440.0)


def _faststart_copy(source: Path, target: Path) -> Path:
    """Re-encode with vfx's own writer, which puts the index first."""
    from vfxmocap.media.video import VideoWriter

    with VideoReader(source) as reader, VideoWriter(target, fps=reader.info.frame_rate) as writer:
        for frame in reader:
            writer.write(frame)
    return target


@pytest.fixture(scope="session")
def faststart_cut(tmp_path_factory: pytest.TempPathFactory, carphone: Path) -> Path:
    """carphone remuxed with its index first (`+faststart`), then cut at 70%: the index
    still lists all 120 frames, the data for the last ones is gone."""
    full = tmp_path_factory.mktemp("cut") / "faststart.mp4"
    with (
        av.open(str(carphone)) as source,
        av.open(str(full), "w", options={"movflags": "+faststart"}) as target,
    ):
        video = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:  # the demuxer's final flush packet carries nothing
                packet.stream = video
                target.mux(packet)
    cut = full.with_name("faststart_cut.mp4")
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.7)])
    return cut


@pytest.fixture(scope="session")
def bad_media(tmp_path_factory: pytest.TempPathFactory, carphone: Path, carphone_frames):
    """Every kind of unusable video a user can hand us: label -> (path, reason in the error)."""
    tmp = tmp_path_factory.mktemp("bad")
    text = tmp / "notes.mp4"
    text.write_text("not a video\n" * 100)

    empty = tmp / "empty.mkv"  # a video track header and not one frame
    container = av.open(str(empty), "w")
    stream = container.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    container.start_encoding()
    container.close()

    half = tmp / "half.mp4"  # carphone keeps its index at the end: cut, it will not open
    half.write_bytes(carphone.read_bytes()[: carphone.stat().st_size // 2])

    full = _faststart_copy(carphone, tmp / "faststart.mp4")
    data = full.read_bytes()
    cut = tmp / "cut.mp4"  # index first: opens, then runs out of frames
    cut.write_bytes(data[: int(len(data) * 0.6)])

    noisy = bytearray(data)  # random bytes over a third of a second of video
    rng = np.random.default_rng(0)
    start = len(noisy) // 3
    noisy[start : start + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    corrupt = tmp / "corrupt.mp4"
    corrupt.write_bytes(bytes(noisy))

    ffv1 = tmp / "ffv1.mkv"  # a Matroska file whose FourCC no decoder knows
    container = av.open(str(ffv1), "w")
    stream = container.add_stream("ffv1", rate=25)
    stream.width, stream.height, stream.pix_fmt = 176, 144, "yuv420p"
    for i, frame in enumerate(carphone_frames[:3]):
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts = i
        for packet in stream.encode(vf):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    unknown = tmp / "unknown_codec.mkv"
    unknown.write_bytes(ffv1.read_bytes().replace(b"FFV1", b"QQQQ"))

    return {
        "missing": (tmp / "missing.mp4", "file not found"),
        "not media": (text, "not a readable media file"),
        "zero frames": (empty, "no video frames"),
        "truncated, index last": (half, "not a readable media file"),
        "truncated, index first": (cut, "truncated"),
        "corrupt": (corrupt, "corrupt video data"),
        "unsupported codec": (unknown, "unsupported video codec"),
    }


ALLOW_SKIP = os.environ.get("VFX_TEST_ALLOW_SKIP") == "1"  # .ci/run never sets it


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random-weight diffusers pipelines (tests/tiny_pipelines.py) as folders, each
    built the first time a test asks for it."""
    torch = require("torch")
    require("diffusers")
    from tests.tiny_pipelines import Built

    torch.set_num_threads(1)  # two shared cores: threads only add overhead at this size
    return Built(tmp_path_factory.mktemp("tiny_pipelines"))


def require(module: str):
    """Import a test dependency; a missing one fails the test unless VFX_TEST_ALLOW_SKIP=1."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        if ALLOW_SKIP:
            pytest.skip(f"{module} is not installed (VFX_TEST_ALLOW_SKIP=1)")
        pytest.fail(f"{module} is not installed: make test installs it")


def run_vfx(
    *args: object,
    env: dict[str, str] | None = None,
    base: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
    cwd: Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `vfx` as a user would, in a real process: `base` (default: this process's
    environment) plus `env`, less the `drop` variables."""
    environment = {**(os.environ if base is None else base), "COLUMNS": "200", **(env or {})}
    for name in drop:
        environment.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "vfxmocap.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=environment,
        check=False,
    )


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster for the session (Debian's `postgresql`; .ci/run
    installs it); missing, it fails the test unless VFX_TEST_ALLOW_SKIP=1."""
    from tests.servers import PostgresServer, postgres_bindir

    require("psycopg")
    bindir = postgres_bindir()
    if bindir is None:
        if ALLOW_SKIP:
            pytest.skip("PostgreSQL is not installed (VFX_TEST_ALLOW_SKIP=1)")
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
    with PostgresServer(bindir) as server:
        yield server
