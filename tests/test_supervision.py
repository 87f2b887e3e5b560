"""The job layer's failure paths: background threads outlive store errors, one supervision
policy (clock, cancel grace, polls) for every backend, routing and scheduling by what each
job's inputs need, and `vfx worker` that ends instead of restarting for ever."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from tests.conftest import run_vfx
from vfxmocap.core.config import Settings, get_settings, reload_settings
from vfxmocap.core.errors import WorkerUnavailable
from vfxmocap.jobs import supervisor
from vfxmocap.jobs.celery_backend import CeleryBackend
from vfxmocap.jobs.events import EventBus
from vfxmocap.jobs.remote import RemoteBackend
from vfxmocap.jobs.runner import LocalRunner, _device_override
from vfxmocap.jobs.service import JobService
from vfxmocap.jobs.store import CELERY_QUEUE, REMOTE_QUEUE, JobState, JobStore
from vfxmocap.samples import sample_path
from vfxmocap.workflows import Resources, get_workflow

PLUGIN = '["tests.plugin_workflows"]'


def _blip() -> OperationalError:
    return OperationalError("UPDATE jobs", {}, Exception("database is locked"))


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("VFX_WORKFLOW_MODULES", PLUGIN)
    reload_settings()
    yield


@pytest.fixture
def service(tmp_path: Path, plugin: None) -> Iterator[JobService]:
    service = JobService(Settings(data_dir=tmp_path, workers=1), memory_gb=8.0)
    yield service
    service.store.dispose()


# --- 3. background threads outlive store errors ---------------------------------------


def test_maintenance_survives_a_store_error(
    service: JobService, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[float] = []

    def recover() -> dict[str, int]:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise _blip()
        return {}

    monkeypatch.setattr(service.runner, "recover", recover)
    thread = threading.Thread(target=service._maintain, args=(0.05,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    service._maintenance.set()
    thread.join(5)
    assert len(calls) >= 3  # the rounds after the failing one still ran


def test_a_queued_job_of_an_unloaded_workflow_fails_clearly(service: JobService) -> None:
    """A Celery-routed job whose plugin is gone everywhere: it fails, saying so, and the
    other stranded jobs are still rerouted."""
    ghost = service.store.submit("ghost", {}, queue=CELERY_QUEUE, backend="celery")
    sleep = service.store.submit("sleep", {}, queue=CELERY_QUEUE, backend="celery")
    service.celery = SimpleNamespace(  # type: ignore[assignment]
        unmet=lambda workflow, needs: f"no Celery worker can run {workflow}", notify=lambda: None
    )
    service._reroute_stranded()
    failed = service.store.get(ghost.id)
    assert failed is not None and failed.state == JobState.FAILED
    assert "'ghost' is not loaded" in failed.error["message"]  # type: ignore[index]
    moved = service.store.get(sleep.id)
    assert moved is not None and moved.backend == "local"
    assert moved.route == "no Celery worker can run sleep; local workers (cpu)"


class _FlakyStore(JobStore):
    """Heartbeats and progress writes fail for a while, as during a database blip."""

    failures = 0

    def heartbeat(self, job_id: str) -> bool:
        return self._flaky(super().heartbeat, job_id)

    def report_progress(self, job_id: str, progress: dict[str, Any]) -> bool:
        return self._flaky(super().report_progress, job_id, progress)

    def _flaky(self, call: Any, *args: Any) -> bool:
        if self.failures > 0:
            self.failures -= 1
            raise _blip()
        return bool(call(*args))


def test_a_store_error_during_a_heartbeat_does_not_restart_the_job(
    tmp_path: Path, plugin: None
) -> None:
    store = _FlakyStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    runner = LocalRunner(store, slots=1)
    job = store.submit("sleep", {"seconds": 4.5}, timeout_s=60)
    runner.start()
    try:
        while (running := store.get(job.id)) and running.state == JobState.QUEUED:
            time.sleep(0.05)
        store.failures = 4  # the next heartbeats and progress writes fail
        final = _wait_final(store, job.id, 60)
    finally:
        runner.stop(5)
        store.dispose()
    assert final.state == JobState.SUCCEEDED and final.attempt == 1, final.error
    assert store.failures == 0  # the errors did happen


def _wait_final(store: JobStore, job_id: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while (job := store.get(job_id)) is not None and job.state not in (
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.CANCELLED,
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


def test_persist_retries_transient_errors_then_gives_up() -> None:
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise _blip()
        return "ok"

    assert supervisor.persist(flaky, "test") == "ok" and len(attempts) == 3
    with pytest.raises(OperationalError):
        supervisor.persist(lambda: (_ for _ in ()).throw(_blip()), "test", give_up_s=0.1)


# --- 10. one supervisor: the clock, cancel grace and outcomes -------------------------


def test_the_clock_starts_when_the_worker_reports_it_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(supervisor.time, "monotonic", lambda: now[0])
    watch = supervisor.Watch(limit_s=10, grace_s=2)
    now[0] = 108.0  # spawning, queueing, uploads: not the job's time
    assert watch.start() and not watch.start()
    now[0] = 117.0
    assert watch.verdict() is None  # 9 s of execution
    now[0] = 118.5
    verdict = watch.verdict()
    assert verdict is not None and verdict.error["code"] == "timeout"  # type: ignore[index]
    assert not verdict.retryable


def test_cancel_then_kill_after_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(supervisor.time, "monotonic", lambda: now[0])
    watch = supervisor.Watch(limit_s=100, grace_s=2)
    watch.start()
    assert watch.cancel() and not watch.cancel()  # the cooperative token goes out once
    now[0] = 1.5
    assert watch.verdict() is None
    now[0] = 2.5
    assert watch.verdict() == supervisor.CANCELLED


def test_outcomes_map_the_same_for_every_backend() -> None:
    from vfxmocap.core.errors import Cancelled, InsufficientMemory

    assert supervisor.failure(Cancelled("stop")) == supervisor.CANCELLED
    oom = supervisor.failure(InsufficientMemory("oom"))
    assert oom.state == "failed" and oom.retryable
    bug = supervisor.failure(KeyError("x"))
    assert bug.error["message"] == "internal error: KeyError: 'x'" and not bug.retryable  # type: ignore[index]
    assert supervisor.lost("gone").retryable


class _FakeRemote:
    """The Python client of a remote server that is flaky, or ignores cancel."""

    def __init__(self, views: list[Any]) -> None:
        self.views, self.submitted, self.cancels = views, 0, 0

    def __enter__(self) -> _FakeRemote:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def submit(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.submitted += 1
        return {"id": "r1"}

    def job(self, remote_id: str) -> dict[str, Any]:
        view = self.views.pop(0) if len(self.views) > 1 else self.views[0]
        if isinstance(view, Exception):
            raise view
        return dict(view)

    def cancel(self, remote_id: str) -> dict[str, Any]:
        self.cancels += 1
        return {}


def _remote(tmp_path: Path, fake: _FakeRemote, grace_s: float = 5.0) -> RemoteBackend:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    backend = RemoteBackend(
        store, "http://remote", None, jobs_dir=tmp_path, bus=EventBus(), cancel_grace_s=grace_s
    )
    backend.client = lambda: fake  # type: ignore[assignment,method-assign,return-value]
    return backend


def test_a_failed_poll_is_retried_not_resubmitted(tmp_path: Path, plugin: None) -> None:
    down = WorkerUnavailable("cannot reach http://remote")
    running = {"state": "running", "progress": {"stage": "sleep", "percent": 50}}
    done = {"state": "succeeded", "outputs": {}, "summary": {"slept_s": 1}, "progress": {}}
    fake = _FakeRemote([running, down, down, running, done])
    backend = _remote(tmp_path, fake)
    job = backend.store.submit("sleep", {"seconds": 1}, queue=REMOTE_QUEUE)
    claimed = backend.store.claim("remote/0", REMOTE_QUEUE)
    assert claimed is not None
    outcome = _bounded(lambda: backend._run(claimed), 30)
    assert outcome == supervisor.succeeded({}, {"slept_s": 1}, {})
    assert fake.submitted == 1  # the first copy was followed, not sent again
    backend.store.dispose()
    assert job.id == claimed.id


def test_a_remote_job_ignoring_cancel_ends_after_the_grace(tmp_path: Path, plugin: None) -> None:
    fake = _FakeRemote([{"state": "running", "progress": {}}])  # cancel never takes effect
    backend = _remote(tmp_path, fake, grace_s=0.5)
    job = backend.store.submit("sleep", {"seconds": 60}, queue=REMOTE_QUEUE)
    claimed = backend.store.claim("remote/0", REMOTE_QUEUE)
    assert claimed is not None
    backend.store.cancel(job.id)
    started = time.monotonic()
    assert _bounded(lambda: backend._run(claimed), 20) == supervisor.CANCELLED
    assert time.monotonic() - started < 5 and fake.cancels >= 1
    backend.store.dispose()


def test_a_restart_follows_the_remote_job_again_instead_of_running_it_twice(
    tmp_path: Path, plugin: None
) -> None:
    """The server stops while a remote job runs: its follower ends (the remote copy is
    not cancelled) and the job waits, queued, with the remote id recorded. The restarted
    server follows that remote job to its end and submits nothing."""
    running = _FakeRemote([{"state": "running", "progress": {"stage": "sleep"}}])
    first = _remote(tmp_path, running)
    job = first.store.submit("sleep", {"seconds": 60}, queue=REMOTE_QUEUE)
    first.start()
    deadline = time.monotonic() + 20
    while running.submitted == 0 or (first.store.get(job.id) or job).handle is None:
        assert time.monotonic() < deadline, "the job was never sent"
        time.sleep(0.05)
    first.stop()
    assert not any(thread.is_alive() for thread in first._threads)  # stop was obeyed
    waiting = first.store.get(job.id)
    assert waiting is not None and waiting.state == JobState.QUEUED and waiting.handle == "r1"
    assert running.cancels == 0
    first.store.dispose()

    done = {"state": "succeeded", "outputs": {}, "summary": {"slept_s": 60}, "progress": {}}
    finished = _FakeRemote([done])
    second = _remote(tmp_path, finished)
    second.start()
    try:
        final = _wait_final(second.store, job.id, 20)
    finally:
        second.stop()
        second.store.dispose()
    assert final.state == JobState.SUCCEEDED and final.summary == {"slept_s": 60}
    assert finished.submitted == 0  # followed, not run a second time


def _bounded(call: Any, timeout: float) -> Any:
    """Run `call` in a thread; fail (not hang) when it outlives `timeout`."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert result, f"still running after {timeout} s"
    return result[0]


