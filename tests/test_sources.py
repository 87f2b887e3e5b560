"""Frame sources: video files, image sequences (printf and glob), stills, iterators, cameras."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from vfxmocap.core.errors import InputError, MediaError
from vfxmocap.media.image import read_image, write_image
from vfxmocap.media.sources import (
    CameraSource,
    ImageSequenceSource,
    ImageSource,
    IteratorSource,
    VideoSource,
    media_info,
    open_source,
    resolve_sequence,
)


@pytest.fixture
def sequence_dir(tmp_path: Path, carphone_frames) -> Path:
    """Twelve real frames as frame_%06d.png, plus a distractor that must not match."""
    folder = tmp_path / "seq"
    for i, frame in enumerate(carphone_frames[:12]):
        write_image(folder / f"frame_{i:06d}.png", frame)
    write_image(folder / "thumbnail.png", carphone_frames[0][:10, :10])
    return folder


def test_open_source_picks_video(carphone: Path) -> None:
    with open_source(carphone) as source:
        assert isinstance(source, VideoSource)
        assert source.frame_count == 120 and round(source.fps, 2) == 29.97
        assert sum(1 for _ in source) == 120


def test_printf_pattern(sequence_dir: Path, carphone_frames) -> None:
    with open_source(str(sequence_dir / "frame_%06d.png"), fps=24) as source:
        assert isinstance(source, ImageSequenceSource)
        assert source.frame_count == 12 and source.fps == 24
        frames = list(source)
    assert all(np.array_equal(a, b) for a, b in zip(frames, carphone_frames[:12], strict=True))


def test_glob_pattern_sorts_numerically(tmp_path: Path, carphone_frames) -> None:
    for i in (1, 2, 10, 9):  # 10 must come after 9, not after 1
        write_image(tmp_path / f"shot_{i}.png", carphone_frames[i])
    files = resolve_sequence(str(tmp_path / "shot_*.png"))
    assert [p.name for p in files] == ["shot_1.png", "shot_2.png", "shot_9.png", "shot_10.png"]


def test_an_existing_file_with_pattern_characters_is_that_file(
    tmp_path: Path, astronaut: Path
) -> None:
    for name in ("take[1].png", "100%done.png", "what?.png"):
        named = tmp_path / name
        named.write_bytes(astronaut.read_bytes())
        with open_source(str(named)) as source:
            assert isinstance(source, ImageSource) and source.frame_count == 1


def test_folder_is_a_sequence(sequence_dir: Path) -> None:
    with open_source(sequence_dir) as source:
        assert source.frame_count == 13  # the folder form takes every image in it


def test_printf_pattern_ignores_non_matching_files(sequence_dir: Path) -> None:
    assert len(resolve_sequence(sequence_dir / "frame_%06d.png")) == 12


def test_sequence_timestamps_follow_fps(sequence_dir: Path) -> None:
    with ImageSequenceSource(sequence_dir / "frame_%06d.png", fps=10) as source:
        times = [t for t, _ in source.timed()]
    assert times[:3] == [0.0, 0.1, 0.2]


def test_sequence_with_no_match(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="no image files match"):
        open_source(str(tmp_path / "nothing_%04d.png"))


def test_sequence_with_mixed_sizes(tmp_path: Path, carphone_frames) -> None:
    write_image(tmp_path / "a_1.png", carphone_frames[0])
    write_image(tmp_path / "a_2.png", carphone_frames[1][:50])
    with pytest.raises(MediaError, match="differs"):
        list(open_source(str(tmp_path / "a_*.png")))


def test_still_image_is_one_frame(astronaut: Path) -> None:
    with open_source(astronaut) as source:
        assert isinstance(source, ImageSource) and source.frame_count == 1
        frames = list(source)
    assert len(frames) == 1 and np.array_equal(frames[0], read_image(astronaut))


def test_iterator_source(carphone_frames) -> None:
    source = open_source(iter(carphone_frames[:5]), fps=15)
    assert isinstance(source, IteratorSource)
    assert [t for t, _ in source.timed()] == pytest.approx([0, 1 / 15, 2 / 15, 3 / 15, 4 / 15])


def test_missing_camera_is_an_input_error() -> None:
    with pytest.raises(InputError, match="camera 97 could not be opened"):
        CameraSource(97)
    with pytest.raises(InputError, match="camera 98"):
        open_source("camera:98")


def test_negative_camera_index_is_refused_before_opencv_opens_any_camera() -> None:
    with pytest.raises(InputError, match="camera index -1 is not valid") as err:
        CameraSource(-1)
    assert "start at 0" in (err.value.hint or "")


def test_video_source_carries_audio_path(video_with_audio: Path, carphone: Path) -> None:
    assert open_source(video_with_audio).audio_path == video_with_audio
    assert open_source(carphone).audio_path is None


@pytest.mark.timeout(30)  # reading a FIFO with no writer would block forever
@pytest.mark.parametrize("name", ["/dev/zero", "pipe.mp4", "pipe.png"])
def test_devices_and_pipes_are_not_media_files(tmp_path: Path, name: str) -> None:
    path = Path(name) if name.startswith("/") else tmp_path / name
    if not path.exists():
        os.mkfifo(path)
    for opener in (media_info, open_source):
        with pytest.raises(MediaError, match="not a regular file \\(a device or a pipe\\)") as info:
            opener(str(path))
        assert "on disk" in info.value.hint
