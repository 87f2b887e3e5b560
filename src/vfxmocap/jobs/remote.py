"""The last fallback: another vfxmocap server over HTTP (a bigger machine down the hall).

A job routed here is claimed from the local store and re-submitted there through the
Python client: its input files are uploaded, its outputs downloaded into the job's own
folder when it ends. Progress and cancel are relayed while it runs. An unreachable server
fails the attempt as `worker_unavailable` (retried); the remote job's own error is kept.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from vfxmocap.client import Client
from vfxmocap.core.errors import JobTimeout, VfxError, WorkerUnavailable
from vfxmocap.core.log import get_logger
from vfxmocap.jobs.events import EventBus, announce_failure, job_event, progress_event
from vfxmocap.jobs.store import REMOTE_DEVICE, Job, JobStore
from vfxmocap.workflows import get_workflow

log = get_logger("jobs.remote")

_CHECK_S = 10.0  # how long the remote's workflow list is trusted


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
    ) -> None:
        self.store, self.url, self.token = store, url.rstrip("/"), token
        self.jobs_dir, self.bus, self.slots = jobs_dir, bus, slots
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
                job = self.store.claim(name, REMOTE_DEVICE, limit=self.slots)
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
            try:
                self._run(job)
            except VfxError as exc:
                self._failed(job, exc.to_dict(), retryable=exc.retryable)
            except Exception as exc:  # this thread must live on, the job must not hang
                log.exception("job %s: the remote backend failed", job.id)
                lost = WorkerUnavailable(f"forwarding to {self.url} failed: {exc}")
                self._failed(job, lost.to_dict(), retryable=True)
            finally:
                beating.set()

    def _heartbeat(self, job_id: str, done: threading.Event) -> None:
        while not done.wait(5.0):
            try:
                self.store.heartbeat(job_id)
            except Exception:  # the next beat may get through
                log.exception("job %s: heartbeat failed", job_id)

    def _run(self, job: Job) -> None:
        flow = get_workflow(job.workflow)
        placed = set(flow.place_outputs({}, Path()) if flow.place_outputs else ())
        self.bus.publish(job_event("started", job.id, message=f"on {self.url}"))
        with self.client() as client:
            inputs: dict[str, Any] = {k: v for k, v in job.inputs.items() if k not in placed}
            for field in flow.files:
                value = inputs.get(field)
                if isinstance(value, list):
                    inputs[field] = [client.upload(v)["id"] for v in value]
                elif value is not None:
                    inputs[field] = client.upload(value)["id"]
            remote = client.submit(
                job.workflow, inputs, priority=job.priority, timeout_s=job.timeout_s
            )
            final = self._follow(client, job, remote["id"])
            if final["state"] == "succeeded":
                folder = self.jobs_dir / job.id
                folder.mkdir(parents=True, exist_ok=True)
                outputs = {
                    name: str(client.download(remote["id"], name, folder))
                    for name in final["outputs"]
                }
                self.store.succeed(job.id, outputs, final.get("summary") or {}, final["progress"])
                self.bus.publish(job_event("succeeded", job.id))
            elif final["state"] == "cancelled":
                self.store.mark_cancelled(job.id)
                self.bus.publish(job_event("cancelled", job.id))
            else:
                error = final.get("error") or {"code": "internal", "message": "remote failure"}
                self._failed(job, error, retryable=False)

    def _follow(self, client: Client, job: Job, remote_id: str) -> dict[str, Any]:
        """Relay progress and cancel until the remote job ends; enforce the time limit."""
        cancelled = False
        deadline = time.monotonic() + job.time_limit_s
        while True:
            state = client.job(remote_id)
            if state["state"] in ("succeeded", "failed", "cancelled"):
                return state
            if time.monotonic() > deadline:
                client.cancel(remote_id)
                raise JobTimeout("the job ran longer than its limit on the remote server")
            self.store.report_progress(job.id, state.get("progress") or {})
            self.bus.publish(progress_event(job.id, state.get("progress") or {}))
            if not cancelled and self.store.cancel_requested(job.id):
                client.cancel(remote_id)
                cancelled = True
            time.sleep(0.25)

    def _failed(self, job: Job, error: dict[str, Any], *, retryable: bool) -> None:
        announce_failure(
            self.bus, job.id, self.store.fail(job.id, error, retryable=retryable), error
        )
