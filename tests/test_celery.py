"""Scale-out on Celery + Redis: a real redis-server, real `vfx worker` processes, and a
server (`vfx serve`) with no local workers, so every job must go through Celery."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ALLOW_SKIP
from tests.servers import RedisServer, ServerProcess, WorkerProcess, wait_for_worker
from vfxmocap.client import Client
from vfxmocap.core.errors import WorkerUnavailable
from vfxmocap.samples import sample_path

if shutil.which("redis-server") is None:
    if ALLOW_SKIP:
        pytest.skip(
            "redis-server is not installed (VFX_TEST_ALLOW_SKIP=1)", allow_module_level=True
        )
    pytest.fail("redis-server is not installed: apt-get install redis-server (.ci/run does)")


class Fleet:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.redis = RedisServer(root / "redis")
        self.worker: WorkerProcess | None = None
        self.server: ServerProcess | None = None

    def client(self) -> Client:
        assert self.server is not None
        return self.server.client()

    def advert(self, name: str, timeout: float = 90) -> dict:
        with self.client() as client:
            return wait_for_worker(client, name, timeout)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    fleet = Fleet(root)
    with fleet.redis:
        fleet.worker = WorkerProcess(fleet.redis.url, "w1", root).start()
        fleet.server = ServerProcess(
            root / "server", workers=0, VFX_BROKER_URL=fleet.redis.url, VFX_CANCEL_GRACE_S="1"
        ).start()
        try:
            fleet.advert("w1")
            yield fleet
        finally:
            fleet.server.terminate()
            fleet.worker.stop()


def _running(client: Client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (job := client.job(job_id))["state"] != "running":
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def test_worker_advertises_its_capabilities(fleet: Fleet) -> None:
    advert = fleet.advert("w1")
    assert advert["device"] == "cpu" and advert["queue"] == "vfx.w.w1"
    assert {"swap", "mocap", "sleep"} <= set(advert["workflows"])
    assert "sleep_gpu" not in advert["workflows"]  # a CPU worker cannot take a GPU job
    assert "mediapipe-pose" in advert["models"]
    with fleet.client() as client:
        health = client._request("GET", "/workers")
    assert any(name.startswith("w1@") and ok for name, ok in health["celery_ping"].items())


def test_face_swap_and_mocap_run_on_celery(fleet: Fleet, tmp_path: Path) -> None:
    with fleet.client() as client:
        swap = client.submit_files(
            "swap", {"sources": [sample_path("astronaut")], "target": sample_path("carphone")}
        )
        mocap = client.submit_files(
            "mocap", {"input": sample_path("bikes"), "pose_video": True, "merge_takes": True}
        )
        done = client.wait(swap["id"], timeout=300)
        assert done["state"] == "succeeded", done
        assert done["backend"] == "celery" and done["worker"] == "celery/w1"
        assert done["summary"]["faces_swapped"] == 120 and done["progress"]["percent"] == 100
        out = client.download(swap["id"], "output", tmp_path)
        assert out.stat().st_size > 10_000
        done = client.wait(mocap["id"], timeout=300)
        assert done["state"] == "succeeded", done
        assert set(done["outputs"]) == {"bvh", "json", "pose_video", "takes"}
        assert "a Celery worker can run it" in done["route"]


def test_progress_events_travel_through_redis(fleet: Fleet) -> None:
    with fleet.client() as client:
        job = client.submit("sleep", {"seconds": 2})
        _running(client, job["id"])
        time.sleep(1.0)
        mid = client.job(job["id"])
        assert mid["progress"]["stage"] == "sleep" and 0 < mid["percent"] < 100
        assert client.wait(job["id"], timeout=60)["state"] == "succeeded"


def test_cancel_a_running_celery_job(fleet: Fleet) -> None:
    with fleet.client() as client:
        job = client.submit("sleep", {"seconds": 30})
        _running(client, job["id"])
        client.cancel(job["id"])
        assert client.wait(job["id"], timeout=20)["state"] == "cancelled"
        fleet.advert("w1")  # stopped by its token: the same process is free again


def test_a_job_ignoring_cancel_is_killed_and_the_worker_restarts(fleet: Fleet) -> None:
    with fleet.client() as client:
        job = client.submit("sleep", {"seconds": 60, "ignore_cancel": True})
        _running(client, job["id"])
        boot = _advert_boot(fleet)
        started = time.monotonic()
        client.cancel(job["id"])
        assert client.wait(job["id"], timeout=30)["state"] == "cancelled"
        assert time.monotonic() - started < 15
        fleet.advert("w1")
        assert _advert_boot(fleet) != boot  # a fresh worker process
        after = client.submit("sleep", {"seconds": 0.1})
        assert client.wait(after["id"], timeout=120)["state"] == "succeeded"


def _advert_boot(fleet: Fleet) -> str:
    with fleet.client() as client:
        workers = client._request("GET", "/workers")["celery"]
    boot: str = next(w["boot"] for w in workers if w["name"] == "w1")
    return boot


def test_kill_9_of_a_worker_mid_job_loses_nothing(fleet: Fleet) -> None:
    with fleet.client() as client:
        job = client.submit("sleep", {"seconds": 8})
        _running(client, job["id"])
        time.sleep(1.0)
        workers = client._request("GET", "/workers")["celery"]
        pid = next(w["pid"] for w in workers if w["name"] == "w1")
        os.kill(pid, signal.SIGKILL)  # the Celery worker process, mid-job
        final = client.wait(job["id"], timeout=180)
        assert final["state"] == "succeeded" and final["attempt"] == 2, final["error"]
        assert client.queue()["states"]["running"] == 0


def test_no_capable_worker_is_a_clear_503(fleet: Fleet) -> None:
    with fleet.client() as client, pytest.raises(WorkerUnavailable, match="no worker can run"):
        client.submit("sleep_gpu", {})


def test_an_inswapper_swap_goes_only_to_a_worker_with_its_weights(fleet: Fleet) -> None:
    """w1 advertises its ready models; the inswapper weights are not among them, so a
    swap that needs them is refused at once, naming them (not failed later on w1)."""
    assert "inswapper-128" not in fleet.advert("w1")["models"]
    inputs = {
        "sources": [sample_path("astronaut")],
        "target": sample_path("carphone"),
        "options": {"engine": "inswapper"},
    }
    with fleet.client() as client, pytest.raises(WorkerUnavailable) as refused:
        client.submit_files("swap", inputs)
    assert "w1 needs model(s) inswapper-128, arcface-w600k-r50" in refused.value.message


def test_fallback_to_local_workers_records_why(tmp_path: Path, fleet: Fleet) -> None:
    """A server with local workers too: a job no Celery worker can run (the fleet here
    does not have the workflow) runs locally, and the job says why."""
    server = ServerProcess(
        tmp_path / "server",
        workers=1,
        VFX_BROKER_URL=fleet.redis.url,
        VFX_WORKFLOW_MODULES=json.dumps(["tests.plugin_workflows", "tests.plugin_local"]),
    )
    with server, server.client() as client:
        job = client.submit("sleep_local", {"seconds": 0.1})
        final = client.wait(job["id"], timeout=120)
    assert final["state"] == "succeeded" and final["backend"] == "local"
    assert final["route"].startswith("no Celery worker can run sleep_local")


def test_a_redis_outage_mid_job_neither_cancels_nor_fails_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis restarts while a job runs: the cancel check reads "not cancelled" and asks
    again next time, progress events are dropped, each logged once; when Redis is back a
    cancel is seen again."""
    from vfxmocap.core.progress import ProgressEvent
    from vfxmocap.jobs.celery_app import ProgressPublisher, RedisCancel, cancel_key, redis_client

    broker = RedisServer(tmp_path / "redis")
    client = redis_client(broker.url)
    cancel = RedisCancel(client, "j1", every_s=0.0)
    publish = ProgressPublisher(client, "ns", "j1", 1)
    event = ProgressEvent("sleep", 1, 2, 50.0, None, job_id="j1")
    with broker:
        assert cancel.is_set() is False
    with caplog.at_level("INFO", logger="vfxmocap.jobs.celery"):
        for _ in range(3):  # redis-server is down now
            assert cancel.is_set() is False
            publish(event)
        with broker:  # back on the same port, empty
            publish(event)
            client.set(cancel_key("j1"), "1")
            assert cancel.is_set() is True
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2, warnings  # one per outage and what it stopped, not per call
    assert any("check for a cancel" in w for w in warnings)
    assert any("publish progress" in w for w in warnings)


