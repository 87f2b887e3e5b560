"""The job service: the store, uploads, per-job output folders, events and the runner,
assembled once for the API (and tests) to call.

Inputs from clients are *untrusted*: file fields must hold upload ids, and output fields
are set by the service to the job's own folder, whatever the client sent.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from vfxmocap.core.config import Settings, get_settings
from vfxmocap.core.errors import InputError, InvalidParams, WorkerUnavailable
from vfxmocap.core.log import get_logger
from vfxmocap.device import device_kind
from vfxmocap.jobs.events import EventBus, job_event
from vfxmocap.jobs.runner import LocalRunner
from vfxmocap.jobs.store import (
    CELERY_QUEUE,
    FINAL,
    REMOTE_QUEUE,
    Job,
    JobState,
    JobStore,
    new_job_id,
)
from vfxmocap.jobs.supervisor import TRANSIENT
from vfxmocap.jobs.uploads import UploadStore
from vfxmocap.models.store import ModelStore
from vfxmocap.workflows import Resources, Workflow, get_workflow, is_registered

if TYPE_CHECKING:
    from vfxmocap.jobs.celery_backend import CeleryBackend
    from vfxmocap.jobs.remote import RemoteBackend

log = get_logger("jobs.service")


class JobService:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        device: str = "cpu",
        memory_gb: float | None = None,
    ) -> None:
        """`memory_gb`: what local jobs may need at once (default: the device's memory)."""
        self.settings = settings or get_settings()
        data = self.settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.jobs_dir = data / "jobs"
        self.jobs_dir.mkdir(exist_ok=True)
        self.store = JobStore(self.settings.job_database_url)
        self.uploads = UploadStore(data / "uploads", int(self.settings.upload_max_mb * 2**20))
        self.bus = EventBus()
        self.models = ModelStore(self.settings.models_dir)
        self.device = device_kind(device)  # the queue's pool; the runner keeps the index
        self.memory_gb = _device_memory(device) if memory_gb is None else memory_gb
        self.runner = LocalRunner(
            self.store,
            slots=self.settings.workers,
            device=device,
            bus=self.bus,
            cancel_grace_s=self.settings.cancel_grace_s,
            log_level=self.settings.log_level,
            log_dir=self.jobs_dir,
            memory_gb=self.memory_gb,
        )
        self.celery: CeleryBackend | None = None
        if self.settings.broker_url and "celery" in self.settings.backends:
            from vfxmocap.jobs.celery_backend import CeleryBackend

            self.celery = CeleryBackend(
                self.store,
                self.settings.broker_url,
                bus=self.bus,
                cancel_grace_s=self.settings.cancel_grace_s,
            )
            self.runner.celery_watched = True
        self.remote: RemoteBackend | None = None
        if self.settings.remote_url and "remote" in self.settings.backends:
            from vfxmocap.jobs.remote import RemoteBackend

            self.remote = RemoteBackend(
                self.store,
                self.settings.remote_url,
                self.settings.remote_token,
                jobs_dir=self.jobs_dir,
                bus=self.bus,
                cancel_grace_s=self.settings.cancel_grace_s,
            )
        self._maintenance = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self.runner.start()
        if self.celery is not None:
            self.celery.start()
        if self.remote is not None:
            self.remote.start()
        self._thread = threading.Thread(target=self._maintain, name="vfx-maintenance", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float | None = None) -> None:
        """Stop taking jobs; running ones get `grace_s` to finish, then go back to the queue."""
        self._maintenance.set()
        if self.celery is not None:
            self.celery.stop()  # Celery workers keep running their jobs; a restart resumes
        if self.remote is not None:
            self.remote.stop()
        self.runner.stop(self.settings.shutdown_grace_s if grace_s is None else grace_s)
        self.store.dispose()

    def _maintain(self, every_s: float = 5.0) -> None:
        """Every few seconds: recover jobs of lost workers; now and then: retention. A
        failing round is logged and the next comes later (up to a minute): this thread
        must outlive any store outage."""
        last_cleanup = 0.0
        wait = every_s
        while not self._maintenance.wait(wait):
            try:
                self.runner.recover()
                self._reroute_stranded()
                if time.time() - last_cleanup > 3600:
                    last_cleanup = time.time()
                    self.cleanup()
                wait = every_s
            except TRANSIENT as exc:
                wait = min(wait * 2, 60.0)
                log.warning("maintenance failed (%s); next round in %.0f s", exc, wait)
            except Exception:  # a bug: logged with its traceback, and the thread lives on
                wait = min(wait * 2, 60.0)
                log.exception("maintenance failed; next round in %.0f s", wait)

    # --- jobs ---------------------------------------------------------------------------

    def submit(
        self,
        workflow: str,
        inputs: dict[str, Any],
        *,
        priority: int = 0,
        timeout_s: float | None = None,
        max_attempts: int = 3,
        wait: bool = True,
        backend: str = "auto",
    ) -> Job:
        """Validate untrusted inputs into a queued job. Raises pydantic's ValidationError
        (field messages) or `InputError` for an unknown upload id; with `wait=False`,
        StoreBusy when the store's write lock is taken (nothing was queued). `backend`
        "auto" takes the configured order; a backend's name sends the job there or
        refuses it (WorkerUnavailable) when that backend cannot run it."""
        flow = get_workflow(workflow)
        job_id = new_job_id()
        resolved = self.parse_inputs(flow, inputs, self.jobs_dir / job_id)
        needs = flow.requirements(resolved)
        queue, chosen, route = self.route(flow.name, needs, backend)
        job = self.store.submit(
            workflow,
            resolved.model_dump(mode="json", by_alias=True),
            priority=priority,
            queue=queue,
            max_attempts=max_attempts,
            timeout_s=timeout_s or flow.resources.timeout_s,
            job_id=job_id,
            backend=chosen,
            route=route,
            needs=needs,
            wait=wait,
        )
        self.bus.publish(job_event("queued", job.id, message=route))
        self._notify()
        return job

    def _notify(self) -> None:
        self.runner.notify()
        for backend in (self.celery, self.remote):
            if backend is not None:
                backend.notify()

    def available_backends(self) -> list[str]:
        """The backends this server can send jobs to, in its configured order."""
        present = {
            "local": True,
            "celery": self.celery is not None,
            "remote": self.remote is not None,
        }
        return [b for b in self.settings.backends if present[b]]

    def route(self, workflow: str, needs: Resources, choice: str = "auto") -> tuple[str, str, str]:
        """(queue, backend, why): the first backend in the configured order (or the one
        chosen) with a worker that can run this workflow with these needs; `why` names
        the need that passed over a backend."""
        available = self.available_backends()
        if choice != "auto" and choice not in available:
            raise WorkerUnavailable(
                f"the {choice} backend is not configured on this server",
                hint=f"Choose auto or one of: {', '.join(available)}.",
            )
        passed: list[str] = []
        for backend in self.settings.backends if choice == "auto" else [choice]:
            if backend == "celery":
                if self.celery is None:
                    continue  # no broker configured: not a choice, nothing to explain
                unmet = self.celery.unmet(workflow, needs)
                if unmet is None:
                    return (
                        CELERY_QUEUE,
                        "celery",
                        _why(_fitting("a Celery worker can run it", needs), passed),
                    )
                passed.append(unmet)
            elif backend == "local":
                unmet = self._local_unmet(workflow, needs)
                if unmet is None:
                    choice = _fitting(f"local workers ({self.runner.device})", needs)
                    return self.device, "local", _why(choice, passed)
                passed.append(unmet)
            elif backend == "remote" and self.remote is not None:
                if self.remote.can_run(workflow):
                    return REMOTE_QUEUE, "remote", _why(f"the server at {self.remote.url}", passed)
                passed.append(f"the server at {self.remote.url} cannot run {workflow} now")
        raise WorkerUnavailable(
            f"no worker can run {workflow}: {'; '.join(passed) or 'no backend configured'}",
            hint="Start a worker that can (`vfx worker`), or change VFX_BACKENDS.",
        )

    def _local_unmet(self, workflow: str, needs: Resources) -> str | None:
        """Why this server's own workers cannot run it (None: they can). Their models are
        not checked: a local job that lacks one fails with `model_not_found` and a hint."""
        if self.settings.workers == 0:
            return "no local workers"
        if not is_registered(workflow):
            return f"{workflow} is not loaded on this server"
        unmet = needs.unmet(self.device, self.memory_gb, None)
        where = f"local workers ({self.runner.device})"
        return None if unmet is None else f"{where}: {workflow} {unmet}"

    def _reroute_stranded(self) -> None:
        """Queued Celery jobs whose workers have all gone fall back to the next backend;
        one that no backend knows (its plugin is not loaded anywhere) fails, saying so."""
        if self.celery is None:
            return
        for job in self.store.queued_on(CELERY_QUEUE):
            if self.celery.unmet(job.workflow, job.needs) is None:
                continue
            try:
                queue, backend, route = self.route(job.workflow, job.needs)
            except WorkerUnavailable as exc:
                if not is_registered(job.workflow):
                    self._reject_unknown(job)
                else:
                    log.debug("job %s waits for a worker: %s", job.id, exc.message)
                continue
            if self.store.reroute(job.id, queue, backend, route):
                log.info("job %s: no Celery worker left; rerouted to %s", job.id, backend)
                self._notify()

    def _reject_unknown(self, job: Job) -> None:
        error = InvalidParams(
            f"workflow {job.workflow!r} is not loaded on this server and no worker has it",
            hint="Install its plugin (VFX_WORKFLOW_MODULES or its package), then retry the job.",
        )
        if self.store.reject(job.id, error.to_dict()):
            log.warning("job %s failed: %s", job.id, error.message)
            self.bus.publish(job_event("failed", job.id, message=error.message))

    def parse_inputs(self, flow: Workflow, inputs: dict[str, Any], job_dir: Path) -> BaseModel:
        """A client's inputs as the workflow runs them: upload ids made paths, model names
        served ones, the outputs placed in `job_dir`. Raises pydantic's ValidationError or
        `InputError`."""
        data = self.uploads.resolve(dict(inputs), flow.files)
        for name in flow.model_inputs:
            if isinstance(value := data.get(name), str):
                data[name] = self.models.served_model(value)
        if flow.place_outputs is not None:
            data.update(flow.place_outputs(data, job_dir))
        return flow.parse(data)

    def get(self, job_id: str) -> Job:
        job = self.store.get(job_id) if _is_id(job_id) else None
        if job is None:
            raise InputError(f"job {job_id} does not exist", hint="List jobs with GET /api/jobs.")
        return job

    def cancel(self, job_id: str) -> Job:
        self.get(job_id)
        state = self.store.cancel(job_id)
        if state == JobState.CANCELLED:
            self.bus.publish(job_event("cancelled", job_id))
        return self.get(job_id)

    def retry(self, job_id: str) -> Job:
        job = self.get(job_id)
        if self.store.retry(job_id) is None:
            raise JobStateConflict(
                f"job {job_id} is {job.state.value}; only failed or cancelled jobs can be retried"
            )
        try:  # routed afresh: the backend it had may be gone (or a better one back)
            self.store.reroute(job_id, *self.route(job.workflow, job.needs))
        except WorkerUnavailable as exc:
            log.warning("job %s retried but no backend can run it now: %s", job_id, exc.message)
        self.bus.publish(job_event("queued", job_id, message="retried"))
        self._notify()
        return self.get(job_id)

    def delete(self, job_id: str) -> None:
        job = self.get(job_id)
        if not self.store.delete(job_id):
            raise JobStateConflict(
                f"job {job_id} is {job.state.value}; cancel it before deleting it"
            )
        shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)
        self.bus.publish(job_event("deleted", job_id))  # a follower's end, as for a job's end

    def output(self, job_id: str, name: str) -> Path:
        """The file of one named output of a finished job."""
        job = self.get(job_id)
        outputs = job.outputs or {}
        if name not in outputs:
            raise InputError(
                f"job {job_id} has no output {name!r}",
                hint=f"Its outputs: {', '.join(outputs) or 'none (yet)'}.",
            )
        path = Path(outputs[name]).resolve()
        if not path.is_relative_to((self.jobs_dir / job_id).resolve()) or not path.is_file():
            raise InputError(f"output {name!r} of job {job_id} is not a file in its folder")
        return path

    def log(self, job_id: str) -> str:
        """What the job's worker logged (empty until it starts)."""
        self.get(job_id)
        path = self.jobs_dir / job_id / "job.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""

    def cleanup(self) -> int:
        """Delete finished jobs (and their folders) older than the retention period."""
        cutoff = time.time() - self.settings.job_retention_days * 86400
        removed = 0
        for state in FINAL:
            cursor: float | None = None
            while True:
                page, cursor = self.store.list(state=state.value, limit=200, cursor=cursor)
                for job in page:
                    old = job.finished_at is not None and job.finished_at < cutoff
                    if old and self.store.delete(job.id):  # not if it was just retried
                        shutil.rmtree(self.jobs_dir / job.id, ignore_errors=True)
                        removed += 1
                if cursor is None:
                    break
        removed_uploads = self.uploads.remove_older_than(cutoff)
        if removed or removed_uploads:
            log.info("retention: removed %d job(s), %d upload(s)", removed, removed_uploads)
        return removed


class JobStateConflict(InvalidParams):
    """The job is in a state that does not allow this (HTTP 409)."""


def _fitting(choice: str, needs: Resources) -> str:
    """The chosen backend, with the needs that narrowed the choice (models, memory, GPU)."""
    named = [f"with {', '.join(needs.models)}"] if needs.models else []
    named += [f"{needs.memory_gb:g} GB"] if needs.memory_gb >= 1 else []
    named += ["on a GPU"] if needs.device == "gpu" else []
    return f"{choice} ({', '.join(named)})" if named else choice


def _device_memory(device: str) -> float:
    """The memory jobs may use on this server's device (on MPS Metal's share of unified
    memory, as the planner counts it; 0 when it cannot be measured)."""
    from vfxmocap.core.errors import DeviceError
    from vfxmocap.device import resolve_device

    try:
        return resolve_device(device).usable_memory_gb
    except DeviceError as exc:
        log.warning("cannot measure the memory of %s: %s", device, exc.message)
        return 0.0


def _why(choice: str, passed: list[str]) -> str:
    return "; ".join([*passed, choice]) if passed else choice


def _is_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)
