"""The job store on SQLAlchemy 2: SQLite in WAL mode by default, any SQLAlchemy URL
(PostgreSQL) for several machines.

States: queued -> running -> succeeded | failed | cancelled; a retryable failure goes back
to queued with a back-off (`not_before`). Claiming a job checks the per-device concurrency
limit and takes the job in one write transaction, so two workers can never both start the
last free slot. After a crash, `recover()` puts running jobs back in the queue (attempt + 1)
or fails them with a reason when attempts are exhausted: none lost, none stuck.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from vfxmocap.core.errors import InvalidParams
from vfxmocap.core.log import get_logger
from vfxmocap.jobs.schema import migrate, version_table
from vfxmocap.workflows import Resources, get_workflow, is_registered

log = get_logger("jobs.store")


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}

# The queue of jobs routed to the Celery fleet or to another server; local jobs wait in the
# queue of their device class (cpu, cuda, mps).
CELERY_QUEUE = "celery"
REMOTE_QUEUE = "remote"
_CANDIDATES = 64  # queued jobs a claim looks through for one whose models are ready


class StoreBusy(Exception):
    """A write that was asked not to wait found the store locked; retry off the loop."""


class _Base(DeclarativeBase):
    pass


class JobRow(_Base):
    __tablename__ = "jobs"
    # The queue's order (claims, positions) reads this index, not the whole table.
    __table_args__ = (Index("ix_jobs_queue", "state", "device", "priority", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(64), index=True)
    inputs: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), index=True)
    # The queue a job waits in: a local device class, or CELERY_QUEUE / REMOTE_QUEUE. The
    # database column keeps the name of the first release ("device").
    queue: Mapped[str] = mapped_column("device", String(32), default="cpu")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    timeout_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    not_before: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    heartbeat_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    worker: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    outputs: Mapped[str | None] = mapped_column(Text, nullable=True)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    backend: Mapped[str | None] = mapped_column(String(32), nullable=True)
    route: Mapped[str | None] = mapped_column(Text, nullable=True)  # why that backend
    # What the job's inputs need (Workflow.requirements); NULL in rows of older releases.
    needs_device: Mapped[str | None] = mapped_column(String(8), nullable=True)
    needs_memory_gb: Mapped[float | None] = mapped_column(Float, nullable=True)
    needs_models: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list
    # The backend's own id of the job's run (a remote server's job id): a restart follows
    # that run again instead of starting a second one. Kept when the job is queued again.
    handle: Mapped[str | None] = mapped_column(Text, nullable=True)


version_table(_Base.metadata)


@dataclass(frozen=True)
class Job:
    """A job as callers see it (a snapshot; the store is the truth)."""

    id: str
    workflow: str
    inputs: dict[str, Any]
    priority: int
    state: JobState
    queue: str
    attempt: int
    max_attempts: int
    timeout_s: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    worker: str | None
    cancel_requested: bool
    progress: dict[str, Any] | None
    error: dict[str, Any] | None
    outputs: dict[str, str] | None
    summary: dict[str, Any] | None
    backend: str | None
    route: str | None
    needs: Resources  # what its inputs need (the time limit is `time_limit_s`)
    handle: str | None = None  # the backend's own id of its run (a remote job id)

    @property
    def time_limit_s(self) -> float:
        """The job's own time limit, or its workflow's default (the general default when
        its workflow is not loaded in this process: the worker that runs it may have it)."""
        if self.timeout_s is not None:
            return self.timeout_s
        if not is_registered(self.workflow):
            return Resources().timeout_s
        return get_workflow(self.workflow).resources.timeout_s

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        del data["handle"]  # another server's id: nothing a client can use
        data["state"] = self.state.value
        needs = self.needs
        data["needs"] = {"device": needs.device, "memory_gb": needs.memory_gb}
        data["needs"]["models"] = list(needs.models)
        return data


def new_job_id() -> str:
    return uuid.uuid4().hex


def _load(text: str | None) -> Any:
    return json.loads(text) if text else None


def _in_scope(scope: str) -> Any:
    """Workers under a prefix ("host/pid/"), or exactly one ("celery/w1", not "celery/w10")."""
    return JobRow.worker.startswith(scope) if scope.endswith("/") else JobRow.worker == scope


def _models_ready(row: JobRow, ready: Collection[str] | None) -> bool:
    return ready is None or all(m in ready for m in _load(row.needs_models) or ())


def _job(row: JobRow) -> Job:
    return Job(
        id=row.id,
        workflow=row.workflow,
        inputs=_load(row.inputs),
        priority=row.priority,
        state=JobState(row.state),
        queue=row.queue,
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        timeout_s=row.timeout_s,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        worker=row.worker,
        cancel_requested=row.cancel_requested,
        progress=_load(row.progress),
        error=_load(row.error),
        outputs=_load(row.outputs),
        summary=_load(row.summary),
        backend=row.backend,
        route=row.route,
        needs=Resources(
            device=row.needs_device or "any",  # type: ignore[arg-type]
            memory_gb=row.needs_memory_gb or 0.0,
            models=tuple(_load(row.needs_models) or ()),
        ),
        handle=row.handle,
    )


def _sqlite_engine(url: str, *, immediate: bool, busy_ms: int = 30000) -> Engine:
    timeout = busy_ms / 1000
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": timeout})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        # No checkpoint inside a commit (its fsync held every writer, the API's included):
        # JobStore checkpoints from a thread of its own.
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock at the start: read-then-write steps (claim with a
        # concurrency limit) cannot interleave between processes.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class JobStore:
    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            # Writes take SQLite's one write lock up front; reads run beside them (WAL).
            self.engine = _sqlite_engine(url, immediate=True)
            self.read_engine = _sqlite_engine(url, immediate=False)
            # For writers that must not wait (the API's event loop): the lock or nothing.
            self.nowait_engine: Engine | None = _sqlite_engine(url, immediate=True, busy_ms=0)
        else:
            self.engine = self.read_engine = create_engine(url, pool_pre_ping=True)
            self.nowait_engine = None  # a network round trip: callers use a thread
        migrate(self.engine, _Base.metadata)
        self._write_lock = threading.Lock() if url.startswith("sqlite") else nullcontext()
        self._closed = threading.Event()
        database = self.engine.url.database
        if url.startswith("sqlite") and database and database != ":memory:":
            threading.Thread(
                target=self._checkpoint, args=(database,), name="sqlite-checkpoint", daemon=True
            ).start()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A write transaction. Writers of this process queue on a lock rather than in
        SQLite's busy handler, which sleeps in steps of up to 100 ms (a p99 of 700 ms
        under load); other processes still meet the busy handler, rarely."""
        with (
            self._write_lock,
            Session(self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def _session_nowait(self) -> Iterator[Session]:
        """A write transaction that starts at once or raises StoreBusy: for the event loop,
        which must not sit in a lock another thread or process holds."""
        lock = self._write_lock
        if isinstance(lock, nullcontext) or self.nowait_engine is None:
            raise StoreBusy("not SQLite: a network round trip")
        if not lock.acquire(blocking=False):
            raise StoreBusy("the job store is busy")
        try:
            with Session(self.nowait_engine, expire_on_commit=False) as session, session.begin():
                yield session
        except OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            raise StoreBusy("the job store is busy") from exc  # another process writes
        finally:
            lock.release()

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with Session(self.read_engine, expire_on_commit=False) as session, session.begin():
            yield session

    def _checkpoint(self, database: str) -> None:
        """Copy the WAL back into the database every second, beside the writers (PASSIVE
        never waits for them), so the WAL stays small and no commit pays for it."""
        connection = sqlite3.connect(database, timeout=1, check_same_thread=False)
        try:
            while not self._closed.wait(1.0):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.OperationalError as exc:  # busy: the next round catches up
                    log.debug("checkpoint skipped: %s", exc)
        finally:
            connection.close()

    def dispose(self) -> None:
        self._closed.set()
        self.engine.dispose()
        self.read_engine.dispose()

    # --- submit and read ----------------------------------------------------------------

    def submit(
        self,
        workflow: str,
        inputs: dict[str, Any],
        *,
        priority: int = 0,
        queue: str = "cpu",
        max_attempts: int = 3,
        timeout_s: float | None = None,
        job_id: str | None = None,
        backend: str | None = None,
        route: str | None = None,
        needs: Resources | None = None,
        wait: bool = True,
    ) -> Job:
        """Queue a job. `wait=False`: raise StoreBusy rather than wait for the write lock."""
        row = JobRow(
            id=job_id or new_job_id(),
            workflow=workflow,
            inputs=json.dumps(inputs, default=str),
            priority=priority,
            state=JobState.QUEUED.value,
            queue=queue,
            attempt=0,
            max_attempts=max_attempts,
            timeout_s=timeout_s,
            not_before=0.0,
            created_at=time.time(),
            cancel_requested=False,
            backend=backend,
            route=route,
            needs_device=needs.device if needs else None,
            needs_memory_gb=needs.memory_gb if needs else None,
            needs_models=json.dumps(list(needs.models)) if needs else None,
        )
        with self._session() if wait else self._session_nowait() as session:
            session.add(row)
        return _job(row)

    def get(self, job_id: str) -> Job | None:
        with self._reading() as session:
            row = session.get(JobRow, job_id)
            return _job(row) if row is not None else None

    def position(self, job_id: str) -> int | None:
        """Queued jobs that run before this one (same queue), or None when not queued."""
        with self._reading() as session:
            row = session.get(JobRow, job_id)
            if row is None or row.state != JobState.QUEUED:
                return None
            ahead = session.scalar(
                select(func.count())
                .select_from(JobRow)
                .where(
                    JobRow.state == JobState.QUEUED.value,
                    JobRow.queue == row.queue,
                    (JobRow.priority > row.priority)
                    | ((JobRow.priority == row.priority) & (JobRow.created_at < row.created_at)),
                )
            )
            return int(ahead or 0)

    def list(
        self,
        *,
        state: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        cursor: float | None = None,
    ) -> tuple[list[Job], float | None]:
        """Newest first; pass the returned cursor to get the next page."""
        if state is not None and state not in {s.value for s in JobState}:
            raise InvalidParams(f"unknown job state {state!r}")
        query = select(JobRow).order_by(JobRow.created_at.desc()).limit(limit + 1)
        if state:
            query = query.where(JobRow.state == state)
        if workflow:
            query = query.where(JobRow.workflow == workflow)
        if cursor is not None:
            query = query.where(JobRow.created_at < cursor)
        with self._reading() as session:
            rows = list(session.scalars(query))
        more = len(rows) > limit
        rows = rows[:limit]
        return [_job(r) for r in rows], (rows[-1].created_at if more and rows else None)

    def stats(self) -> dict[str, int]:
        with self._reading() as session:
            counts = dict(
                session.execute(select(JobRow.state, func.count()).group_by(JobRow.state)).all()
            )
        return {s.value: int(counts.get(s.value, 0)) for s in JobState}

    # --- the worker side ----------------------------------------------------------------

    def claim(
        self,
        worker: str,
        queue: str = "cpu",
        limit: int = 1,
        workflows: set[str] | None = None,
        scope: str | None = None,
        *,
        memory_gb: float | None = None,
        devices: Collection[str] | None = None,
        models: Collection[str] | None = None,
    ) -> Job | None:
        """Start the best queued job of `queue` that fits, if fewer than `limit` run there.

        `scope` (a worker-name prefix ending in "/": one machine's slots; else one worker's
        name) counts only the running jobs there, so machines sharing a database each have
        their own device limit.
        A job fits when its needs do: its device class is in `devices`, its memory within
        `memory_gb` less what the running jobs of the scope need, its models in `models`
        (each None: not checked). A smaller job may start before a bigger one that does
        not fit now. The count and the take happen in one write transaction (SQLite: BEGIN
        IMMEDIATE; PostgreSQL: an advisory lock per scope), so two claims never share the
        last slot or the last gigabytes."""
        now = time.time()
        with self._session() as session:
            if session.get_bind().dialect.name == "postgresql":
                key = zlib.crc32(f"{scope or ''}|{queue}".encode())
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            running, used_gb = self._running(session, queue, scope)
            if running >= limit:
                return None
            query = (
                select(JobRow)
                .where(
                    JobRow.state == JobState.QUEUED.value,
                    JobRow.queue == queue,
                    JobRow.not_before <= now,
                )
                .order_by(JobRow.priority.desc(), JobRow.created_at)
                .limit(_CANDIDATES)
            )
            if workflows is not None:
                query = query.where(JobRow.workflow.in_(workflows))
            if devices is not None:
                query = query.where(func.coalesce(JobRow.needs_device, "any").in_(devices))
            if memory_gb is not None:
                query = query.where(
                    func.coalesce(JobRow.needs_memory_gb, 0.0) <= memory_gb - used_gb
                )
            rows = session.scalars(query.with_for_update(skip_locked=True))
            row = next((r for r in rows if _models_ready(r, models)), None)
            if row is None:
                return None
            row.state = JobState.RUNNING.value
            row.attempt += 1
            row.worker = worker
            row.started_at = row.heartbeat_at = now
            row.backend = row.backend or "local"
            return _job(row)

    @staticmethod
    def _running(session: Session, queue: str, scope: str | None) -> tuple[int, float]:
        """How many jobs of `queue` run (in `scope`), and the memory they need."""
        counted = select(
            func.count(), func.coalesce(func.sum(func.coalesce(JobRow.needs_memory_gb, 0.0)), 0.0)
        ).where(JobRow.state == JobState.RUNNING.value, JobRow.queue == queue)
        if scope is not None:
            counted = counted.where(_in_scope(scope))
        count, memory = session.execute(counted).one()
        return int(count or 0), float(memory or 0.0)

    def mark_started(self, job_id: str) -> bool:
        """The worker reports that it started executing: the job's clock starts now."""
        now = time.time()
        return self._update(job_id, only={JobState.RUNNING}, started_at=now, heartbeat_at=now)

    def set_handle(self, job_id: str, handle: str) -> bool:
        """Record the backend's own id of a running job's run (see `JobRow.handle`)."""
        return self._update(job_id, only={JobState.RUNNING}, handle=handle)

    def reject(self, job_id: str, error: dict[str, Any]) -> bool:
        """Fail a queued job that cannot run anywhere (e.g. its workflow is not loaded)."""
        return self._update(
            job_id,
            only={JobState.QUEUED},
            state=JobState.FAILED.value,
            error=json.dumps(error),
            finished_at=time.time(),
        )

    def _update(self, job_id: str, *, only: set[JobState] | None = None, **values: Any) -> bool:
        query = update(JobRow).where(JobRow.id == job_id)
        if only is not None:
            query = query.where(JobRow.state.in_([s.value for s in only]))
        with self._session() as session:
            return bool(session.execute(query.values(**values)).rowcount)  # type: ignore[attr-defined]

    def reroute(self, job_id: str, queue: str, backend: str, route: str) -> bool:
        """Send a queued job to another backend (its first choice has no worker left)."""
        return self._update(
            job_id, only={JobState.QUEUED}, queue=queue, backend=backend, route=route
        )

    def queued_on(self, queue: str) -> builtins.list[Job]:
        with self._reading() as session:
            rows = session.scalars(
                select(JobRow).where(JobRow.state == JobState.QUEUED.value, JobRow.queue == queue)
            ).all()
            return [_job(r) for r in rows]

    def running_on_prefix(self, prefix: str) -> builtins.list[Job]:
        """Running jobs whose worker name starts with `prefix` (e.g. "celery/")."""
        with self._reading() as session:
            rows = session.scalars(
                select(JobRow).where(
                    JobRow.state == JobState.RUNNING.value, JobRow.worker.startswith(prefix)
                )
            ).all()
            return [_job(r) for r in rows]

    def heartbeat(self, job_id: str) -> bool:
        return self._update(job_id, only={JobState.RUNNING}, heartbeat_at=time.time())

    def report_progress(self, job_id: str, progress: dict[str, Any]) -> bool:
        return self._update(
            job_id, only={JobState.RUNNING}, progress=json.dumps(progress), heartbeat_at=time.time()
        )

    def succeed(
        self,
        job_id: str,
        outputs: dict[str, str],
        summary: dict[str, Any],
        progress: dict[str, Any] | None = None,
    ) -> bool:
        extra = {"progress": json.dumps(progress)} if progress is not None else {}
        return self._update(
            job_id,
            only={JobState.RUNNING},
            **extra,
            state=JobState.SUCCEEDED.value,
            outputs=json.dumps(outputs),
            summary=json.dumps(summary, default=str),
            finished_at=time.time(),
        )

    def fail(
        self, job_id: str, error: dict[str, Any], *, retryable: bool = False, backoff_s: float = 2.0
    ) -> JobState | None:
        """Fail a running job, or queue it again after a back-off when the error is retryable
        and attempts are left. Returns the new state (None if the job was not running)."""
        now = time.time()
        with self._session() as session:
            row = session.get(JobRow, job_id)
            if row is None or row.state != JobState.RUNNING.value:
                return None
            row.error = json.dumps(error)
            if row.cancel_requested:  # the user asked it to stop: that is how it ended
                row.state = JobState.CANCELLED.value
                row.finished_at = now
            elif retryable and row.attempt < row.max_attempts:
                row.state = JobState.QUEUED.value
                row.not_before = now + backoff_s * 2 ** (row.attempt - 1)
                row.worker = None
            else:
                row.state = JobState.FAILED.value
                row.finished_at = now
            return JobState(row.state)

    def cancel(self, job_id: str) -> JobState | None:
        """A queued job is cancelled at once; a running one is asked to stop (its worker
        checks between frames, and is killed after a grace period if it does not)."""
        with self._session() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                return None
            if row.state == JobState.QUEUED.value:
                row.state = JobState.CANCELLED.value
                row.finished_at = time.time()
            elif row.state == JobState.RUNNING.value:
                row.cancel_requested = True
            return JobState(row.state)

    def mark_cancelled(self, job_id: str) -> bool:
        return self._update(
            job_id,
            only={JobState.RUNNING},
            state=JobState.CANCELLED.value,
            finished_at=time.time(),
            error=json.dumps({"code": "cancelled", "message": "cancelled by the user"}),
        )

    def cancel_requested(self, job_id: str) -> bool:
        job = self.get(job_id)
        return bool(job is not None and job.cancel_requested)

    def retry(self, job_id: str) -> Job | None:
        """A finished (failed or cancelled) job, queued again with a fresh attempt count."""
        ok = self._update(
            job_id,
            only={JobState.FAILED, JobState.CANCELLED},
            state=JobState.QUEUED.value,
            attempt=0,
            not_before=0.0,
            cancel_requested=False,
            error=None,
            finished_at=None,
            worker=None,
            outputs=None,
            progress=None,
            summary=None,
            handle=None,  # a retry is a fresh run
        )
        return self.get(job_id) if ok else None

    def delete(self, job_id: str) -> bool:
        """Delete a job that is not running (cancel it first)."""
        with self._session() as session:
            row = session.get(JobRow, job_id)
            if row is None or row.state == JobState.RUNNING.value:
                return False
            session.delete(row)
            return True

    def recover(
        self, lost: Callable[[str | None, float | None], bool] | None = None
    ) -> dict[str, int]:
        """After a crash or restart: running jobs whose worker is lost go back to the queue
        (their attempt counts) or fail with a reason when attempts are exhausted.

        `lost(worker, heartbeat_at)` decides per job; by default every running job is lost
        (one machine, nothing else running)."""
        now = time.time()
        requeued = failed = 0
        with self._session() as session:
            rows = session.scalars(
                select(JobRow).where(JobRow.state == JobState.RUNNING.value)
            ).all()
            for row in rows:
                if lost is not None and not lost(row.worker, row.heartbeat_at):
                    continue
                why = {
                    "code": "worker_unavailable",
                    "message": f"the worker running this job stopped ({row.worker})",
                    "hint": "It was retried automatically; retry it again if it failed.",
                }
                row.error = json.dumps(why)
                row.worker = None
                if row.cancel_requested:
                    row.state = JobState.CANCELLED.value
                    row.finished_at = now
                elif row.attempt < row.max_attempts:
                    row.state = JobState.QUEUED.value
                    row.not_before = now
                    requeued += 1
                else:
                    row.state = JobState.FAILED.value
                    row.finished_at = now
                    failed += 1
        return {"requeued": requeued, "failed": failed}
