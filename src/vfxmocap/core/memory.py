"""The C heap kept warm for frame loops.

Every frame of a video allocates the same multi-megabyte arrays again (warped faces, masks,
blend pyramids: a 720p close-up's float pyramid level alone is 5 MB). glibc's defaults give
such blocks back to the kernel when they are freed (mmap for blocks over its threshold, and,
once its dynamic threshold has moved them onto the heap, a trim of the heap's top whenever it
holds more than twice that free), so each frame faults pages in anew and the kernel zeroes
them: on the 720p close-up that was a third of the blend's time (8.5 -> 4.2 ms) and
about a tenth of the whole swap's CPU. Raising both thresholds keeps freed blocks in the
heap, where the next frame reuses them; memory stays flat, at the loop's working set.

Linux with glibc only: elsewhere (macOS, musl) the call does nothing.
"""

from __future__ import annotations

import ctypes
import platform
import sys

from vfxmocap.core.log import get_logger

log = get_logger("core.memory")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest: blocks up to this come from the heap
TRIM_THRESHOLD = 256 * 1024 * 1024  # free memory the heap's top may keep before trimming

_done = False


def keep_freed_memory() -> bool:
    """Have glibc keep freed blocks for reuse instead of returning them to the kernel at
    once. Idempotent; returns whether the allocator took the settings."""
    global _done
    if _done:
        return True
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError) as exc:
        log.debug("mallopt unavailable: %s", exc)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not _done:
        log.debug("glibc refused the mallopt settings")
    return _done