def test_two_servers_never_hand_one_celery_worker_two_jobs(tmp_path: Path) -> None:
    """Two servers of one job store see the same idle worker (its advert says busy only
    once the task starts there): the store counts the jobs running on that worker, so one
    claim wins and the other server finds the worker taken."""
    from vfxmocap.jobs.celery_app import redis_client, worker_key
    from vfxmocap.jobs.celery_backend import CeleryBackend
    from vfxmocap.jobs.events import EventBus
    from vfxmocap.jobs.store import CELERY_QUEUE, JobStore

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with RedisServer(tmp_path / "redis") as broker:
        advert = {"name": "w1", "workflows": ["sleep"], "boot": "b1", "busy": "", "device": "cpu"}
        redis_client(broker.url).set(worker_key("w1"), json.dumps(advert), ex=60)
        servers = [CeleryBackend(JobStore(url), broker.url, bus=EventBus()) for _ in range(2)]
        store = servers[0].store
        jobs = [store.submit("sleep", {"seconds": 1}, queue=CELERY_QUEUE) for _ in range(2)]
        for server in servers:
            server._dispatch_once()
        states = [store.get(job.id).state.value for job in jobs]  # type: ignore[union-attr]
        for server in servers:
            server.store.dispose()
    assert sorted(states) == ["queued", "running"]
    assert [len(server.assigned) for server in servers] in ([1, 0], [0, 1])
