"""One supervision policy for every backend (local workers, Celery, another server).

- The time limit runs from the start of execution: when the worker reports that it
  started, not when the job was dispatched (spawning a process, a Celery queue and uploads
  are not the job's time). Until that report the dispatch time stands in, so an attempt
  whose worker never starts still ends.
- Cancel is cooperative first (a token the job checks between frames); a job still
  running `grace_s` later is killed and ends cancelled.
- An attempt's end maps to the job's state in one place (`Outcome`, `record`): success,
  cancel, a typed error (retried when retryable), an internal error (never retried).
- Store (and network) errors while watching are transient: retried with back-off and
  logged; a running job is never restarted for them, and a failed poll never re-submits.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from vfxmocap.core.errors import Cancelled, JobTimeout, WorkerUnavailable, as_vfx_error
from vfxmocap.core.log import get_logger
from vfxmocap.jobs.events import EventBus, announce_failure, job_event
from vfxmocap.jobs.store import JobState, JobStore

log = get_logger("jobs.supervisor")

T = TypeVar("T")
# What a store or a network blip raises: worth another try, never worth a job.
TRANSIENT: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    sqlite3.Error,
    OSError,
    WorkerUnavailable,
)


@dataclass
class Watch:
    """One attempt's clock: its time limit and its cancel grace."""

    limit_s: float
    grace_s: float
    dispatched: float = field(default_factory=time.monotonic)
    started: float | None = None
    cancel_at: float | None = None

    def start(self) -> bool:
        """The worker reports it started executing; True the first time."""
        if self.started is not None:
            return False
        self.started = time.monotonic()
        return True

    def cancel(self) -> bool:
        """The user asked to cancel; True the first time (send the cooperative cancel)."""
        if self.cancel_at is not None:
            return False
        self.cancel_at = time.monotonic()
        return True

    def verdict(self) -> Outcome | None:
        """The outcome to kill the attempt with now, or None to let it run."""
        now = time.monotonic()
        if self.cancel_at is not None and now - self.cancel_at > self.grace_s:
            log.warning("a job ignored cancel for %.0f s: killing it", now - self.cancel_at)
            return CANCELLED
        if now - (self.started or self.dispatched) > self.limit_s:
            return failure(JobTimeout(f"the job ran longer than its limit of {self.limit_s:.0f} s"))
        return None


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, in the terms the store records."""

    state: Literal["succeeded", "failed", "cancelled"]
    outputs: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    retryable: bool = False
    progress: dict[str, Any] | None = None  # the last progress, stored with a success


CANCELLED = Outcome("cancelled", error=Cancelled("cancelled by the user").to_dict())


def succeeded(
    outputs: dict[str, str], summary: dict[str, Any], progress: dict[str, Any] | None = None
) -> Outcome:
    return Outcome("succeeded", outputs=outputs, summary=summary, progress=progress)


def errored(error: dict[str, Any], retryable: bool) -> Outcome:
    """A worker's reported error: its cancel is a cancel, anything else a failure."""
    if error.get("code") == Cancelled.code:
        return CANCELLED
    return Outcome("failed", error=error, retryable=retryable)


def failure(exc: BaseException) -> Outcome:
    """A typed error as it is; anything else a bug (internal, never retried)."""
    error = as_vfx_error(exc)
    return errored(error.to_dict(), error.retryable)


def lost(why: str) -> Outcome:
    """The worker went away mid-job: queued again (attempts permitting)."""
    return failure(WorkerUnavailable(why, hint="The job was queued again automatically."))


def record(store: JobStore, bus: EventBus, job_id: str, outcome: Outcome) -> JobState | None:
    """Write an attempt's end (retrying store errors) and announce it. Returns the job's
    new state, None if it was no longer running (another path ended it)."""
    if outcome.state == "succeeded":
        done = persist(
            lambda: store.succeed(job_id, outcome.outputs, outcome.summary, outcome.progress),
            f"job {job_id}: recording its success",
        )
        if done:
            bus.publish(job_event("succeeded", job_id))
        return JobState.SUCCEEDED if done else None
    if outcome.state == "cancelled":
        if persist(lambda: store.mark_cancelled(job_id), f"job {job_id}: recording its cancel"):
            bus.publish(job_event("cancelled", job_id))
            return JobState.CANCELLED
        return None
    error = outcome.error or {}
    state = persist(
        lambda: store.fail(job_id, error, retryable=outcome.retryable),
        f"job {job_id}: recording its failure",
    )
    announce_failure(bus, job_id, state, error)
    return state


def hand_back(
    store: JobStore, bus: EventBus, job_id: str, worker: str, why: str
) -> JobState | None:
    """Stop running a job here (the server stops): recovery decides what it becomes (queued
    again; failed with its attempts used up; cancelled when a cancel was pending), and that
    is what is announced. Returns its new state (None: it had already ended)."""
    persist(lambda: store.recover(lambda w, _beat: w == worker), f"job {job_id}: handing it back")
    job = persist(lambda: store.get(job_id), f"job {job_id}: reading it")
    if job is None or job.state == JobState.RUNNING:
        return None
    if job.state == JobState.QUEUED:
        bus.publish(job_event("queued", job_id, message=f"{why}; queued again"))
    else:
        message = (job.error or {}).get("message", "") if job.state == JobState.FAILED else why
        bus.publish(job_event(job.state.value, job_id, message=message))
    return job.state


def persist(
    call: Callable[[], T],
    what: str,
    *,
    give_up_s: float = 300.0,
    stop: threading.Event | None = None,
) -> T:
    """Call through transient errors, backing off from 0.5 s to 10 s and logging each;
    the last error is raised after `give_up_s` (or once `stop` is set)."""
    deadline = time.monotonic() + give_up_s
    delay = 0.5
    while True:
        try:
            return call()
        except TRANSIENT as exc:
            if time.monotonic() + delay > deadline or (stop is not None and stop.is_set()):
                raise
            log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
            (stop or threading.Event()).wait(delay)
            delay = min(delay * 2, 10.0)


class Beat:
    """A periodic best-effort call (heartbeat, cancel check): every `every_s`, backing off
    to `max_s` while it fails, so a store outage is logged, not fatal."""

    def __init__(self, every_s: float, max_s: float = 30.0) -> None:
        self.every_s, self.max_s = every_s, max_s
        self.delay = every_s
        self.next = time.monotonic() + every_s

    def due(self) -> bool:
        return time.monotonic() >= self.next

    def run(self, call: Callable[[], T], what: str) -> T | None:
        """Run `call` now; None (logged) when it fails transiently."""
        try:
            result = call()
        except TRANSIENT as exc:
            self.delay = min(self.delay * 2, self.max_s)
            log.warning("%s failed (%s); next try in %.0f s", what, exc, self.delay)
            return None
        else:
            self.delay = self.every_s
            return result
        finally:
            self.next = time.monotonic() + self.delay
