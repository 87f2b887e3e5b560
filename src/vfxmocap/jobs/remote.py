"""The last fallback: another vfxmocap server over HTTP (a bigger machine down the hall).

A job routed here is claimed from the local store and re-submitted there through the
Python client: its input files are uploaded, its outputs downloaded into the job's own
folder when it ends. Progress and cancel are relayed while it runs, under the policy of
jobs/supervisor.py: the clock starts when the job runs there, a cancel it ignores past the
grace period ends it here, and a poll that fails is retried, never re-submitted (the
first copy may still run). A server unreachable at submit fails the attempt as
`worker_unavailable` (retried); the remote job's own error is kept.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

from vfxmocap.client import Client
from vfxmocap.core.errors import InputError, VfxError
from vfxmocap.core.log import get_logger
from vfxmocap.jobs.events import EventBus, job_event, progress_event
from vfxmocap.jobs.store import REMOTE_QUEUE, Job, JobStore
from vfxmocap.jobs.supervisor import (
    CANCELLED,
    TRANSIENT,
    Beat,
    Outcome,
    Watch,
    errored,
    failure,
    hand_back,
    lost,
    persist,
    record,
    succeeded,
)
from vfxmocap.workflows import Workflow, get_workflow

log = get_logger("jobs.remote")

_CHECK_S = 10.0  # how long the remote's workflow list is trusted
_UNREACHABLE: tuple[type[BaseException], ...] = (*TRANSIENT, VfxError)


class RemoteBackend:
    def __init__(
        self,
        store: JobStore,
        url: str,
        token: str | None,
        *,
        jobs_dir: Path,
        bus: EventBus,
        slots: int = 2,
        cancel_grace_s: float = 5.0,
    ) -> None:
        self.store, self.url, self.token = store, url.rstrip("/"), token
        self.jobs_dir, self.bus, self.slots = jobs_dir, bus, slots
        self.cancel_grace_s = cancel_grace_s
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._threads = [
            threading.Thread(target=self._loop, args=(i,), name=f"remote-{i}", daemon=True)
            for i in range(slots)
        ]
        self._known: tuple[float, set[str]] = (0.0, set())

    def client(self) -> Client:
        return Client(self.url, self.token, timeout=120)

    def can_run(self, workflow: str) -> bool:
        """Whether the remote server answers and has this workflow (cached briefly)."""
        checked, names = self._known
        if time.monotonic() - checked > _CHECK_S:
            try:
                with Client(self.url, self.token, timeout=3) as client:
                    names = {w["name"] for w in client.workflows()}
            except VfxError as exc:
                log.info("remote server %s unavailable: %s", self.url, exc.message)
                names = set()
            self._known = (time.monotonic(), names)
        return workflow in names

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.notify()
        for thread in self._threads:
            thread.join(5)

    def notify(self) -> None:
        with self._wake:
            self._wake.notify()

    def _loop(self, index: int) -> None:
        name = f"remote/{index}/{self.url}"
        while not self._stop.is_set():
            try:
                job = self.store.claim(name, REMOTE_QUEUE, limit=self.slots)
            except Exception:  # the store is down: wait and try again
                log.exception("remote backend: cannot claim jobs")
                self._stop.wait(2.0)
                continue
            if job is None:
                with self._wake:
                    self._wake.wait(0.5)
                continue
            beating = threading.Event()
            beat = threading.Thread(target=self._heartbeat, args=(job.id, beating), daemon=True)
            beat.start()  # uploads and downloads of big files take minutes
            outcome: Outcome | None
            try:
                outcome = self._run(job)
            except VfxError as exc:
                outcome = failure(exc)
            except Exception as exc:  # this thread must live on, the job must not hang
                log.exception("job %s: the remote backend failed", job.id)
                outcome = lost(f"forwarding to {self.url} failed: {exc}")
            finally:
                beating.set()
            try:  # retried for minutes; after that recovery finds the job (no heartbeat)
                if outcome is None:  # stopping: the remote run goes on, the next start follows it
                    hand_back(self.store, self.bus, job.id, name, "server stopped")
                else:
                    record(self.store, self.bus, job.id, outcome)
            except TRANSIENT:
                log.exception("job %s: cannot record how it ended", job.id)

    def _heartbeat(self, job_id: str, done: threading.Event) -> None:
        while not done.wait(5.0):
            try:
                self.store.heartbeat(job_id)
            except Exception:  # the next beat may get through
                log.exception("job %s: heartbeat failed", job_id)

    def _run(self, job: Job) -> Outcome | None:
        """Run the job there (or follow its run of an earlier attempt) to its outcome;
        None when this server stops first (the remote run goes on)."""
        self.bus.publish(job_event("started", job.id, message=f"on {self.url}"))
        watch = Watch(job.time_limit_s, self.cancel_grace_s)
        with self.client() as client:
            remote_id = self._attach(client, job) or self._submit(client, job)
            final = self._follow(client, job, remote_id, watch)
            if final is None or isinstance(final, Outcome):
                return final
            if final["state"] == "cancelled":
                return CANCELLED
            if final["state"] != "succeeded":
                error = final.get("error") or {"code": "internal", "message": "remote failure"}
                return errored(error, retryable=False)  # it was retried there already
            folder = self.jobs_dir / job.id
            folder.mkdir(parents=True, exist_ok=True)
            outputs = {
                name: str(persist(partial(client.download, remote_id, name, folder), name))
                for name in final["outputs"]
            }
        return succeeded(outputs, final.get("summary") or {}, final["progress"])

    def _attach(self, client: Client, job: Job) -> str | None:
        """The remote run an earlier attempt of this job started (recorded in the store),
        if that server still has it: a restart follows it rather than run the job twice."""
        if job.handle is None:
            return None
        try:
            client.job(job.handle)
        except InputError:  # that server no longer has it (deleted, or a new database)
            log.info("job %s: remote job %s is gone; submitting again", job.id, job.handle)
            return None
        log.info("job %s: following remote job %s again", job.id, job.handle)
        return job.handle

    def _submit(self, client: Client, job: Job) -> str:
        inputs = self._upload(client, get_workflow(job.workflow), job)
        remote = client.submit(job.workflow, inputs, priority=job.priority, timeout_s=job.timeout_s)
        remote_id = str(remote["id"])
        persist(partial(self.store.set_handle, job.id, remote_id), f"job {job.id}: its remote id")
        return remote_id

    def _upload(self, client: Client, flow: Workflow, job: Job) -> dict[str, Any]:
        """The job's inputs for the remote server: its files uploaded, outputs left out."""
        placed = set(flow.place_outputs({}, Path()) if flow.place_outputs else ())
        inputs: dict[str, Any] = {k: v for k, v in job.inputs.items() if k not in placed}
        for field in flow.files:
            value = inputs.get(field)
            if isinstance(value, list):
                inputs[field] = [client.upload(v)["id"] for v in value]
            elif value is not None:
                inputs[field] = client.upload(value)["id"]
        return inputs

    def _follow(
        self, client: Client, job: Job, remote_id: str, watch: Watch
    ) -> dict[str, Any] | Outcome | None:
        """Relay progress and cancel until the remote job ends (its final view), or the
        policy ends it here (an Outcome): past its time limit, or its cancel grace; None
        when this server stops (the remote job is left running, to be followed again)."""
        polls, checks, writes = Beat(0.25, max_s=10.0), Beat(1.0), Beat(0.25)
        cancel_pending = False
        while not self._stop.is_set():
            view = polls.run(partial(client.job, remote_id), f"job {job.id}: polling {self.url}")
            if view is not None and view["state"] in ("succeeded", "failed", "cancelled"):
                return view
            if view is not None:
                self._relay(job, view, watch, writes)
            if checks.due() and checks.run(partial(self.store.cancel_requested, job.id), "cancel"):
                cancel_pending = watch.cancel() or cancel_pending
            if cancel_pending:  # sent once it gets through
                cancel_pending = polls.run(partial(client.cancel, remote_id), "cancel") is None
            verdict = watch.verdict()
            if verdict is not None:
                self._cancel_quietly(client, remote_id)
                return verdict
            self._stop.wait(max(0.05, polls.next - time.monotonic()))
        return None

    def _relay(self, job: Job, view: dict[str, Any], watch: Watch, beat: Beat) -> None:
        if view["state"] == "running" and watch.start():
            beat.run(partial(self.store.mark_started, job.id), f"job {job.id}: start")
        progress = view.get("progress") or {}
        beat.run(partial(self.store.report_progress, job.id, progress), f"job {job.id}: progress")
        self.bus.publish(progress_event(job.id, progress))

    def _cancel_quietly(self, client: Client, remote_id: str) -> None:
        """Stop the remote copy if the server can be reached (its own grace then applies)."""
        try:
            client.cancel(remote_id)
        except _UNREACHABLE as exc:
            log.warning("cannot cancel remote job %s: %s", remote_id, exc)