# --- 9. requirements from the inputs ---------------------------------------------------

SWAP_FILES = {
    "sources": [str(sample_path("astronaut"))],
    "target": str(sample_path("carphone")),
    "output": "/tmp/out.mp4",
}


def test_a_swap_needs_the_models_of_its_options() -> None:
    swap = get_workflow("swap")
    plain = swap.requirements(SWAP_FILES)
    assert plain.models == ("mediapipe-face-detection", "mediapipe-face-mesh")
    neural = swap.requirements({**SWAP_FILES, "options": {"engine": "inswapper", "enhance": True}})
    assert {"inswapper-128", "arcface-w600k-r50", "gfpgan-1.4"} <= set(neural.models)
    assert get_workflow("probe").requirements({"input": "x.png"}) == get_workflow("probe").resources


def _fleet(*adverts: dict[str, Any]) -> Any:
    """A Celery backend whose workers advertise `adverts` (as in Redis)."""
    fake = SimpleNamespace(workers=lambda: list(adverts), notify=lambda: None)
    fake.unmet = lambda workflow, needs: CeleryBackend.unmet(fake, workflow, needs)  # type: ignore[arg-type]
    return fake


CPU_WORKER = {
    "name": "w1",
    "device": "cpu",
    "memory_gb": 16.0,
    "models": ["mediapipe-face-detection", "mediapipe-face-mesh"],
    "workflows": ["swap", "sleep"],
}


