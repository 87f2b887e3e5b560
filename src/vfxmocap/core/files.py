"""Atomic file output: results appear complete under their final name, or not at all."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vfxmocap.core.errors import InputError, MediaError


def regular_file(path: str | Path, kind: str) -> Path:
    """`path` when it is a regular file with bytes in it; else a `MediaError` saying what it
    is. Checked by stat alone: reading a FIFO would block, /dev/zero would never end."""
    path = Path(path)
    try:
        mode, size = (info := path.stat()).st_mode, info.st_size
    except FileNotFoundError:
        raise MediaError(path, "file not found") from None
    except OSError as exc:
        raise MediaError(path, f"cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise MediaError(path, f"is a directory, not {kind}")
    if not stat.S_ISREG(mode):
        raise MediaError(
            path,
            "not a regular file (a device or a pipe)",
            hint=f"Give {kind} file on disk; a camera is --camera N.",
        )
    if size == 0:
        raise MediaError(path, "empty file")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicFile:
    """A temporary file beside `final`, renamed into place by `commit()` or removed by `discard()`.

    The temporary name keeps the final suffix so encoders that guess the format from the
    name (FFmpeg, OpenCV) still do the right thing.
    """

    def __init__(self, final: str | Path) -> None:
        self.final = Path(final)
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                prefix=f".{self.final.stem}.",
                suffix=f".part{self.final.suffix}",
                dir=self.final.parent,
            )
        except OSError as exc:
            raise InputError(
                f"cannot write {self.final}: {exc.strerror or exc}",
                hint="Choose an output in a folder you can write to.",
            ) from exc
        # mkstemp makes 0600 files; outputs get the usual mode for new files (0666 - umask).
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        self.tmp = Path(name)

    def commit(self) -> Path:
        os.replace(self.tmp, self.final)
        return self.final

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path; rename it to `final` only if the block succeeds.

    On any exception, KeyboardInterrupt and cancellation included, the partial file is removed.
    """
    out = AtomicFile(final)
    try:
        yield out.tmp
    except BaseException:
        out.discard()
        raise
    out.commit()
