"""The persistent job store: ordering, atomic per-device limits, retries, cancel, recovery.
Every test runs on SQLite (the default) and on PostgreSQL (several machines)."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from vfxmocap.core.errors import InvalidParams
from vfxmocap.jobs.store import JobState, JobStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty job database: a SQLite file, or a fresh database on the session's cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    url: str = request.getfixturevalue("postgres").new_database()
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[JobStore]:
    store = JobStore(store_url)
    yield store
    store.dispose()


def test_submit_and_read_back(store: JobStore) -> None:
    job = store.submit("transcode", {"input": "a.mp4", "output": "b.mp4"}, priority=2)
    again = store.get(job.id)
    assert again is not None and again.state == JobState.QUEUED
    assert again.inputs == {"input": "a.mp4", "output": "b.mp4"} and again.priority == 2
    assert store.get("missing") is None


def test_higher_priority_first_then_oldest(store: JobStore) -> None:
    low = store.submit("w", {}, priority=0)
    high = store.submit("w", {}, priority=5)
    low2 = store.submit("w", {}, priority=0)
    assert store.position(high.id) == 0 and store.position(low.id) == 1
    assert store.position(low2.id) == 2
    order = [store.claim("w1", limit=10).id for _ in range(3)]  # type: ignore[union-attr]
    assert order == [high.id, low.id, low2.id]
    assert store.claim("w1", limit=10) is None


def test_limit_per_device(store: JobStore) -> None:
    for _ in range(3):
        store.submit("w", {}, queue="cuda:0")
    store.submit("w", {}, queue="cpu")
    assert store.claim("a", queue="cuda:0", limit=1) is not None
    assert store.claim("b", queue="cuda:0", limit=1) is None  # the GPU's slot is taken
    assert store.claim("c", queue="cpu", limit=1) is not None  # another device is free


def _claim_many(url: str, device: str, out: multiprocessing.Queue, start: Barrier) -> None:  # type: ignore[type-arg]
    store = JobStore(url)
    store.stats()  # connected before the race starts
    start.wait(60)  # all at once: a real race, not six processes starting in turn
    got = [store.claim(f"worker-{os.getpid()}", queue=device, limit=2) for _ in range(5)]
    out.put(sum(job is not None for job in got))


def test_limit_holds_across_processes(store: JobStore) -> None:
    """Six processes race for a device with two slots: exactly two jobs start."""
    url = store.url
    for _ in range(20):
        store.submit("w", {}, queue="cuda:0")
    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    start = ctx.Barrier(6)
    procs = [
        ctx.Process(target=_claim_many, args=(url, "cuda:0", results, start)) for _ in range(6)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sum(results.get() for _ in procs) == 2
    assert store.stats()["running"] == 2


def test_retryable_failure_backs_off_then_fails_for_good(store: JobStore) -> None:
    job = store.submit("w", {}, max_attempts=2)
    store.claim("a")
    assert (
        store.fail(job.id, {"code": "insufficient_memory"}, retryable=True, backoff_s=0.2)
        == JobState.QUEUED
    )
    assert store.claim("a") is None  # still backing off
    time.sleep(0.25)
    assert store.claim("a") is not None
    assert store.fail(job.id, {"code": "insufficient_memory"}, retryable=True) == JobState.FAILED
    final = store.get(job.id)
    assert (
        final is not None and final.attempt == 2 and final.error == {"code": "insufficient_memory"}
    )


def test_input_errors_never_retry(store: JobStore) -> None:
    job = store.submit("w", {}, max_attempts=5)
    store.claim("a")
    assert store.fail(job.id, {"code": "input_error"}, retryable=False) == JobState.FAILED


def test_cancel_queued_and_running(store: JobStore) -> None:
    queued = store.submit("w", {})
    running = store.submit("w", {})
    store.claim("a", limit=1)  # takes `queued` (older)
    assert store.cancel(running.id) == JobState.CANCELLED  # never started
    assert store.cancel(queued.id) == JobState.RUNNING  # asked to stop
    assert store.cancel_requested(queued.id)
    assert store.mark_cancelled(queued.id)
    assert store.get(queued.id).state == JobState.CANCELLED  # type: ignore[union-attr]


def test_succeed_records_outputs_and_summary(store: JobStore) -> None:
    job = store.submit("w", {})
    store.claim("a")
    store.report_progress(job.id, {"stage": "frames", "value": 5, "max": 10, "percent": 50.0})
    assert store.get(job.id).progress["percent"] == 50.0  # type: ignore[union-attr,index]
    assert store.succeed(job.id, {"video": "/out/a.mp4"}, {"frames": 10})
    done = store.get(job.id)
    assert done is not None and done.state == JobState.SUCCEEDED
    assert done.outputs == {"video": "/out/a.mp4"} and done.summary == {"frames": 10}
    assert not store.succeed(job.id, {}, {})  # only a running job can finish


def _claim_and_die(url: str) -> None:
    JobStore(url).claim("doomed-worker")
    os._exit(9)  # a crash: no cleanup, no finally


def test_recover_after_a_crash(store: JobStore) -> None:
    url = store.url
    again = store.submit("w", {}, max_attempts=2)
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_claim_and_die, args=(url,))
    proc.start()
    proc.join(60)
    assert store.get(again.id).state == JobState.RUNNING  # type: ignore[union-attr]
    assert store.recover() == {"requeued": 1, "failed": 0}
    job = store.get(again.id)
    assert job is not None and job.state == JobState.QUEUED and job.attempt == 1
    assert job.error["code"] == "worker_unavailable"  # type: ignore[index]
    store.claim("w2")
    assert store.recover() == {"requeued": 0, "failed": 1}  # attempts exhausted
    assert store.get(again.id).state == JobState.FAILED  # type: ignore[union-attr]


def test_recover_spares_live_workers(store: JobStore) -> None:
    job = store.submit("w", {})
    store.claim("alive")
    assert store.recover(lambda worker, beat: worker != "alive") == {"requeued": 0, "failed": 0}
    assert store.get(job.id).state == JobState.RUNNING  # type: ignore[union-attr]


def test_history_pages_and_filters(store: JobStore) -> None:
    ids = [store.submit("swap" if i % 2 else "mocap", {}).id for i in range(7)]
    page, cursor = store.list(limit=3)
    assert [j.id for j in page] == ids[::-1][:3] and cursor is not None
    page2, _ = store.list(limit=3, cursor=cursor)
    assert [j.id for j in page2] == ids[::-1][3:6]
    swaps, _ = store.list(workflow="swap", limit=10)
    assert len(swaps) == 3
    with pytest.raises(InvalidParams):
        store.list(state="bogus")


def test_retry_and_delete(store: JobStore) -> None:
    job = store.submit("w", {})
    store.claim("a")
    store.fail(job.id, {"code": "internal"})
    again = store.retry(job.id)
    assert again is not None and again.state == JobState.QUEUED and again.attempt == 0
    assert store.claim("a") is not None
    assert not store.delete(job.id)  # running
    store.succeed(job.id, {}, {})
    assert store.delete(job.id) and store.get(job.id) is None


def test_a_slow_listener_loses_progress_not_endings() -> None:
    import asyncio

    from vfxmocap.jobs.events import AsyncListener, job_event

    async def scenario() -> list[str]:
        listener = AsyncListener(asyncio.get_running_loop(), maxsize=3)
        for kind in ("progress", "succeeded", "progress", "progress", "failed"):
            listener._put(job_event(kind, "j"))
        return [(await listener.get())["type"] for _ in range(3)]

    assert asyncio.run(scenario()) == ["succeeded", "progress", "failed"]


def test_a_cancelled_job_whose_worker_dies_ends_cancelled(store: JobStore) -> None:
    job = store.submit("w", {})
    store.claim("w1")
    store.cancel(job.id)
    lost = {"code": "worker_unavailable", "message": "gone"}
    assert store.fail(job.id, lost, retryable=True) == JobState.CANCELLED


def test_each_machine_has_its_own_device_limit(store: JobStore) -> None:
    for _ in range(3):
        store.submit("w", {}, queue="cuda")
    a = store.claim("hostA/1/slot0", "cuda", limit=1, scope="hostA/1/")
    b = store.claim("hostB/7/slot0", "cuda", limit=1, scope="hostB/7/")
    assert a is not None and b is not None  # one GPU each, one job each
    assert store.claim("hostA/1/slot1", "cuda", limit=1, scope="hostA/1/") is None


# The jobs table as the first release made it (no backend, route or needs columns).
FIRST_RELEASE_SCHEMA = """
CREATE TABLE jobs (
    id VARCHAR(32) NOT NULL PRIMARY KEY, workflow VARCHAR(64) NOT NULL, inputs TEXT NOT NULL,
    priority INTEGER NOT NULL, state VARCHAR(16) NOT NULL, device VARCHAR(32) NOT NULL,
    attempt INTEGER NOT NULL, max_attempts INTEGER NOT NULL, timeout_s FLOAT,
    not_before FLOAT NOT NULL, created_at FLOAT NOT NULL, started_at FLOAT,
    finished_at FLOAT, heartbeat_at FLOAT, worker VARCHAR(64),
    cancel_requested BOOLEAN NOT NULL, progress TEXT, error TEXT, outputs TEXT, summary TEXT
);
CREATE INDEX ix_jobs_workflow ON jobs (workflow);
CREATE INDEX ix_jobs_state ON jobs (state);
CREATE INDEX ix_jobs_created_at ON jobs (created_at);
INSERT INTO jobs VALUES ('a' || hex(randomblob(15)), 'sleep', '{"seconds": 1}', 0, 'queued',
    'cpu', 0, 3, 60.0, 0.0, 1.0, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL);
