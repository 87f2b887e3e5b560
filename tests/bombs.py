"""Decompression bombs for the tests and bench/api.py: tiny files that declare huge images."""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@lru_cache(maxsize=4)
def bomb_png(width: int, height: int) -> bytes:
    """A valid all-black 8-bit grayscale PNG: 13000x13000 is ~160 KB that decodes to 169 MB
    (507 MB as RGB). Built row by row, so making it never holds the decoded image."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray, no interlace
    deflate = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then black pixels
    data = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) since the last `reset_peak_rss()`."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> None:
    """Start a new peak from the current RSS (Linux: 5 > /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")
