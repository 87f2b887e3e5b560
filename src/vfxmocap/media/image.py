"""Read and write still images as RGB uint8, whatever their depth, channels or EXIF orientation."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from vfxmocap.core.config import get_settings
from vfxmocap.core.errors import InvalidParams, MediaError, MediaTooLarge
from vfxmocap.core.files import atomic_path, regular_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
WRITABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# What Pillow calls the formats we decode. Its JPEG reader also opens MPO (many phones'
# JPEGs, with a second image), reported as format "MPO"; "MPO" itself is no reader's name.
DECODABLE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")

# Pillow's fixed bomb check (a warning from 89 MP, an error from 179 MP) would override
# the configured limits; `check_pixels` replaces it, on every header read before a decode.
Image.MAX_IMAGE_PIXELS = None

Frame = NDArray[np.uint8]

# EXIF orientation tag -> the transform that makes the pixels upright (as Pillow's exif_transpose).
_ORIENT: dict[int, Callable[[Frame], Frame]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, k=1),
}


class PixelLimit(NamedTuple):
    """The most pixels a frame may have, and the setting that raises it."""

    pixels: int
    setting: str


def image_limit() -> PixelLimit:
    """For images and video frames read from files and uploads."""
    return PixelLimit(get_settings().image_max_pixels, "VFX_IMAGE_MAX_PIXELS")


def stream_limit() -> PixelLimit:
    """For live-stream frames: many arrive, each from a client, so the bound is lower."""
    return PixelLimit(get_settings().stream_max_pixels, "VFX_STREAM_MAX_PIXELS")


def check_pixels(width: int, height: int, source: str | Path, limit: PixelLimit) -> None:
    """Refuse a frame over `limit` from its declared size, before anything decodes it."""
    if width * height > limit.pixels:
        raise MediaTooLarge(
            source,
            f"{width}x{height} is more pixels than this server decodes "
            f"({width * height / 1e6:.1f} MP; at most {limit.pixels / 1e6:.1f} MP)",
            hint=f"Use a smaller image or frame size, or raise {limit.setting} on the server.",
        )


@dataclass(frozen=True)
class ImageHeader:
    """What an image declares before its pixels: format, size, EXIF orientation."""

    format: str
    width: int
    height: int
    orientation: int  # EXIF: 1 = upright


def image_header(source: Path | bytes) -> ImageHeader | None:
    """The header of an image in one of the formats we decode (Pillow reads no pixels
    here), or None when the file or bytes are not one."""
    try:
        with Image.open(
            io.BytesIO(source) if isinstance(source, bytes) else source, formats=DECODABLE_FORMATS
        ) as im:
            return ImageHeader(im.format or "", im.width, im.height, _exif_orientation(im))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def _exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation tag from the header; a broken EXIF block reads as upright."""
    try:
        # Not `im.getexif()`: for a PNG without an eXIf chunk before its pixels, Pillow's
        # override decodes the whole image to look for one after them (bombs included).
        return int(Image.Image.getexif(im).get(0x0112, 1))
    except (OSError, ValueError, SyntaxError, TypeError):
        return 1


def _undecodable(name: str | Path) -> MediaError:
    return MediaError(
        name, "not an image that can be decoded", hint="Use a PNG, JPEG or WebP file."
    )


def _checked_header(source: Path | bytes, name: str | Path, limit: PixelLimit) -> ImageHeader:
    header = image_header(source)
    if header is None:
        raise _undecodable(name)
    check_pixels(header.width, header.height, name, limit)
    return header


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path, *, keep_alpha: bool = False) -> Frame:
    """Read an image file as RGB (or RGBA with `keep_alpha`) uint8, upright per EXIF."""
    path = regular_file(path, "an image")
    _checked_header(path, path, image_limit())  # before reading: a bomb's file may be big too
    return decode_image(path.read_bytes(), source=str(path), keep_alpha=keep_alpha)