INSERT INTO jobs VALUES ('b' || hex(randomblob(15)), 'probe', '{}', 0, 'succeeded', 'cpu',
    1, 3, NULL, 0.0, 2.0, 2.0, 3.0, 3.0, 'w', 0, NULL, NULL, '{"report": "/r.json"}', '{}');
"""


def test_a_database_of_the_first_release_upgrades_in_place(tmp_path: Path) -> None:
    import sqlite3

    from vfxmocap.jobs import schema
    from vfxmocap.workflows import Resources

    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript(FIRST_RELEASE_SCHEMA)
    store = JobStore(f"sqlite:///{path}")
    (done,), _ = store.list(state="succeeded")
    assert done.outputs == {"report": "/r.json"} and done.needs == Resources(memory_gb=0.0)
    old_job = store.claim("w1", limit=5)  # the old queued job runs, with the new columns
    assert old_job is not None and old_job.workflow == "sleep" and old_job.backend == "local"
    new = store.submit("w", {}, route="why", needs=Resources(memory_gb=2.0, models=("m",)))
    again = store.get(new.id)
    assert again is not None and again.route == "why" and again.needs.models == ("m",)
    store.dispose()
    reopened = JobStore(f"sqlite:///{path}")  # a second open changes nothing
    assert reopened.stats() == {
        "queued": 1,
        "running": 1,
        "succeeded": 1,
        "failed": 0,
        "cancelled": 0,
    }
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM vfx_schema").fetchall() == [(schema.VERSION,)]
        indexes = {row[1] for row in db.execute("PRAGMA index_list(jobs)")}
    assert "ix_jobs_queue" in indexes
    reopened.dispose()


def test_claims_respect_the_memory_budget_and_device_class(store: JobStore) -> None:
    from vfxmocap.workflows import Resources, device_classes

    big = store.submit("w", {}, needs=Resources(memory_gb=6.0))
    second = store.submit("w", {}, needs=Resources(memory_gb=6.0))
    small = store.submit("w", {}, needs=Resources(memory_gb=1.0))
    assert store.claim("a/0", limit=3, memory_gb=8.0) == store.get(big.id)
    took = store.claim("a/1", limit=3, memory_gb=8.0)  # 6 + 6 > 8: the small one fits
    assert took is not None and took.id == small.id
    assert store.claim("a/2", limit=3, memory_gb=8.0) is None
    assert store.position(second.id) == 0  # it waits for memory, first in line
    gpu = store.submit("w", {}, queue="cpu2", needs=Resources(device="gpu"))
    cpu_only = device_classes("cpu")
    assert store.claim("c/0", "cpu2", limit=3, devices=cpu_only) is None
    assert store.claim("g/0", "cpu2", limit=3, devices=device_classes("cuda")).id == gpu.id  # type: ignore[union-attr]


def test_claims_take_only_jobs_whose_models_are_ready(store: JobStore) -> None:
    from vfxmocap.workflows import Resources

    store.submit("swap", {}, needs=Resources(models=("inswapper-128",)))
    plain = store.submit("swap", {}, needs=Resources(models=("mediapipe-face-mesh",)))
    took = store.claim("w", limit=5, models={"mediapipe-face-mesh"})
    assert took is not None and took.id == plain.id
    assert store.claim("w", limit=5, models={"mediapipe-face-mesh"}) is None
