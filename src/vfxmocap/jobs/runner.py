"""The embedded runner: worker processes the server starts itself, one per device slot.

Workers are *spawned*, not forked (a forked CUDA context is unusable), and live across
jobs so models loaded by one job stay warm for the next. Each slot has a thread in the
server that claims a job from the store (the per-device limit is enforced there,
atomically), hands it to its process over a pipe, relays progress to the store and the
event bus, and enforces cancel (cooperative token, then a hard kill after a grace period)
and the job's time limit (kill). A worker that dies takes no job with it: the job is
queued again (attempt + 1) or failed with a reason.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from vfxmocap.core.errors import VfxError, as_vfx_error
from vfxmocap.core.log import get_logger, job_id_var
from vfxmocap.device import device_kind
from vfxmocap.jobs.events import (
    PREVIEW_INTERVAL_S,
    EventBus,
    job_event,
    progress_event,
    stored_progress,
)
from vfxmocap.jobs.store import Job, JobState, JobStore
from vfxmocap.jobs.supervisor import (
    TRANSIENT,
    Beat,
    Outcome,
    Watch,
    errored,
    hand_back,
    lost,
    record,
    succeeded,
)
from vfxmocap.workflows import device_classes

log = get_logger("jobs.runner")

_HEARTBEAT_S = 2.0
_PROGRESS_WRITE_S = 0.25  # progress rows are rewritten at most this often per job


def worker_main(conn: Connection, cancel: Any, device: str, log_level: str) -> None:
    """A worker process: run jobs sent over `conn` until told to stop or the pipe closes."""
    # Ctrl+C in the terminal reaches the whole process group; the server decides when
    # its workers stop (after a grace period), so they ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    os.environ["VFX_DEVICE"] = device
    from vfxmocap.core.config import reload_settings
    from vfxmocap.core.log import setup_logging
    from vfxmocap.core.progress import CancelToken, Progress, ProgressEvent
    from vfxmocap.workflows import get_workflow

    settings = reload_settings()
    setup_logging(log_level, settings.log_format)
    # The console (the server's log) gets warnings and errors; each job's own log file
    # (`vfx jobs logs`) gets everything at `log_level`.
    for console in logging.getLogger("vfxmocap").handlers:
        console.setLevel(max(logging.WARNING, logging.getLevelName(log_level)))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return  # the server is gone
        if message[0] == "stop":
            return
        _, job_id, name, inputs, log_path, on_cpu = message
        token = job_id_var.set(job_id)
        handler = _job_log_handler(log_path)

        def send(event: ProgressEvent) -> None:
            conn.send(("progress", event.to_dict()))

        conn.send(("started",))  # the job's clock starts here, not at dispatch
        try:
            log.info("job %s: %s started in worker %d", job_id, name, os.getpid())
            workflow = get_workflow(name)
            progress = Progress(send, job_id=job_id, preview_interval_s=PREVIEW_INTERVAL_S)
            with _device_override("cpu" if on_cpu else None):
                result = workflow(inputs, progress, CancelToken(cancel))
            outputs = {k: str(v) for k, v in result.outputs.items()}
            log.info("job %s: succeeded, outputs %s", job_id, ", ".join(outputs) or "none")
            conn.send(("done", outputs, result.summary))
        except Exception as exc:  # typed errors as they are; a bug as internal, logged
            if isinstance(exc, VfxError):
                log.info("job %s: %s: %s", job_id, exc.code, exc.message)
            else:
                log.exception("job %s failed with an internal error", job_id)
            error = as_vfx_error(exc)
            conn.send(("error", error.to_dict(), error.retryable))
        finally:
            job_id_var.reset(token)
            if handler is not None:
                logging.getLogger("vfxmocap").removeHandler(handler)
                handler.close()


@contextlib.contextmanager
def _device_override(device: str | None) -> Iterator[None]:
    """Run one job on `device` (a "cpu" workflow in a GPU slot), then restore the slot's."""
    if device is None or os.environ.get("VFX_DEVICE") == device:
        yield
        return
    from vfxmocap.core.config import reload_settings

    previous = os.environ.get("VFX_DEVICE")
    os.environ["VFX_DEVICE"] = device
    reload_settings()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("VFX_DEVICE", None)
        else:
            os.environ["VFX_DEVICE"] = previous
        reload_settings()


def _die_with_parent() -> None:
    """On Linux, a worker whose server is killed (kill -9) is killed too, instead of
    finishing a job nobody will record; the restarted server runs that job again."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _job_log_handler(path: str | None) -> logging.Handler | None:
    """The job's own log file (`vfx jobs logs`), next to its outputs."""
    if path is None:
        return None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("vfxmocap").addHandler(handler)
    return handler


