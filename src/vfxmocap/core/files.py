"""Atomic file output: results appear complete under their final name, or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vfxmocap.core.errors import InputError


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
