"""Video on PyAV: probe, stream RGB frames in, encode H.264 MP4 out with the source's audio.

Frames are decoded one at a time; nothing holds a whole video in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import cv2
import numpy as np

from vfxmocap.core.config import get_settings
from vfxmocap.core.errors import InputError, InvalidParams, MediaError
from vfxmocap.core.files import AtomicFile, regular_file
from vfxmocap.core.log import get_logger
from vfxmocap.media.image import Frame, check_pixels, image_limit

log = get_logger("media.video")

# Audio codecs an MP4 can carry as they are; anything else is re-encoded to AAC.
_MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}


@dataclass(frozen=True)
class VideoInfo:
    """What `probe()` reports; width and height are as displayed (rotation applied)."""

    path: str
    width: int
    height: int
    fps: float
    frame_rate: Fraction
    frame_count: int
    duration_s: float
    rotation: int
    codec: str
    pix_fmt: str
    has_audio: bool
    audio_codec: str | None
    container: str
    # Width over height of one pixel as displayed (1 for square pixels; 128/117 for
    # carphone's QCIF): a player stretches the frame by it.
    sample_aspect: Fraction = Fraction(1)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["frame_rate"] = str(self.frame_rate)
        data["sample_aspect"] = str(self.sample_aspect)
        data["fps"] = round(self.fps, 3)
        data["duration_s"] = round(self.duration_s, 3)
        return data


def _file_name(path: str | Path) -> str:
    """The path as FFmpeg reads a file: absolute, so `a:b.mp4` is not protocol `a`."""
    return str(Path(path).absolute())


def _open(path: str | Path) -> Any:
    """Open a container for reading, mapping every FFmpeg failure to a MediaError."""
    path = regular_file(path, "a video")
    try:
        return av.open(_file_name(path), mode="r")
    except av.error.EOFError as exc:
        raise MediaError(path, "contains no video frames (the file ends before the first)") from exc
    except av.FFmpegError as exc:
        raise MediaError(
            path,
            f"not a readable media file ({exc.strerror or exc})",
            hint="The file is corrupt, truncated or not a video.",
        ) from exc


def _video_stream(container: Any, path: str | Path) -> Any:
    if not container.streams.video:
        raise MediaError(path, "has no video stream")
    stream = container.streams.video[0]
    codec = stream.codec_context
    if codec is None or codec.name in (None, "", "none"):
        tag = getattr(codec, "codec_tag", "") if codec is not None else ""
        raise MediaError(
            path,
            f"unsupported video codec {tag or 'unknown'}",
            hint="Convert it to H.264, e.g. with ffmpeg -i IN -c:v libx264 OUT.mp4.",
        )
    # The size the stream header declares, checked before the first frame is decoded.
    check_pixels(codec.width, codec.height, path, image_limit())
    stream.thread_type = "AUTO"
    return stream


_JPEG_RANGE = 2  # AVCOL_RANGE_JPEG: full-range YUV, which OpenCV's I420 conversion does not assume


def _to_rgb(frame: Any) -> Frame:
    """Decoded frame to RGB. OpenCV converts 4:2:0 BT.601 limited range (what H.264 usually
    carries) about twice as fast as swscale with identical results; other formats use swscale."""
    if (
        frame.format.name == "yuv420p"
        and frame.width % 2 == 0
        and frame.height % 2 == 0
        and frame.color_range != _JPEG_RANGE
    ):
        rgb: Frame = cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
        return rgb
    array: Frame = frame.to_ndarray(format="rgb24")
    return array


def _rotate(frame: Frame, degrees: int) -> Frame:
    """Apply display-matrix rotation (counter-clockwise degrees, as FFmpeg reports it)."""
    k = (degrees // 90) % 4
    return np.ascontiguousarray(np.rot90(frame, k=k)) if k else frame


def probe(path: str | Path) -> VideoInfo:
    """Inspect a video and decode its first frame, so a file that probes also plays."""
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        first = _first_frame(container, stream, path)
        _check_complete(container, path)
        rotation = round(first.rotation or 0) % 360
        rate = Fraction(stream.average_rate or stream.guessed_rate or 0)
        if rate <= 0:
            raise MediaError(path, "has no frame rate")
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = (container.duration or 0) / 1_000_000
        count = int(stream.frames) or max(1, round(duration * float(rate)))
        width, height = first.width, first.height
        aspect = Fraction(stream.codec_context.sample_aspect_ratio or 1)
        if rotation in (90, 270):
            width, height = height, width
            aspect = 1 / aspect
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            path=str(path),
            width=width,
            height=height,
            fps=float(rate),
            frame_rate=rate,
            frame_count=count,
            duration_s=duration if duration > 0 else count / float(rate),
            rotation=rotation,
            codec=stream.codec_context.name,
            pix_fmt=str(stream.codec_context.pix_fmt),
            has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio is not None else None,
            container=container.format.name,
            sample_aspect=aspect if aspect > 0 else Fraction(1),
        )
    finally:
        container.close()


_CUT_HINT = "The file was cut short (an interrupted copy or recording); use a full copy."


def _check_complete(container: Any, path: str | Path) -> None:
    """A file cut after its index (MP4 with +faststart) opens and plays its first frames;
    the index says where each stream's last packet ends, so a cut shows without decoding."""
    size = Path(path).stat().st_size
    for stream in container.streams:
        entries = getattr(stream, "index_entries", None)  # PyAV >= 14; none for some formats
        if not entries:
            continue
        last = entries[len(entries) - 1]
        if last.pos >= 0 and last.pos + last.size > size:
            raise MediaError(
                path,
                f"truncated: its index lists data up to byte {last.pos + last.size}, "
                f"the file ends at {size}",
                hint=_CUT_HINT,
            )


