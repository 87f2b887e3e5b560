"""Scale-out, the server side: hands queued jobs to Celery workers that can run them.

The job store stays the truth. A job routed to Celery is claimed from the store for one
idle worker whose advertised capabilities fit it, and sent to that worker's own queue.
Progress comes back on a Redis channel and ends on a Redis list; cancel goes out as a Redis
key, then as a kill order after the grace period (the policy of jobs/supervisor.py, whose
clock starts when the worker reports that it started). A worker whose
advertisement expires is lost: its job is queued again (attempt + 1) or failed with a
reason, and a late message from the old attempt is ignored.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

from vfxmocap.core.errors import WorkerUnavailable
from vfxmocap.core.log import get_logger
from vfxmocap.jobs.celery_app import (
    PREFIX,
    attempt_key,
    cancel_key,
    events_channel,
    finals_list,
    kill_key,
    make_app,
    queue_of,
    redis_client,
)
from vfxmocap.jobs.events import EventBus, job_event, progress_event, stored_progress
from vfxmocap.jobs.store import CELERY_QUEUE, Job, JobState, JobStore
from vfxmocap.jobs.supervisor import Outcome, Watch, errored, lost, persist, record, succeeded
from vfxmocap.workflows import Resources, device_classes

log = get_logger("jobs.celery_backend")


@dataclass
class _Assignment:
    job: Job
    worker: str
    boot: str
    task_id: str
    watch: Watch


class CeleryBackend:
    def __init__(
        self,
        store: JobStore,
        broker_url: str,
        *,
        bus: EventBus,
        cancel_grace_s: float = 5.0,
    ) -> None:
        self.store = store
        self.bus = bus
        self.cancel_grace_s = cancel_grace_s
        self.redis = redis_client(broker_url)
        self.app = make_app(broker_url)
        # Servers of one job store share their messages (any of them may record a result);
        # other stores on the same Redis do not see them.
        self.namespace = hashlib.sha1(store.url.encode()).hexdigest()[:12]
        self.assigned: dict[str, _Assignment] = {}  # by worker name
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- the fleet ------------------------------------------------------------------------

    def workers(self) -> list[dict[str, Any]]:
        """Live workers, from their advertisements (expired ones are gone)."""
        found = []
        for key in self.redis.scan_iter(f"{PREFIX}worker:*"):
            raw = self.redis.get(key)
            if raw:
                found.append(json.loads(raw))
        return found

    def fleet(self) -> list[dict[str, Any]]:
        """`workers()` for the API: an unreachable broker is a 503, not a crash."""
        try:
            return self.workers()
        except redis.RedisError as exc:
            raise WorkerUnavailable(
                f"the Celery broker cannot be reached: {exc}",
                hint="Check that Redis is running and VFX_BROKER_URL points at it.",
            ) from exc

    def live_count(self) -> int:
        try:
            return len(self.workers())
        except redis.RedisError as exc:
            log.warning("Redis unavailable: %s", exc)
            return 0

    def unmet(self, workflow: str, needs: Resources) -> str | None:
        """None when a live worker can run `workflow` with these needs (its models ready,
        the memory, the device class), else why none can."""
        cannot = f"no Celery worker can run {workflow}"
        try:
            workers = [w for w in self.workers() if workflow in w.get("workflows", ())]
        except redis.RedisError as exc:
            log.warning("Redis unavailable while routing: %s", exc)
            return cannot
        if not workers:
            return cannot
        reasons = []
        for worker in workers:
            why = _unmet_on(worker, needs)
            if why is None:
                return None
            reasons.append(f"{worker['name']} {why}")
        return f"{cannot}: {'; '.join(reasons)}"

    def ping(self) -> dict[str, Any]:
        """Celery's own view of worker health (`inspect().ping()`)."""
        try:
            replies = self.app.control.inspect(timeout=1.0).ping() or {}
        except Exception as exc:  # kombu's connection errors: the broker is down
            raise WorkerUnavailable(f"the Celery broker cannot be reached: {exc}") from exc
        return {name: reply.get("ok") == "pong" for name, reply in replies.items()}

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._adopt()
        for target in (self._dispatch_loop, self._finals_loop, self._events_loop, self._monitor):
            thread = threading.Thread(target=target, name=f"celery-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _adopt(self) -> None:
        """After a server restart: record the results that came meanwhile, then watch again
        the Celery jobs still running, or queue again those whose worker is gone or has
        moved on."""
        try:
            self._drain_finals()
            live = {w["name"]: w for w in self.workers()}
        except redis.RedisError as exc:
            log.warning("Redis unavailable at start: %s", exc)
            live = {}
        for job in self.store.running_on_prefix("celery/"):
            name = (job.worker or "").removeprefix("celery/")
            worker = live.get(name)
            if worker is not None and worker.get("busy") == job.id:
                watch = Watch(job.time_limit_s, self.cancel_grace_s)
                # The store holds when the worker reported its start: the clock goes on.
                watch.started = time.monotonic() - (time.time() - (job.started_at or time.time()))
                with self._lock:
                    self.assigned[name] = _Assignment(
                        job, name, worker["boot"], f"{job.id}-{job.attempt}", watch
                    )
                log.info("job %s: still running on %s, watched again", job.id, name)
            else:
                self.redis.set(attempt_key(job.id), "revoked", ex=86400)
                record(
                    self.store,
                    self.bus,
                    job.id,
                    lost(f"Celery worker {name} is no longer running the job"),
                )

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(5)

    def notify(self) -> None:
        self._wake.set()

    # --- dispatch -----------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._dispatch_once()
            except redis.RedisError as exc:
                log.warning("Redis unavailable, dispatch paused: %s", exc)
                self._stop.wait(2.0)
            except Exception:  # the broker or the store failed: this thread must live on
                log.exception("Celery dispatch failed; retrying in 2 s")
                self._stop.wait(2.0)
            self._wake.wait(0.25)
            self._wake.clear()

    def _dispatch_once(self) -> None:
        for worker in self.workers():
            name = worker["name"]
            with self._lock:
                if worker.get("busy") or name in self.assigned:
                    continue
            # One job at a time per worker (solo pool), counted in the store: another
            # server of this store may have just sent it one that has not started yet
            # (its advert says busy only then).
            job = self.store.claim(
                f"celery/{name}",
                CELERY_QUEUE,
                limit=1,
                workflows=set(worker["workflows"]),
                scope=f"celery/{name}",
                memory_gb=worker.get("memory_gb") or None,  # 0: not measured, not enforced
                devices=device_classes(worker.get("device", "cpu")),
                models=set(worker.get("models", ())),
            )
            if job is None:
                continue
            task_id = f"{job.id}-{job.attempt}"
            watch = Watch(job.time_limit_s, self.cancel_grace_s)
            assignment = _Assignment(job, name, worker["boot"], task_id, watch)
            with self._lock:
                self.assigned[name] = assignment
            try:
                self.redis.set(attempt_key(job.id), str(job.attempt), ex=8 * 86400)
                self.app.send_task(
                    "vfxmocap.run_job",
                    args=[job.id, job.attempt, job.workflow, job.inputs, self.namespace],
                    queue=queue_of(name),
                    task_id=task_id,
                )
            except Exception as exc:  # not sent: the job goes back to the queue
                self._end(assignment, lost(f"the job could not be sent to Celery: {exc}"))
                raise
            log.info("job %s -> celery worker %s (attempt %d)", job.id, name, job.attempt)

    # --- what workers report ------------------------------------------------------------

    def _current(self, message: dict[str, Any]) -> Job | None:
        """The job a worker's message is about, if that attempt is still the one running
        (a late message of an attempt given up on is ignored)."""
        job_id = message["job_id"]
        job = persist(lambda: self.store.get(job_id), f"job {job_id}: reading it")
        if (
            job is None
            or job.state != JobState.RUNNING
            or job.attempt != message["attempt"]
            or job.worker != f"celery/{message.get('worker', '')}"
        ):
            return None
        return job

    def _assignment(self, job_id: str) -> _Assignment | None:
        with self._lock:
            return next((a for a in self.assigned.values() if a.job.id == job_id), None)

    def _release(self, assignment: _Assignment) -> None:
        with self._lock:
            if self.assigned.get(assignment.worker) is assignment:
                del self.assigned[assignment.worker]
        self.redis.delete(cancel_key(assignment.job.id))
        self._wake.set()

    def _finals_loop(self) -> None:
        while not self._stop.is_set():
            try:
                item = self.redis.blpop([finals_list(self.namespace)], timeout=1)
            except redis.RedisError as exc:
                log.warning("Redis unavailable: %s", exc)
                self._stop.wait(2.0)
                continue
            if item is not None:
                self._handle_final(str(item[1]))

    def _handle_final(self, raw: str) -> None:
        try:
            message = json.loads(raw)
            job = self._current(message)
            if job is None:
                log.info("ignoring a late message for job %s", message.get("job_id"))
                return
            self._record(job, message)
        except Exception:  # one bad message must not stop the results of all others
            log.exception("cannot record a worker's message: %s", raw[:500])

    def _drain_finals(self) -> None:
        """Record the results that arrived while no server was listening."""
        while raw := self.redis.lpop(finals_list(self.namespace)):
            self._handle_final(str(raw))

    def _record(self, job: Job, message: dict[str, Any]) -> None:
        job_id = job.id
        assignment = self._assignment(job_id)
        if message["kind"] == "started":
            if assignment is not None:
                assignment.watch.start()
            self.store.mark_started(job_id)
            self.bus.publish(job_event("started", job_id, message=f"on {message['worker']}"))
            return
        if message["kind"] == "done":
            outcome = succeeded(message["outputs"], message["summary"])
        else:
            outcome = errored(message["error"], message["retryable"])
        record(self.store, self.bus, job_id, outcome)
        if assignment is not None:
            self._release(assignment)

    def _end(self, assignment: _Assignment, outcome: Outcome) -> None:
        record(self.store, self.bus, assignment.job.id, outcome)
        self._release(assignment)

    def _events_loop(self) -> None:
        while not self._stop.is_set():
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(events_channel(self.namespace))
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._progress(json.loads(message["data"]))
            except redis.RedisError as exc:
                log.warning("Redis unavailable: %s", exc)
                self._stop.wait(2.0)
            except Exception:  # a bad message or a store error: progress goes on
                log.exception("cannot relay progress")

    def _progress(self, event: dict[str, Any]) -> None:
        if self._assignment(event["job_id"]) is None:
            return
        self.store.report_progress(event["job_id"], stored_progress(event))
        self.bus.publish(progress_event(event["job_id"], event))

    # --- cancel, time limits, lost workers ------------------------------------------------

    def _monitor(self) -> None:
        while not self._stop.wait(1.0):
            try:
                live = {w["name"]: w["boot"] for w in self.workers()}
                with self._lock:
                    assignments = list(self.assigned.values())
                for assignment in assignments:
                    self._watch(assignment, live)
            except redis.RedisError as exc:
                log.warning("Redis unavailable: %s", exc)
            except Exception:  # the store failed: watch again next round
                log.exception("cannot watch Celery jobs")

    def _watch(self, assignment: _Assignment, live: dict[str, str]) -> None:
        job_id = assignment.job.id
        current = self.store.get(job_id)
        if (
            current is None
            or current.state != JobState.RUNNING
            or current.attempt != assignment.job.attempt
        ):
            self._release(assignment)  # ended (another server of this store recorded it)
            return
        if live.get(assignment.worker) != assignment.boot:  # gone, or restarted since
            self._kill(assignment)
            why = f"Celery worker {assignment.worker} stopped while running the job"
            self._end(assignment, lost(why))
            return
        self.store.heartbeat(job_id)
        if self.store.cancel_requested(job_id) and assignment.watch.cancel():
            self.redis.set(cancel_key(job_id), "1", ex=86400)
        verdict = assignment.watch.verdict()
        if verdict is not None:
            self._kill(assignment)
            self._end(assignment, verdict)

    def _kill(self, assignment: _Assignment) -> None:
        """Stop an attempt for good: its late messages are ignored, a redelivery of its
        task is skipped, and the worker process is killed if it is still running it."""
        self.redis.set(attempt_key(assignment.job.id), "revoked", ex=86400)
        order = f"{assignment.job.id}:{assignment.job.attempt}"  # never a later attempt
        self.redis.set(kill_key(assignment.worker), order, ex=60)
        self.app.control.revoke(assignment.task_id)


def _unmet_on(worker: dict[str, Any], needs: Resources) -> str | None:
    """Why this advertised worker cannot meet these needs (None: it can)."""
    ready = worker.get("models", ())
    return needs.unmet(worker.get("device", "cpu"), worker.get("memory_gb", 0.0), ready)
