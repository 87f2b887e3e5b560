"""Logging setup: rich output on a terminal, a job id on every record when one is set."""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import faulthandler
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

from rich.console import Console
from rich.logging import RichHandler

job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)


class _JobIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = job_id_var.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, job_id, message (for log shippers)."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "job_id": getattr(record, "job_id", None),
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler on whatever `sys.stderr` is at each record, so it follows the
    stand-in that native_stderr_silenced puts there (and pytest's capture)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # the handler's lock is held: no other record in between
        super().emit(record)


def setup_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure the `vfxmocap` logger; later calls change the level and format.

    `fmt`: "rich" (colours, for a terminal), "plain" (one line per record, with the job
    id), "json" (one object per line), or "auto": rich on a terminal, plain otherwise (a
    server's log file or journal; rich's wrapping there is slow and hard to grep)."""
    logger = logging.getLogger("vfxmocap")
    logger.setLevel(level)
    if fmt == "auto":
        fmt = "rich" if sys.stderr.isatty() else "plain"
    for old in [h for h in logger.handlers if getattr(h, "_vfx_console", False)]:
        logger.removeHandler(old)
    handler: logging.Handler
    if fmt == "rich":
        handler = RichHandler(
            console=Console(stderr=True),  # stdout stays clean for --json
            show_path=False,
            rich_tracebacks=False,
            markup=False,
        )
        handler.setFormatter(logging.Formatter("[%(job_id)s] %(message)s"))
    else:
        handler = _StderrHandler()
        handler.setFormatter(
            JsonFormatter()
            if fmt == "json"
            else logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(job_id)s] %(message)s")
        )
    handler.addFilter(_JobIdFilter())
    setattr(handler, "_vfx_console", True)  # noqa: B010 (marks ours among handlers)
    logger.addHandler(handler)
    logger.propagate = False


_silence_lock = threading.Lock()
_silence_depth = 0
# A copy of fd 2 made when silencing starts, and Python's stderr on it. Both stay open for
# the life of the process: a thread that picked up the stream just before silencing ends
# may still write to it, and a closed (or reused) fd there would lose or misdirect lines.
_kept_fd = -1
_kept_stream: TextIO | None = None
_replaced: TextIO | None = None  # the sys.stderr that _kept_stream stands in for


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Silence C++ libraries' start-up chatter on stderr (MediaPipe's absl logs cannot be
    turned off otherwise). Not silenced when the vfxmocap logger is at DEBUG.

    File descriptor 2 is process-wide, so nested and concurrent uses (threads) share one
    redirection: the first in silences, the last out restores. Meanwhile Python's own
    writes (every thread's log records, warnings, tracebacks) go through `sys.stderr` to a
    kept copy of the real stderr: only native writes to fd 2 are dropped.
    """
    global _silence_depth
    if logging.getLogger("vfxmocap").isEnabledFor(logging.DEBUG):
        yield
        return
    with _silence_lock:
        if _silence_depth == 0:
            _silence_fd2()
        _silence_depth += 1
    try:
        yield
    finally:
        with _silence_lock:
            _silence_depth -= 1
            if _silence_depth == 0:
                _restore_fd2()


def _silence_fd2() -> None:
    """Point fd 2 at /dev/null and, if Python's stderr wrote there, at the kept copy."""
    global _kept_fd, _kept_stream, _replaced
    if sys.stderr is not None:
        sys.stderr.flush()
    if _kept_fd < 0:
        _kept_fd = os.dup(2)
        encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
        _kept_stream = open(  # noqa: SIM115 -- kept open on purpose (see above)
            _kept_fd, "w", buffering=1, encoding=encoding, errors="backslashreplace", closefd=False
        )
    else:
        os.dup2(2, _kept_fd)  # fd 2 may point elsewhere since the last time: follow it
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    if _writes_to_fd2(sys.stderr):
        _replaced, sys.stderr = sys.stderr, _kept_stream


def _restore_fd2() -> None:
    global _replaced
    if _kept_stream is not None:
        _kept_stream.flush()
    os.dup2(_kept_fd, 2)  # first: a write through sys.stderr in between must not be lost
    if _kept_stream is not None and sys.stderr is _kept_stream:
        sys.stderr = _replaced  # unless someone else has replaced it meanwhile
    _replaced = None


def _writes_to_fd2(stream: TextIO | None) -> bool:
    """True for a stream on fd 2 (not, say, pytest's capture or redirect_stderr's buffer)."""
    try:
        return stream is not None and stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # no file descriptor behind it
        return False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"vfxmocap.{name}")


# Native libraries' own log lines: glog/absl ("W0000 00:00:1796.89 5893 file.cc:114] ..."),
# absl's notice before its logging starts, libpng and TensorFlow Lite's start-up notes.
_NATIVE_NOISE = re.compile(
    r"^([IWEF]\d{4} \d+:\d+:\d+(\.\d+)?\s+\d+ \S+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog"
    r"|libpng warning:"
    r"|INFO: (Created|Initialized) TensorFlow Lite)"
)
_filtering: list[threading.Thread] = []


def filter_native_stderr() -> None:
    """For the CLI: native libraries' log lines never reach the terminal between ours.

    fd 2 (which C++ code and child processes write to) becomes a pipe read by a thread
    that drops the lines `_NATIVE_NOISE` matches and passes everything else on; Python's
    own stderr (our messages, progress bars, tracebacks) writes to the terminal directly.
    `faulthandler` keeps the real terminal too, so a crash report is never swallowed."""
    if _filtering:
        return
    sys.stderr.flush()
    terminal_fd = os.dup(2)
    terminal = os.fdopen(os.dup(terminal_fd), "w", buffering=1, encoding="utf-8", errors="replace")
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    sys.stderr = terminal
    faulthandler.enable(file=terminal)
    thread = threading.Thread(
        target=_pass_on, args=(read_fd, terminal_fd), name="vfx-stderr-filter", daemon=True
    )
    thread.start()
    _filtering.append(thread)
    atexit.register(_stop_filtering, terminal_fd)


def _pass_on(read_fd: int, terminal_fd: int) -> None:
    with os.fdopen(read_fd, "rb") as pipe:
        for line in pipe:
            if not _NATIVE_NOISE.match(line.decode("utf-8", "replace")):
                os.write(terminal_fd, line)


def _stop_filtering(terminal_fd: int) -> None:
    """At exit: fd 2 back to the terminal (the pipe's end closes), what is left passed on."""
    os.dup2(terminal_fd, 2)
    if _kept_fd >= 0:  # the silencer's copy of fd 2 holds the pipe open too: let it go
        os.dup2(terminal_fd, _kept_fd)
    for thread in _filtering:
        thread.join(timeout=1.0)