def decode_image(
    data: bytes,
    *,
    source: str = "<bytes>",
    keep_alpha: bool = False,
    limit: PixelLimit | None = None,
) -> Frame:
    """Decode encoded image bytes (an upload, a WebSocket frame) like `read_image`; an
    image over `limit` (default: the image limit) is refused from its header."""
    if not data:
        raise MediaError(source, "empty file")
    header = _checked_header(data, source, limit or image_limit())
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise _undecodable(source)
    rgb = _to_rgb(_to_uint8(raw), keep_alpha=keep_alpha)
    transform = _ORIENT.get(header.orientation)
    if transform is not None:
        rgb = transform(rgb)
    return np.ascontiguousarray(rgb)


def _to_uint8(img: NDArray[np.generic]) -> Frame:
    if img.dtype == np.uint8:
        return img.astype(np.uint8, copy=False)
    if img.dtype == np.uint16:
        return ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        unit = np.clip(img.astype(np.float32), 0.0, 1.0)
        return (unit * 255.0 + 0.5).astype(np.uint8)
    raise MediaError("<image>", f"unsupported pixel type {img.dtype}")


def _to_rgb(img: Frame, *, keep_alpha: bool) -> Frame:
    """OpenCV decodes to gray, BGR or BGRA; return RGB, or RGBA when asked to keep alpha."""
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels == 1:
        rgb = np.repeat(img, 3, axis=2)
        return _add_opaque_alpha(rgb) if keep_alpha else rgb
    if channels == 3:
        rgb = img[:, :, ::-1]
        return _add_opaque_alpha(rgb) if keep_alpha else rgb
    rgba = img[:, :, [2, 1, 0, 3]]
    if keep_alpha:
        return rgba
    # Drop alpha by compositing over black, so fully transparent pixels carry no stray colour.
    alpha = rgba[:, :, 3:4].astype(np.uint16)
    return ((rgba[:, :, :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)


def _add_opaque_alpha(rgb: Frame) -> Frame:
    alpha = np.full((*rgb.shape[:2], 1), 255, np.uint8)
    return np.concatenate([rgb, alpha], axis=2)


def encode_image(rgb: Frame, suffix: str = ".png", *, quality: int = 95) -> bytes:
    """Encode an RGB or RGBA uint8 array as PNG, JPEG or WebP bytes."""
    suffix = suffix.lower()
    if suffix not in WRITABLE_SUFFIXES:
        raise InvalidParams(
            f"cannot write {suffix or 'files without a suffix'}; use one of "
            f"{', '.join(WRITABLE_SUFFIXES)}"
        )
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise InvalidParams(f"expected an HxWx3 or HxWx4 uint8 image, got {rgb.shape} {rgb.dtype}")
    if rgb.shape[2] == 4 and suffix in (".jpg", ".jpeg"):
        rgb = rgb[:, :, :3]
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA if rgb.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    params: list[int] = []
    if suffix in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif suffix == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, quality]
    ok, buf = cv2.imencode(suffix, bgr, params)
    if not ok:
        raise InvalidParams(f"OpenCV could not encode a {suffix} image")
    return bytes(buf)


def write_image(path: str | Path, rgb: Frame, *, quality: int = 95) -> Path:
    """Write atomically: the file appears complete or not at all."""
    path = Path(path)
    data = encode_image(rgb, path.suffix, quality=quality)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def thumbnail_jpeg(rgb: Frame, max_side: int = 320, quality: int = 70) -> bytes:
    """A small JPEG of a frame: the live preview of a running job."""
    scale = min(1.0, max_side / max(rgb.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return encode_image(rgb, ".jpg", quality=quality)


def shrunk(rgb: Frame, max_width: int) -> Frame:
    """`rgb` at most `max_width` wide (aspect kept; never enlarged), by area averaging: halved
    while it is twice as wide (OpenCV's fast 2x path), then resized to the width."""
    h, w = rgb.shape[:2]
    if w <= max_width:
        return rgb
    while w >= 2 * max_width:
        w, h = w // 2, max(1, h // 2)
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    if w > max_width:
        size = (max_width, max(1, round(h * max_width / w)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb
