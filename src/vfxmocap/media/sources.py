"""Frame sources: a video file, an image sequence, a still image, a webcam or an iterator.

Every source yields upright RGB uint8 frames one at a time and knows its frame rate and,
when it can, its length; `open_source()` picks the right one from what the user typed.
"""

from __future__ import annotations

import glob
import re
import time
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from vfxmocap.core.errors import InputError, MediaError
from vfxmocap.core.log import native_stderr_silenced
from vfxmocap.media.image import Frame, is_image_path, read_image
from vfxmocap.media.video import VideoReader, probe

_PRINTF = re.compile(r"%0?(\d*)d")
_CAMERA = re.compile(r"(?:camera|webcam|cam):(\d+)")


class FrameSource:
    """Base of all sources: iterate frames, or (seconds, frame) pairs with `timed()`."""

    name: str = ""
    fps: float = 30.0
    frame_count: int | None = None  # None: unknown or endless (a camera)
    audio_path: Path | None = None  # a file whose audio a writer can carry over
    # A video's pixel aspect with its frame size, for a writer to keep (None: square).
    sample_aspect: tuple[Fraction, tuple[int, int]] | None = None
    live: bool = False

    def timed(self) -> Iterator[tuple[float, Frame]]:
        for index, frame in enumerate(self._frames()):
            yield index / self.fps, frame

    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        for _, frame in self.timed():
            yield frame

    def close(self) -> None:
        """Release files or devices; safe to call twice."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoSource(FrameSource):
    def __init__(self, path: str | Path) -> None:
        self._reader = VideoReader(path)
        info = self._reader.info
        self.name, self.fps, self.frame_count = str(path), info.fps, info.frame_count
        self.info = info
        self.audio_path = Path(path) if info.has_audio else None
        if info.sample_aspect != 1:
            self.sample_aspect = (info.sample_aspect, (info.width, info.height))

    def timed(self) -> Iterator[tuple[float, Frame]]:
        return self._reader.timed()

    def close(self) -> None:
        self._reader.close()


class ImageSource(FrameSource):
    """A still image as a one-frame source (a portrait, a photo to swap into)."""

    def __init__(self, path: str | Path, fps: float = 30.0) -> None:
        self.name, self.fps, self.frame_count = str(path), fps, 1
        self._frame = read_image(path)

    def _frames(self) -> Iterator[Frame]:
        yield self._frame


class ImageSequenceSource(FrameSource):
    """Numbered images: a printf pattern (`shot_%06d.png`), a glob (`shot_*.png`) or a folder."""

    def __init__(self, pattern: str | Path, fps: float = 25.0) -> None:
        self.name, self.fps = str(pattern), fps
        self.files = resolve_sequence(pattern)
        self.frame_count = len(self.files)

    def _frames(self) -> Iterator[Frame]:
        size = None
        for path in self.files:
            frame = read_image(path)
            if size is not None and frame.shape != size:
                raise MediaError(
                    path,
                    f"size {frame.shape[1]}x{frame.shape[0]} differs from "
                    f"the first image's {size[1]}x{size[0]}",
                )
            size = frame.shape
            yield frame


def resolve_sequence(pattern: str | Path) -> list[Path]:
    """List a sequence's files in frame order (numeric, so frame_10 follows frame_9)."""
    text = str(pattern)
    if Path(text).is_dir():
        files = [p for p in Path(text).iterdir() if is_image_path(p)]
    elif _PRINTF.search(text):
        files = [Path(p) for p in glob.glob(_PRINTF.sub("*", glob.escape(text)))]
        regex = re.compile(
            _PRINTF.sub(lambda m: rf"\d{{{m.group(1) or 1},}}", re.escape(text)) + r"\Z"
        )
        files = [p for p in files if regex.match(str(p))]
    else:
        files = [Path(p) for p in glob.glob(text)]
    files = sorted((p for p in files if p.is_file()), key=_natural_key)
    if not files:
        raise MediaError(
            text,
            "no image files match this sequence pattern",
            hint="Use a folder, a glob like 'frames/*.png' or 'frames/%06d.png'.",
        )
    return files


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


class CameraSource(FrameSource):
    """A webcam by index, through OpenCV; endless until closed or `max_frames` is reached."""

    live = True

    def __init__(
        self,
        index: int,
        *,
        width: int | None = None,
        height: int | None = None,
        max_frames: int | None = None,
    ) -> None:
        if index < 0:  # OpenCV reads -1 as "any camera": a typo should not open a random one
            raise InputError(
                f"camera index {index} is not valid",
                hint="Camera indices start at 0 (the first camera); pick one with --camera N.",
            )
        import cv2  # imported here: only cameras need OpenCV's capture backends

        self.name = f"camera:{index}"
        with native_stderr_silenced():  # OpenCV prints its own warnings for a missing camera
            self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            raise InputError(
                f"camera {index} could not be opened",
                hint="Check that a camera is connected and not in use; list devices with "
                "`v4l2-ctl --list-devices` (Linux) or pick another --camera index.",
            )
        if width and height:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 30.0)
        self.frame_count = max_frames
        self._cv2 = cv2

    def timed(self) -> Iterator[tuple[float, Frame]]:
        start = time.monotonic()
        count = 0
        while self.frame_count is None or count < self.frame_count:
            ok, bgr = self._cap.read()
            if not ok:
                return
            rgb: Frame = self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)  # OpenCV gives BGR
            yield time.monotonic() - start, rgb
            count += 1

    def close(self) -> None:
        self._cap.release()


class IteratorSource(FrameSource):
    """Frames already in memory or produced by code (tests, the API's stream)."""

    def __init__(
        self,
        frames: Iterable[Frame],
        fps: float = 30.0,
        count: int | None = None,
        name: str = "<frames>",
    ) -> None:
        self.name, self.fps, self.frame_count = name, fps, count
        self._iterable = frames

    def _frames(self) -> Iterator[Frame]:
        yield from self._iterable


def open_source(
    spec: str | Path | int | Iterable[Frame], *, fps: float | None = None
) -> FrameSource:
    """Open whatever the user named: `camera:0` or 0, a folder or pattern, an image, a video."""
    if isinstance(spec, int):
        return CameraSource(spec)
    if not isinstance(spec, str | Path):
        return IteratorSource(spec, fps=fps or 30.0)
    text = str(spec)
    camera = _CAMERA.fullmatch(text)
    if camera or text.isdigit():
        return CameraSource(int(camera.group(1) if camera else text))
    path = Path(text)
    # A file that exists is that file, even when its name has [ * ? or %d in it.
    if path.is_dir() or (
        not path.is_file() and (_PRINTF.search(text) or any(c in text for c in "*?["))
    ):
        return ImageSequenceSource(text, fps=fps or 25.0)
    if is_image_path(text):
        return ImageSource(text, fps=fps or 30.0)
    return VideoSource(text)


def media_info(path: str | Path) -> dict[str, Any]:
    """What a media file is, from its content: an image's size, or a video's probe (which
    also decodes the first frame). Raises `MediaError` for anything else."""
    path = Path(path)
    if is_image_path(path):
        image = read_image(path, keep_alpha=True)
        return {
            "path": str(path),
            "type": "image",
            "width": image.shape[1],
            "height": image.shape[0],
        }
    return {"type": "video", **probe(path).to_dict()}
