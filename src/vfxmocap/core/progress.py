"""Progress events and cooperative cancellation, shared by workflows, the CLI and the job queue."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from vfxmocap.core.errors import Cancelled
from vfxmocap.core.log import get_logger

log = get_logger("progress")


@dataclass(frozen=True)
class ProgressEvent:
    """One progress update: the single event type every surface renders."""

    stage: str
    value: int
    max: int | None
    percent: float | None
    eta_s: float | None
    message: str = ""
    job_id: str | None = None
    preview: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data; a preview image travels base64-encoded."""
        data = asdict(self)
        preview = data.pop("preview")
        if preview is not None:
            data["preview"] = base64.b64encode(preview).decode()
        return data


ProgressCallback = Callable[[ProgressEvent], None]


class Progress:
    """Counts work in named stages and emits throttled `ProgressEvent`s with an ETA.

    `min_interval_s` keeps a 1000 fps loop from flooding a socket; the first and the last
    update of a stage are always emitted. A listener's errors never reach the work: the
    first is logged, the rest dropped, and the listener keeps being called (a Redis blip
    ends; progress resumes). Cancelling is the CancelToken's job, not a listener's.
    """

    def __init__(
        self,
        callback: ProgressCallback | None = None,
        *,
        job_id: str | None = None,
        min_interval_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        preview_interval_s: float | None = None,
    ) -> None:
        self._callback = callback
        self._job_id = job_id
        self._min_interval = min_interval_s
        self._clock = clock
        # Previews (a small JPEG of the current result) only when asked: the job runner
        # shows them live; a terminal progress bar has no use for them.
        self._preview_interval = preview_interval_s
        self._last_preview = float("-inf")
        self.stage_name = ""
        self.value = 0
        self.total: int | None = None
        self._started = clock()
        self._last_emit = float("-inf")
        self._listener_failed = False

    def stage(self, name: str, total: int | None = None, message: str = "") -> None:
        """Start a new stage; `total` is None when the length is unknown (a live camera)."""
        self.stage_name, self.total, self.value = name, total, 0
        self._started = self._clock()
        self._emit(message, force=True)

    def advance(self, n: int = 1, message: str = "") -> None:
        self.value += n
        done = self.total is not None and self.value >= self.total
        self._emit(message, force=done)

    def wants_preview(self) -> bool:
        """True when a preview is due (the first frame, then every preview interval)."""
        return (
            self._callback is not None
            and self._preview_interval is not None
            and self._clock() - self._last_preview >= self._preview_interval
        )

    def preview(self, jpeg: bytes) -> None:
        """Send an encoded preview image with the current progress."""
        self._last_preview = self._clock()
        self._emit("", force=True, preview=jpeg)

    def _emit(self, message: str, *, force: bool, preview: bytes | None = None) -> None:
        if self._callback is None:
            return
        now = self._clock()
        if not force and now - self._last_emit < self._min_interval:
            return
        self._last_emit = now
        percent = eta = None
        if self.total:
            percent = min(100.0, 100.0 * self.value / self.total)
            elapsed = now - self._started
            if self.value > 0:
                eta = max(0.0, elapsed / self.value * (self.total - self.value))
        self._notify(
            ProgressEvent(
                stage=self.stage_name,
                value=self.value,
                max=self.total,
                percent=percent,
                eta_s=eta,
                message=message,
                job_id=self._job_id,
                preview=preview,
            )
        )

    def _notify(self, event: ProgressEvent) -> None:
        """Hand `event` to the listener; its errors are logged once and dropped."""
        assert self._callback is not None
        try:
            self._callback(event)
        except Exception as exc:  # any listener bug or outage: the work goes on
            if not self._listener_failed:
                log.warning(
                    "progress listener %s failed (%s: %s); its further errors are dropped",
                    getattr(self._callback, "__qualname__", repr(self._callback)),
                    type(exc).__name__,
                    exc,
                    exc_info=True,
                )
            self._listener_failed = True


class CancelToken:
    """A flag checked between frames or denoising steps; `check()` raises `Cancelled`.

    `event` may be any object with set() / is_set(): a multiprocessing Event lets a job
    runner cancel the work of a worker process.
    """

    def __init__(self, event: Any = None) -> None:
        self._event = event if event is not None else threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")