class _Slot:
    """One worker process and the thread that feeds it."""

    def __init__(self, runner: LocalRunner, index: int) -> None:
        self.runner = runner
        self.name = f"{runner.instance}/slot{index}"
        self.ctx = multiprocessing.get_context("spawn")
        self.proc: Any = None
        self.conn: Connection | None = None
        self.cancel = self.ctx.Event()
        self.job: Job | None = None
        self.writes = Beat(_PROGRESS_WRITE_S)  # the running job's progress rows
        self.last_progress: dict[str, Any] | None = None
        self.thread = threading.Thread(target=self._loop, name=self.name, daemon=True)

    # --- the process ---------------------------------------------------------------------

    def spawn(self) -> None:
        # A fresh Event each time: a process killed while inside is_set() may leave the
        # old one's lock held, and clear() would then block this slot for ever.
        self.cancel = self.ctx.Event()
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(
            target=worker_main,
            args=(child, self.cancel, self.runner.device, self.runner.log_level),
            name=f"vfx-worker-{self.name}",
            daemon=True,
        )
        self.proc.start()
        child.close()
        self.conn = parent

    def kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
            self.proc.join(10)
        if self.conn is not None:
            self.conn.close()
        self.proc = self.conn = None

    def stop(self) -> None:
        """Ask an idle process to exit; kill it if it does not."""
        if self.conn is not None:
            with contextlib.suppress(OSError, BrokenPipeError):
                self.conn.send(("stop",))
        if self.proc is not None:
            self.proc.join(5)
        self.kill()

    # --- the feeding thread --------------------------------------------------------------

    def _loop(self) -> None:
        runner = self.runner
        while not runner.draining.is_set():
            try:
                job = runner.claim(self.name)
            except Exception:  # the store is down or locked: say so, wait, try again
                log.exception("%s: cannot claim jobs; retrying in 2 s", self.name)
                runner.draining.wait(2.0)
                continue
            if job is None:
                runner.wait_for_work()
                continue
            self.job = job
            try:
                self._execute(job)
            except Exception:  # this slot must live on, and the job must not stay running
                log.exception("job %s: the runner failed; queuing it again", job.id)
                self.kill()
                self._requeue_after_error(job)
            finally:
                self.job = None

    def _requeue_after_error(self, job: Job) -> None:
        try:  # `record` retries the store for minutes: it may be what failed
            self._end(job, lost("the job runner lost track of this job (see the server log)"))
        except TRANSIENT:
            log.exception("job %s: cannot record the failure; recovery will", job.id)

    def _execute(self, job: Job) -> None:
        runner = self.runner
        if self.proc is None or not self.proc.is_alive():
            self.spawn()
        assert self.conn is not None
        self.cancel.clear()
        runner.bus.publish(job_event("started", job.id, message=f"attempt {job.attempt}"))
        watch = Watch(job.time_limit_s, runner.cancel_grace_s)
        try:
            log_path = str(runner.log_dir / job.id / "job.log") if runner.log_dir else None
            on_cpu = job.needs.device == "cpu"
            self.conn.send(("run", job.id, job.workflow, job.inputs, log_path, on_cpu))
        except (OSError, BrokenPipeError):
            self._end(job, lost("the worker process could not be reached"), kill=True)
            return
        self._follow(job, watch)

    def _follow(self, job: Job, watch: Watch) -> None:
        """Relay the worker's messages until the attempt ends; enforce cancel and the limit.
        Store errors here are logged and retried: the job runs on through them."""
        runner = self.runner
        beat = Beat(_HEARTBEAT_S)
        self.writes = Beat(_PROGRESS_WRITE_S)  # a job shorter than this writes only its result
        self.last_progress = None
        while True:
            if beat.due():
                beat.run(partial(self._beat, job, watch), f"job {job.id}: heartbeat")
            verdict = watch.verdict()
            if verdict is not None:
                self._end(job, verdict, kill=True)
                return
            if runner.hard_stop.is_set():
                self.kill()
                hand_back(runner.store, runner.bus, job.id, self.name, "server stopped")
                return
            try:
                message = self.conn.recv() if self.conn and self.conn.poll(0.1) else None
            except (EOFError, OSError):
                why = f"the worker process exited (code {self._exitcode()})"
                self._end(job, lost(why), kill=True)
                return
            if message is not None and self._handle(job, watch, message):
                return

    def _handle(self, job: Job, watch: Watch, message: tuple[Any, ...]) -> bool:
        """Act on one message of the worker; True when the attempt ended."""
        store, kind = self.runner.store, message[0]
        if kind == "started":
            watch.start()
            self.writes.run(partial(store.mark_started, job.id), f"job {job.id}: start")
        elif kind == "progress":
            self.last_progress = stored_progress(message[1])
            if self.writes.due():  # the last one goes with the result
                write = partial(store.report_progress, job.id, self.last_progress)
                self.writes.run(write, f"job {job.id}: progress")
            self.runner.bus.publish(progress_event(job.id, message[1]))
        elif kind == "done":
            self._end(job, succeeded(message[1], message[2], self.last_progress))
        elif kind == "error":
            self._end(job, errored(message[1], message[2]))
        return kind in ("done", "error")

    def _beat(self, job: Job, watch: Watch) -> None:
        if self.runner.store.cancel_requested(job.id) and watch.cancel():
            self.cancel.set()  # the cooperative token: checked between frames
        self.runner.store.heartbeat(job.id)

    def _exitcode(self) -> Any:
        return self.proc.exitcode if self.proc is not None else None

    def _end(self, job: Job, outcome: Outcome, *, kill: bool = False) -> None:
        if kill:
            self.kill()
        state = record(self.runner.store, self.runner.bus, job.id, outcome)
        if state == JobState.QUEUED:
            self.runner.notify()