def _first_frame(container: Any, stream: Any, path: str | Path) -> Any:
    try:
        for frame in container.decode(stream):
            return frame
    except av.FFmpegError as exc:
        raise MediaError(path, f"corrupt video data ({exc.strerror or exc})") from exc
    raise MediaError(path, "contains no video frames")


class VideoReader:
    """Iterate a video's frames as upright RGB uint8 arrays, decoding one at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.info = probe(self.path)
        self._container = _open(self.path)
        self._stream = _video_stream(self._container, self.path)
        # Frame count from the container index (0 when the format has none, e.g. WebM).
        self._indexed = int(self._stream.frames or 0)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def __iter__(self) -> Iterator[Frame]:
        for _, frame in self.timed():
            yield frame

    def timed(self) -> Iterator[tuple[float, Frame]]:
        """Yield (seconds from the first frame, frame): container timestamps, so VFR is exact."""
        count, start = 0, None
        rotation, limit = self.info.rotation, image_limit()
        try:
            for frame in self._container.decode(self._stream):
                # The header's size binds only the first frames: a stream may change size
                # mid-way, so each decoded frame is checked before it is converted.
                check_pixels(frame.width, frame.height, self.path, limit)
                t = frame.time if frame.time is not None else count / self.info.fps
                start = t if start is None else start
                yield t - start, _rotate(_to_rgb(frame), rotation)
                count += 1
        except av.FFmpegError as exc:
            raise MediaError(
                self.path, f"corrupt video data after frame {count} ({exc.strerror or exc})"
            ) from exc
        if count == 0:
            raise MediaError(self.path, "contains no video frames")
        if self._indexed and _looks_truncated(count, self._indexed):
            raise MediaError(
                self.path,
                f"truncated: its index lists {self._indexed} frames, only {count} could be read",
                hint=_CUT_HINT,
            )


def _looks_truncated(decoded: int, indexed: int) -> bool:
    """Edit lists and decoder delay can drop a frame or two; a cut-off file loses many."""
    return decoded < indexed - max(2, indexed // 50)


class VideoWriter:
    """Encode RGB frames to an H.264 (yuv420p) MP4, atomically, carrying over source audio.

    Frames go to a temporary file beside the output; `close()` renames it into place and
    leaving the `with` block on an exception removes it, so a failed or cancelled job leaves
    no partial file. Odd frame sizes are padded by one edge pixel (4:2:0 needs even sizes).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float | Fraction,
        crf: int | None = None,
        preset: str | None = None,
        audio_from: str | Path | None = None,
        sample_aspect: tuple[Fraction, tuple[int, int]] | None = None,
    ) -> None:
        """`sample_aspect` is a source's pixel aspect and frame size: frames of that size
        keep its non-square pixels (a processed frame of another size has square ones)."""
        settings = get_settings()
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".mov", ".m4v"):
            raise InvalidParams(f"{self.path}: video output must be .mp4, .mov or .m4v")
        self.rate = Fraction(fps).limit_denominator(1001) if fps else Fraction(0)
        if self.rate <= 0:
            raise InvalidParams(f"frame rate must be positive, got {fps}")
        self.crf = settings.video_crf if crf is None else crf
        self.preset = preset or settings.video_preset
        self.frames_written = 0
        self.size: tuple[int, int] | None = None
        self._sample_aspect = sample_aspect
        self._out = AtomicFile(self.path)
        self._stream: Any = None
        self._audio: _AudioCarry | None = None
        self._container = self._open_output()
        if audio_from:
            try:
                self._audio = _AudioCarry(self._container, audio_from)
            except BaseException:
                self.abort()  # an unreadable audio source leaves no .part file behind
                raise

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open_output(self) -> Any:
        """The output container on the temporary file, which is removed if FFmpeg refuses it."""
        try:
            # faststart puts the index first: the file streams over HTTP range requests.
            return av.open(
                _file_name(self._out.tmp), "w", format="mp4", options={"movflags": "+faststart"}
            )
        except (av.FFmpegError, OSError) as exc:
            self._out.discard()
            raise InputError(
                f"cannot write {self.path}: {exc}",
                hint="Choose an output in a folder you can write to, with free space.",
            ) from exc
        except BaseException:
            self._out.discard()
            raise

    def _open_stream(self, width: int, height: int) -> None:
        stream = self._container.add_stream("libx264", rate=self.rate)
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self.crf), "preset": self.preset}
        stream.codec_context.time_base = 1 / self.rate
        if self._sample_aspect is not None and self._sample_aspect[1] == (width, height):
            stream.codec_context.sample_aspect_ratio = self._sample_aspect[0]
        self._stream = stream
        self.size = (width, height)

    def write(self, frame: Frame) -> None:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise InvalidParams(
                f"expected an HxWx3 uint8 RGB frame, got {frame.shape} {frame.dtype}"
            )
        height, width = frame.shape[:2]
        if self._stream is None:
            self._open_stream(width, height)
        elif self.size != (width, height):
            raise InvalidParams(f"frame size changed from {self.size} to {(width, height)}")
        if width % 2 or height % 2:
            frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        # OpenCV's RGB -> I420 is ~6x faster than swscale here, same BT.601 limited range.
        yuv: Frame = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420)
        video_frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        video_frame.pts = self.frames_written
        video_frame.time_base = 1 / self.rate
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames_written += 1
        if self._audio is not None:
            # Audio goes in up to the video written so far (the muxer interleaves by time),
            # never beyond: what follows the last frame is dropped at close.
            self._audio.mux_until(float(self.frames_written / self.rate))

    def close(self) -> Path:
        """Finish encoding and move the file into place."""
        if self._stream is None:
            self.abort()
            raise InvalidParams(f"{self.path}: no frames were written")
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            if self._audio is not None:
                # The audio ends with the video: a shortened output (max frames, a trim)
                # must not carry the source's remaining minutes of sound.
                self._audio.finish(float(self.frames_written / self.rate))
            self._container.close()
        except BaseException:
            self.abort()
            raise
        if self._audio is not None:
            self._audio.close()
        return self._out.commit()

    def abort(self) -> None:
        """Stop without output: close everything and delete the partial file."""
        try:
            self._container.close()
        except av.FFmpegError as exc:  # closing a half-written file may fail; it is deleted anyway
            log.debug("closing aborted output %s: %s", self.path, exc)
        if self._audio is not None:
            self._audio.close()
        self._out.discard()


