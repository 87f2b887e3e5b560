"""Video I/O on real clips: probe, streamed decode, atomic H.264 encode with audio carried over."""

from __future__ import annotations

import os
import random
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import encode_test_video
from vfxmocap.core.errors import InvalidParams, MediaError
from vfxmocap.media.video import VideoReader, VideoWriter, probe


def test_probe_carphone(carphone: Path) -> None:
    info = probe(carphone)
    assert info.frame_count == 120
    assert info.frame_rate == Fraction(30000, 1001) and round(info.fps, 2) == 29.97
    assert (info.width, info.height) == (176, 144)
    assert info.duration_s == pytest.approx(4.004, abs=0.01)
    assert info.codec == "h264" and info.has_audio is False and info.rotation == 0


def test_reader_streams_upright_rgb_frames_with_timestamps(bikes: Path) -> None:
    with VideoReader(bikes) as reader:
        times, count = [], 0
        for t, frame in reader.timed():
            assert frame.shape == (272, 640, 3) and frame.dtype == np.uint8
            times.append(t)
            count += 1
    assert count == 250
    assert times[0] == 0.0 and np.allclose(np.diff(times), 1 / 25)


def test_rotation_metadata_is_applied(tmp_path: Path, carphone_frames) -> None:
    path = encode_test_video(tmp_path / "portrait.mp4", carphone_frames[:5], rotation=90)
    info = probe(path)
    assert info.rotation == 90 and (info.width, info.height) == (144, 176)
    first = next(iter(VideoReader(path)))
    assert first.shape == (176, 144, 3)
    # Display rotation 90 is counter-clockwise: the decoded frame is the source turned left.
    expected = np.rot90(carphone_frames[0], k=1)
    assert np.abs(first.astype(int) - expected.astype(int)).mean() < 6


def test_writer_round_trip_keeps_frames_and_rate(tmp_path: Path, carphone_frames) -> None:
    out = tmp_path / "copy.mp4"
    with VideoWriter(out, fps=Fraction(30000, 1001), crf=12) as writer:
        for frame in carphone_frames:
            writer.write(frame)
    info = probe(out)
    assert info.frame_count == len(carphone_frames) and info.frame_rate == Fraction(30000, 1001)
    decoded = list(VideoReader(out))
    error = np.mean([np.abs(a.astype(int) - b.astype(int)).mean()
                     for a, b in zip(decoded, carphone_frames, strict=True)])
    assert error < 3.0
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_odd_sizes_are_padded_to_even(tmp_path: Path, carphone_frames) -> None:
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, fps=25) as writer:
        for frame in carphone_frames[:5]:
            writer.write(frame[:143, :175])
    info = probe(out)
    assert (info.width, info.height) == (176, 144) and info.frame_count == 5


def test_audio_is_carried_over(tmp_path: Path, video_with_audio: Path) -> None:
    out = tmp_path / "processed.mp4"
    with VideoReader(video_with_audio) as reader, \
            VideoWriter(out, fps=reader.info.frame_rate, audio_from=video_with_audio) as writer:
        for frame in reader:
            writer.write(255 - frame)  # a real change to the pixels
    info = probe(out)
    assert info.has_audio and info.audio_codec == "aac"
    assert _audio_seconds(out) == pytest.approx(_audio_seconds(video_with_audio), abs=0.05)
    assert _dominant_hz(out) == pytest.approx(440, abs=5)


def test_audio_mp4_cannot_hold_is_reencoded_to_aac(tmp_path: Path, carphone_frames) -> None:
    source = encode_test_video(tmp_path / "pcm.mov", carphone_frames[:30], tone_hz=440.0,
                               audio_codec="pcm_s16le")
    assert probe(source).audio_codec == "pcm_s16le"
    out = tmp_path / "out.mp4"
    with VideoWriter(out, fps=30, audio_from=source) as writer:
        for frame in VideoReader(source):
            writer.write(frame)
    assert probe(out).audio_codec == "aac"
    assert _dominant_hz(out) == pytest.approx(440, abs=5)


