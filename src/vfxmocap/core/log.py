"""Logging setup: rich output on a terminal, a job id on every record when one is set."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator

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
        handler = logging.StreamHandler(sys.stderr)
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
_saved_stderr = -1


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Silence C++ libraries' start-up chatter on stderr (MediaPipe's absl logs cannot be
    turned off otherwise). Not silenced when the vfxmocap logger is at DEBUG.

    File descriptor 2 is process-wide, so nested and concurrent uses (threads) share one
    redirection: the first in saves stderr, the last out restores it.
    """
    global _silence_depth, _saved_stderr
    if logging.getLogger("vfxmocap").isEnabledFor(logging.DEBUG):
        yield
        return
    with _silence_lock:
        if _silence_depth == 0:
            sys.stderr.flush()
            _saved_stderr = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        _silence_depth += 1
    try:
        yield
    finally:
        with _silence_lock:
            _silence_depth -= 1
            if _silence_depth == 0:
                os.dup2(_saved_stderr, 2)
                os.close(_saved_stderr)
                _saved_stderr = -1


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"vfxmocap.{name}")
