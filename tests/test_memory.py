"""The C heap kept warm for frame loops (core.memory)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

# A frame loop's pattern: four 8 MB arrays live at once (a frame's warped face, masks and
# pyramid), written and freed, 30 times. glibc's dynamic mmap threshold soon puts such blocks
# on the heap, but freeing them all leaves a top larger than its trim threshold, which it
# gives back to the kernel, so the next frame faults those pages in again. The faults are
# counted in a fresh interpreter, before and after keep_freed_memory().
_LOOP = """
import json, resource, sys
import numpy as np
from vfxmocap.core.memory import keep_freed_memory

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(30):
        frame = [np.ones((1024, 1024, 2), np.float32) for _ in range(4)]  # every page written
        del frame
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults()
default = faults()
took = keep_freed_memory()
kept = faults()
print(json.dumps({"default": default, "kept": kept, "took": took}))
"""


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only"
)
def test_freed_frames_are_reused_not_faulted_in_again() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _LOOP], capture_output=True, text=True, check=True
    ).stdout
    counts = json.loads(out)
    assert counts["took"] is True
    pages = 8 * 1024 * 1024 // 4096
    # glibc's default trims an array's worth off the heap's top each frame (measured: 60,840
    # faults in 30 frames, 2,028 per frame)
    assert counts["default"] > 20 * pages
    # kept: the heap reuses the freed blocks, all 30 frames fault at most one array's worth
    assert counts["kept"] < 2 * pages


def test_keep_freed_memory_is_idempotent() -> None:
    from vfxmocap.core.memory import keep_freed_memory

    assert keep_freed_memory() == keep_freed_memory()