def test_failed_write_leaves_no_file(tmp_path: Path, carphone_frames) -> None:
    out = tmp_path / "never.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(out, fps=30) as writer:
        for i, frame in enumerate(carphone_frames):
            writer.write(frame)
            if i == 10:
                raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_frame_size_change_is_rejected(tmp_path: Path, carphone_frames) -> None:
    with pytest.raises(InvalidParams, match="size changed"), \
            VideoWriter(tmp_path / "x.mp4", fps=30) as writer:
        writer.write(carphone_frames[0])
        writer.write(carphone_frames[1][:100])
    assert list(tmp_path.iterdir()) == []


# --- bad input: each is a MediaError (exit code 3) naming the file -------------------------

def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="file not found"):
        probe(tmp_path / "gone.mp4")


def test_not_a_media_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("hello\n" * 200)
    with pytest.raises(MediaError, match="not a readable media file") as info:
        probe(path)
    assert str(path) in str(info.value) and info.value.exit_code == 3


def test_zero_frames(tmp_path: Path) -> None:
    """A Matroska file with a video track header and not a single frame."""
    path = tmp_path / "empty.mkv"
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    container.start_encoding()
    container.close()
    with pytest.raises(MediaError, match="no video frames"):
        probe(path)


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "tone.m4a"
    container = av.open(str(path), "w", format="mp4")
    audio = container.add_stream("aac", rate=44100)
    samples = np.zeros((1, 44100), np.float32)
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
    frame.sample_rate, frame.pts = 44100, 0
    for packet in [*audio.encode(frame), *audio.encode(None)]:
        container.mux(packet)
    container.close()
    with pytest.raises(MediaError, match="no video stream"):
        probe(path)


def test_truncated_file_with_index_at_end(tmp_path: Path, carphone: Path) -> None:
    data = carphone.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError):
        probe(path)


def test_truncated_file_with_index_first_fails_while_reading(tmp_path: Path, carphone) -> None:
    full = tmp_path / "faststart.mp4"
    with VideoWriter(full, fps=30) as writer:  # the writer puts the index first
        for frame in VideoReader(carphone):
            writer.write(frame)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    assert probe(cut).frame_count == 120  # the header still promises every frame
    with pytest.raises(MediaError, match="truncated"):
        for _ in VideoReader(cut):
            pass


def test_corrupt_data_in_the_middle(tmp_path: Path, carphone) -> None:
    full = tmp_path / "good.mp4"
    with VideoWriter(full, fps=30) as writer:
        for frame in VideoReader(carphone):
            writer.write(frame)
    data = bytearray(full.read_bytes())
    rng = random.Random(0)
    start = len(data) // 3
    for i in range(start, start + 3000):
        data[i] = rng.randrange(256)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(MediaError, match="corrupt"):
        for _ in VideoReader(bad):
            pass


def test_unsupported_codec(tmp_path: Path, carphone_frames) -> None:
    """A Matroska file whose video FourCC no decoder knows."""
    path = tmp_path / "ffv1.mkv"
    container = av.open(str(path), "w")
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
    data = path.read_bytes()
    assert data.count(b"V_FFV1") + data.count(b"FFV1") >= 1
    path.write_bytes(data.replace(b"V_FFV1", b"V_QQQQ").replace(b"FFV1", b"QQQQ"))
    with pytest.raises(MediaError, match="unsupported video codec"):
        probe(path)


def _audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return sum(f.samples for f in container.decode(stream)) / stream.codec_context.sample_rate


def _dominant_hz(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        pcm = np.concatenate([f.to_ndarray()[0] for f in container.decode(stream)])
    spectrum = np.abs(np.fft.rfft(pcm))
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])


def test_tmp_names_do_not_collide_with_outputs(tmp_path: Path, carphone_frames) -> None:
    """Two writers to different outputs in one folder each produce only their own file."""
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    with VideoWriter(a, fps=30) as wa, VideoWriter(b, fps=30) as wb:
        for frame in carphone_frames[:3]:
            wa.write(frame)
            wb.write(frame)
    assert sorted(os.listdir(tmp_path)) == ["a.mp4", "b.mp4"]