def test_an_inswapper_swap_goes_only_to_a_worker_with_the_weights(service: JobService) -> None:
    service.settings.backends = ["celery", "local"]
    service.celery = _fleet(CPU_WORKER)
    swap = get_workflow("swap")
    plain = swap.requirements(SWAP_FILES)
    neural = swap.requirements({**SWAP_FILES, "options": {"engine": "inswapper"}})
    assert service.route("swap", plain)[1] == "celery"
    device, backend, why = service.route("swap", neural)
    assert (device, backend) == ("cpu", "local")
    assert why.startswith("no Celery worker can run swap: w1 needs model(s) inswapper-128")
    ready = {**CPU_WORKER, "name": "w2", "models": [*CPU_WORKER["models"], *neural.models]}
    service.celery = _fleet(CPU_WORKER, ready)
    _, backend, why = service.route("swap", neural)
    assert backend == "celery" and "with mediapipe-face-detection" in why


def test_generation_goes_only_where_the_memory_is(service: JobService) -> None:
    service.settings.backends = ["celery", "local"]
    service.celery = _fleet(CPU_WORKER)
    big = Resources(memory_gb=24.0)
    with pytest.raises(WorkerUnavailable) as caught:
        service.route("sleep", big)
    assert "w1 needs 24 GB of memory (has 16 GB)" in caught.value.message
    assert "local workers (cpu): sleep needs 24 GB of memory (has 8 GB)" in caught.value.message
    gpu = {**CPU_WORKER, "name": "g1", "device": "cuda", "memory_gb": 80.0}
    service.celery = _fleet(CPU_WORKER, gpu)
    assert service.route("sleep", big)[2] == "a Celery worker can run it (24 GB)"
    with pytest.raises(WorkerUnavailable, match="needs a GPU"):
        service.settings.backends = ["local"]
        service.route("sleep", Resources(device="gpu"))


