"""Typed errors: each carries a stable code, a user message, a recovery hint and a CLI exit code.

Every layer raises these instead of bare exceptions so the CLI, the API and the job
queue can report a failure the same way and decide whether it is worth a retry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

MAX_MESSAGE = 1000


class VfxError(Exception):
    """Base of every error vfxmocap reports to a user."""

    code: ClassVar[str] = "internal"
    exit_code: ClassVar[int] = 1
    retryable: ClassVar[bool] = False
    default_hint: ClassVar[str] = "Run with --debug and report the traceback."

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        # Messages quote user input (a file name, an option): never echo it unbounded.
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


class InputError(VfxError):
    """The user's input (a file, an image, a video) cannot be used."""

    code = "input_error"
    exit_code = 3
    default_hint = "Check the input file and try again."


class MediaError(InputError):
    """A media file is missing, unreadable, empty or uses an unsupported codec."""

    def __init__(self, path: str | Path, reason: str, *, hint: str | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}", hint=hint)


class MediaTooLarge(MediaError):
    """An image or video frame has more pixels than this machine is set to decode."""


class InvalidParams(VfxError):
    """Options or parameters are out of range or inconsistent."""

    code = "invalid_params"
    exit_code = 2
    default_hint = "Check the options; `--help` lists the valid values."


class ModelMissing(VfxError):
    """A model's files are not in the model store and cannot be fetched now."""

    code = "model_not_found"
    exit_code = 4
    default_hint = "Run `vfx models list` to see what is missing and where files go."


class MissingExtra(VfxError):
    """A feature's optional dependencies (a pip extra) are not installed."""

    code = "missing_extra"
    exit_code = 4
    default_hint = "Install the extra named in the message."


class DeviceError(VfxError):
    """The requested compute device is unknown or not available."""

    code = "device_error"
    exit_code = 5
    default_hint = "Run `vfx doctor` to see which devices this machine offers."


class InsufficientMemory(DeviceError):
    """The device ran out of memory even at the lowest settings."""

    code = "insufficient_memory"
    retryable = True
    default_hint = "Lower the resolution or batch size, or use a device with more memory."


class Cancelled(VfxError):
    """The work was cancelled by the user; nothing was written."""

    code = "cancelled"
    exit_code = 130
    default_hint = "Submit the work again to redo it."


class JobTimeout(VfxError):
    """The work took longer than its time limit."""

    code = "timeout"
    exit_code = 1
    retryable = False  # the same input would take as long again
    default_hint = "Raise the job's timeout or shorten the input."


class WorkerUnavailable(VfxError):
    """No worker that can run this work is reachable."""

    code = "worker_unavailable"
    exit_code = 1
    retryable = True
    default_hint = "Start a worker (`vfx worker`) or check the broker connection."


# How each runtime says "out of memory", lower-cased: torch (CUDA, MPS, host), ONNX Runtime
# (its arena, the CUDA/cuDNN/cuBLAS providers, DirectML) and C++'s std::bad_alloc.
_OOM_TYPES = frozenset({"OutOfMemoryError", "MemoryError"})
_OOM_MESSAGES = (
    "out of memory",
    "outofmemory",
    "failed to allocate memory",
    "can't allocate memory",
    "bad allocation",
    "bad_alloc",
    "cudaerrormemoryallocation",
    "status_alloc_failed",
)


def insufficient_memory(error: BaseException, what: str) -> InsufficientMemory | None:
    """The InsufficientMemory that `error` means, or None when it is not out-of-memory.

    Matched by type name and message, so core imports neither torch nor onnxruntime."""
    if isinstance(error, VfxError):
        return error if isinstance(error, InsufficientMemory) else None
    text = " ".join(str(error).split())
    lowered = text.lower()
    at = [lowered.find(m) for m in _OOM_MESSAGES if m in lowered]
    if not at and not {cls.__name__ for cls in type(error).__mro__} & _OOM_TYPES:
        return None
    # ONNX Runtime puts the allocation failure at the end of a long line: quote around it.
    start = max(0, min(at, default=0) - 60)
    detail = ("..." if start else "") + (text[start : start + 200] or type(error).__name__)
    return InsufficientMemory(f"{what}: out of memory ({detail})")


@contextlib.contextmanager
def typed_memory_errors(what: str) -> Iterator[None]:
    """Re-raise a device or host out-of-memory error inside the block as InsufficientMemory,
    which the job queue retries (with `what` saying which work ran out)."""
    try:
        yield
    except Exception as exc:
        mapped = insufficient_memory(exc, what)
        if mapped is None or mapped is exc:
            raise
        raise mapped from exc


def as_vfx_error(exc: BaseException) -> VfxError:
    """The typed error to report for any exception: itself, or an internal error (a bug,
    never retried) naming the exception."""
    if isinstance(exc, VfxError):
        return exc
    return VfxError(f"internal error: {type(exc).__name__}: {exc}")
