"""Video I/O on real clips: probe, streamed decode, atomic H.264 encode with audio carried over."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import encode_test_video
from vfxmocap.core.config import reload_settings
from vfxmocap.core.errors import InputError, InvalidParams, MediaError, MediaTooLarge
from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.media.video import VideoReader, VideoWriter, probe
from vfxmocap.workflows import get_workflow


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
    error = np.mean(
        [
            np.abs(a.astype(int) - b.astype(int)).mean()
            for a, b in zip(decoded, carphone_frames, strict=True)
        ]
    )
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
    with (
        VideoReader(video_with_audio) as reader,
        VideoWriter(out, fps=reader.info.frame_rate, audio_from=video_with_audio) as writer,
    ):
        for frame in reader:
            writer.write(255 - frame)  # a real change to the pixels
    info = probe(out)
    assert info.has_audio and info.audio_codec == "aac"
    assert _audio_seconds(out) == pytest.approx(_audio_seconds(video_with_audio), abs=0.05)
    assert _dominant_hz(out) == pytest.approx(440, abs=5)


@pytest.mark.parametrize("codec", ["aac", "pcm_s16le"])
def test_audio_ends_with_a_shortened_video(tmp_path: Path, carphone_frames, codec: str) -> None:
    """Ten frames of a one-second take carry a third of a second of its sound, not all."""
    source = encode_test_video(
        tmp_path / f"take_{codec}.mov", carphone_frames[:30], tone_hz=440.0, audio_codec=codec
    )
    out = tmp_path / "first_third.mp4"
    with VideoWriter(out, fps=30, audio_from=source) as writer:
        for frame in carphone_frames[:10]:
            writer.write(frame)
    assert _audio_seconds(source) > 0.95
    assert _audio_seconds(out) == pytest.approx(1 / 3, abs=0.06)


def test_audio_mp4_cannot_hold_is_reencoded_to_aac(tmp_path: Path, carphone_frames) -> None:
    source = encode_test_video(
        tmp_path / "pcm.mov", carphone_frames[:30], tone_hz=440.0, audio_codec="pcm_s16le"
    )
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
    with (
        pytest.raises(InvalidParams, match="size changed"),
        VideoWriter(tmp_path / "x.mp4", fps=30) as writer,
    ):
        writer.write(carphone_frames[0])
        writer.write(carphone_frames[1][:100])
    assert list(tmp_path.iterdir()) == []


# --- bad input: each is a MediaError (exit code 3) naming the file -------------------------

BAD = [
    "missing",
    "not media",
    "zero frames",
    "truncated, index last",
    "truncated, index first",
    "corrupt",
    "unsupported codec",
]


@pytest.mark.parametrize("label", BAD)
def test_bad_input_is_a_media_error_naming_file_and_reason(bad_media, label: str) -> None:
    path, reason = bad_media[label]
    with pytest.raises(MediaError) as info, VideoReader(path) as reader:
        for _ in reader:
            pass
    assert str(path) in str(info.value) and reason in str(info.value)
    assert info.value.exit_code == 3


def test_a_file_cut_after_its_index_does_not_probe(faststart_cut: Path) -> None:
    """The index promises 120 frames and the first ones decode; probe still finds the cut."""
    with pytest.raises(MediaError, match="truncated: its index lists data up to byte") as info:
        probe(faststart_cut)
    assert info.value.exit_code == 3
    flow = get_workflow("probe")
    with pytest.raises(MediaError, match="truncated"):
        flow(flow.parse({"input": str(faststart_cut)}), Progress(), CancelToken())


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "tone.m4a"
    container = av.open(str(path), "w", format="mp4")
    audio = container.add_stream("aac", rate=44100)
    frame = av.AudioFrame.from_ndarray(
        np.zeros((1, 44100), np.float32), format="fltp", layout="mono"
    )
    frame.sample_rate, frame.pts = 44100, 0
    for packet in [*audio.encode(frame), *audio.encode(None)]:
        container.mux(packet)
    container.close()
    with pytest.raises(MediaError, match="no video stream"):
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


def test_an_output_ffmpeg_cannot_open_leaves_no_part_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FFmpeg refusing the output (a full or read-only disk) is a typed error, and clean."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise av.error.PermissionError(13, "Permission denied", str(args[0]))

    monkeypatch.setattr(av, "open", refuse)
    with pytest.raises(InputError, match="cannot write"):
        VideoWriter(tmp_path / "out.mp4", fps=25)
    assert list(tmp_path.iterdir()) == []


def test_frame_size_is_checked_from_the_stream_header(
    carphone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A video whose frames are over the image limit is refused before one is decoded."""
    monkeypatch.setenv("VFX_IMAGE_MAX_PIXELS", str(160 * 120))
    reload_settings()
    decoded: list[object] = []
    monkeypatch.setattr(av.container.InputContainer, "decode", lambda *a: decoded.append(a))
    for read in (probe, VideoReader):
        with pytest.raises(MediaTooLarge, match="176x144") as info:
            read(carphone)
        assert "VFX_IMAGE_MAX_PIXELS" in info.value.hint
    assert decoded == []


def _h264(frames: list[np.ndarray]) -> bytes:
    """Frames as a raw H.264 stream (each such stream starts with its own size)."""
    import io

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def test_frame_size_is_checked_on_every_decoded_frame(
    carphone: Path, bikes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream may change its size mid-way (a new SPS): its header says 176x144, later
    frames are 640x272. Each decoded frame is checked, so the big ones are refused."""
    with VideoReader(carphone) as small, VideoReader(bikes) as big:
        head = [f for f, _ in zip(small, range(5), strict=False)]
        tail = [f for f, _ in zip(big, range(5), strict=False)]
    clip = tmp_path / "grows.h264"
    clip.write_bytes(_h264(head) + _h264(tail))
    monkeypatch.setenv("VFX_IMAGE_MAX_PIXELS", str(176 * 144 * 2))
    reload_settings()
    assert (probe(clip).width, probe(clip).height) == (176, 144)  # the header passes
    seen: list[tuple[int, ...]] = []
    with VideoReader(clip) as reader, pytest.raises(MediaTooLarge, match="640x272") as info:
        for frame in reader:
            seen.append(frame.shape)
    assert seen == [(144, 176, 3)] * 5 and "VFX_IMAGE_MAX_PIXELS" in info.value.hint
