"""Still images come out as upright RGB uint8 whatever their depth, channels or EXIF tag."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.bombs import bomb_png, peak_rss_mb, reset_peak_rss
from vfxmocap.core.config import reload_settings
from vfxmocap.core.errors import InputError, InvalidParams, MediaError, MediaTooLarge
from vfxmocap.media.image import (
    ImageHeader,
    decode_image,
    encode_image,
    image_header,
    read_image,
    shrunk,
    stream_limit,
    write_image,
)


def test_reads_astronaut_as_rgb(astronaut: Path) -> None:
    img = read_image(astronaut)
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
    assert img.flags["C_CONTIGUOUS"]
    # RGB, not OpenCV's BGR: Pillow, an independent decoder, is the reference.
    reference = np.asarray(Image.open(astronaut).convert("RGB"))
    assert np.array_equal(img, reference)


def test_grayscale_becomes_three_channels(tmp_path: Path) -> None:
    from vfxmocap.samples import sample_path

    img = read_image(sample_path("camera"))
    assert img.shape == (512, 512, 3)
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])


def test_16_bit_png_is_scaled_to_8_bit(astronaut: Path, tmp_path: Path) -> None:
    rgb = read_image(astronaut)
    deep = rgb.astype(np.uint16) * 257  # exact 8 -> 16 bit expansion
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), deep[:, :, ::-1])
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert np.array_equal(read_image(path), rgb)


def test_rgba_keeps_or_composites_alpha(astronaut: Path, tmp_path: Path) -> None:
    rgb = read_image(astronaut)
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[:, 256:] = 255  # right half opaque, left half transparent
    path = write_image(tmp_path / "half.png", np.dstack([rgb, alpha]))
    rgba = read_image(path, keep_alpha=True)
    assert rgba.shape == (512, 512, 4) and np.array_equal(rgba[..., 3], alpha)
    flat = read_image(path)
    assert flat.shape == (512, 512, 3)
    assert np.array_equal(flat[:, 256:], rgb[:, 256:])
    assert not flat[:, :256].any()  # transparent pixels composite to black


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_matches_pillow(astronaut: Path, tmp_path: Path, orientation: int) -> None:
    rgb = read_image(astronaut)[:, :384]  # non-square, so rotations change the shape
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95, exif=exif)
    path = tmp_path / f"orient{orientation}.jpg"
    path.write_bytes(buf.getvalue())

    ours = read_image(path)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert ours.shape == expected.shape
    assert np.abs(ours.astype(int) - expected.astype(int)).mean() < 2.0


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_write_then_read_round_trips(astronaut: Path, tmp_path: Path, suffix: str) -> None:
    rgb = read_image(astronaut)
    path = write_image(tmp_path / f"copy{suffix}", rgb)
    back = read_image(path)
    error = np.abs(back.astype(int) - rgb.astype(int)).mean()
    assert error == 0 if suffix == ".png" else error < 4
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_decode_image_from_bytes(astronaut: Path) -> None:
    data = encode_image(read_image(astronaut), ".webp", quality=90)
    assert decode_image(data).shape == (512, 512, 3)


def test_missing_file_is_a_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="file not found") as info:
        read_image(tmp_path / "nope.png")
    assert info.value.exit_code == 3 and "nope.png" in str(info.value)


def test_not_an_image_is_a_media_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is text, not a PNG")
    with pytest.raises(MediaError, match="not an image"):
        read_image(path)


def test_empty_file_is_a_media_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(MediaError, match="empty"):
        read_image(path)


def test_unsupported_output_suffix(astronaut: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidParams, match=r"\.gif"):
        write_image(tmp_path / "out.gif", read_image(astronaut))
    assert not list(tmp_path.iterdir())


def test_outputs_get_the_usual_file_mode(tmp_path: Path, astronaut: Path) -> None:
    """Atomic outputs start as private temporary files; the result has 0666 & ~umask."""
    import os

    old = os.umask(0o022)
    try:
        out = write_image(tmp_path / "a.png", read_image(astronaut))
    finally:
        os.umask(old)
    assert (out.stat().st_mode & 0o777) == 0o644


def test_an_unwritable_output_is_an_input_error(tmp_path: Path, astronaut: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="cannot write"):
        write_image(blocker / "out.png", read_image(astronaut))


# --- decompression bombs: the size is checked from the header, before any decoding ---------


def test_a_bomb_file_is_refused_from_its_header(tmp_path: Path) -> None:
    """256 MP of black in 250 KB: refused as an InputError, never decoded (or Pillow's
    unhandled DecompressionBombError)."""
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(16000, 16000))
    reset_peak_rss()
    before = peak_rss_mb()
    with pytest.raises(InputError, match="16000x16000") as info:
        read_image(path)
    assert isinstance(info.value, MediaTooLarge) and "VFX_IMAGE_MAX_PIXELS" in info.value.hint
    assert peak_rss_mb() - before < 50  # decoding it would take 256 MB (768 MB as RGB)


def test_stream_frames_have_the_lower_limit() -> None:
    """10000x10000 is within the file limit (134 MP) but far over a stream frame's (4K)."""
    assert decode_image(bomb_png(10000, 10000)).shape == (10000, 10000, 3)
    with pytest.raises(MediaTooLarge, match="10000x10000") as info:
        decode_image(bomb_png(10000, 10000), source="stream frame", limit=stream_limit())
    assert "VFX_STREAM_MAX_PIXELS" in info.value.hint
    assert decode_image(bomb_png(3840, 2160), limit=stream_limit()).shape == (2160, 3840, 3)


def test_the_configured_limit_is_the_one_that_counts(
    astronaut: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not Pillow's fixed 179 MP: the header of a 400 MP image reads; a lower setting refuses
    what it would decode."""
    header = image_header(bomb_png(20000, 20000))
    assert header is not None and (header.width, header.height) == (20000, 20000)
    monkeypatch.setenv("VFX_IMAGE_MAX_PIXELS", str(500 * 500))
    reload_settings()
    with pytest.raises(MediaTooLarge, match="512x512"):
        read_image(astronaut)
    with pytest.raises(MediaTooLarge):
        decode_image(astronaut.read_bytes())


def test_the_header_of_what_we_decode_and_of_nothing_else() -> None:
    """Phones' MPO JPEGs read as images; text (or a GIF) is not one, and no error escapes."""
    first, second = Image.new("RGB", (64, 48)), Image.new("RGB", (64, 48), "red")
    buf = io.BytesIO()
    first.save(buf, format="MPO", save_all=True, append_images=[second])
    assert image_header(buf.getvalue()) == ImageHeader("MPO", 64, 48, 1)
    gif = io.BytesIO()
    first.save(gif, format="GIF")
    assert image_header(b"this is text, not an image") is None
    assert image_header(gif.getvalue()) is None


def test_shrunk_keeps_the_aspect_and_matches_one_area_resize(astronaut: Path) -> None:
    wide = cv2.resize(read_image(astronaut), (1280, 720), interpolation=cv2.INTER_LINEAR)
    small = shrunk(wide, 320)
    assert small.shape == (180, 320, 3)
    direct = cv2.resize(wide, (320, 180), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - direct.astype(int)).max() <= 1  # halvings: same averages
    odd = shrunk(wide[:, :1000], 300)  # 1000 -> 500 (halved) -> 300
    assert odd.shape == (216, 300, 3)
    assert shrunk(wide, 2000) is wide  # never enlarged