def test_submit_records_the_needs_and_the_route(service: JobService) -> None:
    job = service.submit("sleep", {"seconds": 0})
    assert job.needs == Resources(device="cpu", memory_gb=0.0, timeout_s=3600.0)
    assert job.to_dict()["needs"] == {"device": "cpu", "memory_gb": 0.0, "models": []}
    assert job.route == "local workers (cpu)"


def test_a_cpu_job_in_a_gpu_slot_runs_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VFX_DEVICE", "cuda")
    reload_settings()
    with _device_override("cpu"):
        assert get_settings().device == "cpu"
    assert get_settings().device == "cuda"


# --- 6. `vfx worker` ends instead of restarting for ever --------------------------------


def test_vfx_worker_without_celery_ends_at_once_naming_the_extra(tmp_path: Path) -> None:
    shadow = "raise ModuleNotFoundError(\"No module named 'celery'\", name='celery')\n"
    (tmp_path / "celery.py").write_text(shadow)
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    started = time.monotonic()
    result = run_vfx(
        "worker", "--broker", "redis://127.0.0.1:9/0", env={"PYTHONPATH": path}, timeout=60
    )
    assert time.monotonic() - started < 60
    assert result.returncode == 4, result.stderr
    assert "pip install 'vfxmocap[distributed]'" in result.stderr


def test_a_worker_process_that_keeps_dying_backs_off_then_gives_up() -> None:
    from vfxmocap.jobs.fleet_worker import Restarts, supervise

    waits: list[float] = []
    restarts = Restarts(healthy_s=30, first_wait_s=1, max_wait_s=4, give_up_after=5)
    with pytest.raises(WorkerUnavailable, match="exited 5 times in a row") as caught:
        supervise(
            [sys.executable, "-c", "raise SystemExit(3)"],
            dict(os.environ),
            restarts=restarts,
            sleep=waits.append,
        )
    assert waits == [1, 2, 4, 4]  # doubling, capped
    assert "last exit code 3" in caught.value.message


@pytest.mark.parametrize(
    ("max_attempts", "cancel", "expected"),
    [(2, False, "queued"), (1, False, "failed"), (2, True, "cancelled")],
)
def test_a_hard_stop_announces_what_the_job_became(
    tmp_path: Path, plugin: None, max_attempts: int, cancel: bool, expected: str
) -> None:
    """A server stopping past its grace kills the running job: queued again when attempts
    are left, failed when they are used up, cancelled when a cancel was pending; the event
    says which (a follower must not wait for a job announced as queued that has ended)."""
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    bus = EventBus()
    events: list[dict[str, Any]] = []
    bus.subscribe(events.append)
    runner = LocalRunner(store, slots=1, bus=bus, cancel_grace_s=60.0)
    job = store.submit("sleep", {"seconds": 30, "ignore_cancel": True}, max_attempts=max_attempts)
    runner.start()
    try:
        while (running := store.get(job.id)) and running.state == JobState.QUEUED:
            time.sleep(0.05)
        if cancel:
            store.cancel(job.id)
    finally:
        runner.stop(0.0)
    final = store.get(job.id)
    store.dispose()
    assert final is not None and final.state.value == expected
    ends = [e["type"] for e in events if e["job_id"] == job.id and e["type"] != "progress"]
    assert ends[-1] == expected, ends