class LocalRunner:
    """Runs queued jobs in `slots` spawned worker processes on `device` ("cuda:1": that GPU)."""

    def __init__(
        self,
        store: JobStore,
        *,
        slots: int = 1,
        device: str = "cpu",
        bus: EventBus | None = None,
        cancel_grace_s: float = 5.0,
        log_level: str = "INFO",
        workflows: set[str] | None = None,
        log_dir: Path | None = None,
        memory_gb: float = 0.0,
    ) -> None:
        self.store = store
        self.memory_gb = memory_gb  # the device's memory budget; 0: not known, not enforced
        self.log_dir = log_dir
        self.slots = slots
        self.device = device  # what the workers' models run on, GPU index included
        self.pool = device_kind(device)  # jobs queued for this class of device, any index
        self.bus = bus or EventBus()
        self.cancel_grace_s = cancel_grace_s
        self.log_level = log_level
        self.workflows = workflows
        self.instance = f"{socket.gethostname()}/{os.getpid()}"
        self.draining = threading.Event()  # take no new jobs
        self.hard_stop = threading.Event()  # stop running jobs too (re-queued)
        self.celery_watched = False
        self._work = threading.Condition()
        self._slots = [_Slot(self, i) for i in range(slots)]

    def claim(self, worker: str) -> Job | None:
        """A queued job for this machine's device that fits what is left of it."""
        return self.store.claim(
            worker,
            self.pool,
            limit=self.slots,
            workflows=self.workflows,
            scope=f"{self.instance}/",  # this machine's slots, not every machine's
            memory_gb=self.memory_gb or None,
            devices=device_classes(self.pool),
        )

    def start(self) -> None:
        """Recover what a crash left running on this machine, then start the workers."""
        self.recover()
        for slot in self._slots:
            slot.spawn()
            slot.thread.start()

    def _lost_worker(self, worker: str | None, heartbeat_at: float | None) -> bool:
        """Is a running job's worker gone? Ours: no (our slots watch them). Another process
        of this machine: when that process no longer exists (a crashed server). Elsewhere:
        when nobody has heard from it for a minute."""
        if worker is None:
            return True
        if worker.startswith(self.instance + "/"):
            return False
        if worker.startswith("celery/") and self.celery_watched:
            return False  # the Celery backend watches its own workers
        host, _, rest = worker.partition("/")
        pid = rest.partition("/")[0]
        if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
            return True
        return heartbeat_at is None or time.time() - heartbeat_at > 60

    def recover(self) -> dict[str, int]:
        """Queue again (or fail, attempts exhausted) the jobs of lost workers."""
        recovered = self.store.recover(self._lost_worker)
        if any(recovered.values()):
            log.info("recovered jobs of lost workers: %s", recovered)
            self.notify()
        return recovered

    def notify(self, everyone: bool = False) -> None:
        """Wake an idle slot: a job was submitted or queued again (one job, one slot:
        waking them all would have every slot race for it)."""
        with self._work:
            if everyone:
                self._work.notify_all()
            else:
                self._work.notify()

    def wait_for_work(self, timeout: float = 0.5) -> None:
        with self._work:
            self._work.wait(timeout)

    def alive_workers(self) -> int:
        return sum(slot.proc is not None and slot.proc.is_alive() for slot in self._slots)

    @property
    def busy(self) -> int:
        return sum(slot.job is not None for slot in self._slots)

    def stop(self, grace_s: float = 30.0) -> None:
        """Take no new jobs; let running ones finish within `grace_s`, then stop them and
        queue them again."""
        self.draining.set()
        self.notify(everyone=True)
        deadline = time.monotonic() + grace_s
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.busy:
            log.warning("%d job(s) still running after %.0f s: queued again", self.busy, grace_s)
            self.hard_stop.set()
        for slot in self._slots:
            slot.thread.join(15)
            slot.stop()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process, alive
    return True
