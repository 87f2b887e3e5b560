"""Logging while C++ start-up chatter is silenced: only native writes to fd 2 are dropped."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# A real process: fd 2 is process-wide, so only a child shows what reaches its stderr.
SCRIPT = textwrap.dedent(
    """
    import os, sys, threading
    import mediapipe as mp
    import numpy as np
    from vfxmocap.core.log import get_logger, native_stderr_silenced, setup_logging

    setup_logging("INFO", sys.argv[1])
    log = get_logger("test")
    inside, logged = threading.Event(), threading.Event()

    def other_thread():  # a second live stream's job logging while the first one starts
        inside.wait(30)
        log.info("line from another thread")
        print("print from another thread", file=sys.stderr)
        logged.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with native_stderr_silenced():
        inside.set()
        with native_stderr_silenced():  # nested, as the face analyzer's first frames are
            detector = mp.solutions.face_detection.FaceDetection(model_selection=1)
            detector.process(np.zeros((64, 64, 3), np.uint8))  # XNNPACK, absl notes
            detector.close()
        log.info("line from the silencing thread")
        logged.wait(30)
        os.write(2, b"native chatter\\n")
    thread.join(30)
    log.info("line after")
    os.write(2, b"native after\\n")
    """
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fmt", ["plain", "rich"])
def test_logs_of_every_thread_survive_while_native_stderr_is_silenced(fmt: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, fmt], capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 0, done.stderr
    err = done.stderr
    for line in (
        "line from another thread",
        "print from another thread",
        "line from the silencing thread",
        "line after",
        "native after",
    ):
        assert line in err, f"{line!r} missing from:\n{err}"
    for chatter in ("native chatter", "XNNPACK", "absl::InitializeLog"):
        assert chatter not in err, f"{chatter!r} not silenced:\n{err}"


CONCURRENT = textwrap.dedent(
    """
    import os, sys, threading
    from vfxmocap.core.log import get_logger, native_stderr_silenced, setup_logging

    setup_logging("INFO", "plain")
    log = get_logger("test")
    original = sys.stderr

    def stream(n):  # streams starting and stopping at random moments
        for i in range(200):
            with native_stderr_silenced():
                os.write(2, b"native chatter\\n")
                if i % 50 == 0:
                    log.info("stream %d frame %d", n, i)
        log.info("stream %d done", n)

    threads = [threading.Thread(target=stream, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sys.stderr is original, sys.stderr
    os.write(2, b"native after\\n")
    """
)


@pytest.mark.timeout(120)
def test_concurrent_silencing_loses_no_log_line_and_restores_stderr() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CONCURRENT], capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    for n in range(4):
        assert any(line.endswith(f"stream {n} done") for line in lines), done.stderr
        assert sum(f"stream {n} frame" in line for line in lines) == 4, done.stderr
    assert "native chatter" not in done.stderr and lines[-1] == "native after"