class _AudioCarry:
    """Copy (or, for codecs MP4 cannot hold, re-encode to AAC) a source's audio into an output."""

    def __init__(self, out: Any, source: str | Path) -> None:
        self._src = _open(source)
        self._out = out
        self._packets: Iterator[Any] | None = None
        self._pending: Any = None
        if not self._src.streams.audio:
            self._src.close()
            self._src = None
            return
        in_stream = self._src.streams.audio[0]
        video = self._src.streams.video[0] if self._src.streams.video else None
        self._offset = (
            float(video.start_time * video.time_base) if video and video.start_time else 0.0
        )
        self._remux = in_stream.codec_context.name in _MP4_AUDIO
        if self._remux:
            self._stream = out.add_stream_from_template(in_stream)
        else:
            self._stream = out.add_stream("aac", rate=in_stream.codec_context.sample_rate or 48000)
            self._resampler = av.AudioResampler(
                format="fltp", layout="stereo", rate=self._stream.rate
            )
        self._in_stream = in_stream
        self._packets = self._src.demux(in_stream)

    def mux_until(self, t: float) -> None:
        """Mux source audio up to `t` seconds of output time."""
        if self._packets is None:
            return
        while True:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None:
                self._packets = None
                return
            if packet.pts is None:  # demuxer flush packet
                continue
            when = float(packet.pts * packet.time_base) - self._offset
            if when > t:
                self._pending = packet
                return
            if self._remux:
                shift = round(self._offset / packet.time_base)
                packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
                packet.stream = self._stream
                self._out.mux(packet)
            else:
                for frame in packet.decode():
                    self._encode(frame)

    def finish(self, end: float) -> None:
        """Mux the audio that starts before `end` seconds, flush, and drop the rest."""
        if self._src is None:
            return
        self.mux_until(end)
        self._packets = self._pending = None
        if not self._remux:
            self._encode(None)

    def _encode(self, frame: Any) -> None:
        frames = self._resampler.resample(frame) if frame is not None else [None]
        for f in frames:
            for packet in self._stream.encode(f):
                self._out.mux(packet)

    def close(self) -> None:
        if self._src is not None:
            self._src.close()
            self._src = None
