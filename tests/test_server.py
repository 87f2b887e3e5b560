"""`vfx serve` as a process: kill -9 mid-job loses nothing, SIGTERM drains, the CLI
submits and follows jobs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import run_vfx
from tests.servers import ServerProcess
from vfxmocap.client import Client
from vfxmocap.core.errors import InputError, WorkerUnavailable
from vfxmocap.samples import sample_path


def _wait_running(client: Client, job_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while client.job(job_id)["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_kill_9_mid_job_loses_no_job(tmp_path: Path) -> None:
    """Three kills of the server while a job runs; after each restart the job runs again.
    Every job ends succeeded (or failed with a reason once attempts run out); none is lost
    or left running."""
    server = ServerProcess(tmp_path)
    ids = []
    for _ in range(3):
        server.start()
        with server.client() as client:
            job = client.submit("sleep", {"seconds": 20}, timeout_s=60)
            ids.append(job["id"])
            _wait_running(client, job["id"])
        server.kill()
    server.start()
    try:
        with server.client() as client:
            extra = client.submit("sleep", {"seconds": 0.2})["id"]
            states = {}
            for job_id in [*ids, extra]:
                final = client.wait(job_id, timeout=240)
                states[job_id] = final
                assert final["state"] in ("succeeded", "failed")
                if final["state"] == "failed":
                    assert final["error"]["code"] == "worker_unavailable"
            counts = client.queue()["states"]
    finally:
        server.terminate()
    assert counts["running"] == 0 and counts["queued"] == 0
    assert sum(counts.values()) == len(ids) + 1  # none lost, none duplicated
    # the last killed job was interrupted once and then completed
    assert states[ids[-1]]["state"] == "succeeded" and states[ids[-1]]["attempt"] == 2


def test_sigterm_drains_then_requeues(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, VFX_SHUTDOWN_GRACE_S="1")
    with server:
        with server.client() as client:
            quick = client.submit("sleep", {"seconds": 0.1})["id"]
            client.wait(quick, timeout=60)
            slow = client.submit("sleep", {"seconds": 30, "ignore_cancel": True})["id"]
            _wait_running(client, slow)
        started = time.monotonic()
        assert server.terminate() in (0, -15)  # uvicorn re-raises SIGTERM after its shutdown
        assert time.monotonic() - started < 20
    assert "queued again" in (tmp_path / "server.log").read_text()
    server.start()
    try:
        with server.client() as client:
            job = client.job(slow)
            assert job["state"] in ("queued", "running")  # queued again, not lost
            assert client.job(quick)["state"] == "succeeded"
            client.cancel(slow)
    finally:
        server.terminate()


def test_cli_submit_wait_download_and_jobs(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data") as server:
        args = ("--server", server.url)
        done = run_vfx(
            "submit",
            "swap",
            "-s",
            f"sources={sample_path('astronaut')}",
            "-s",
            f"target={sample_path('carphone')}",
            "--wait",
            "--download",
            tmp_path / "dl",
            "--json",
            *args,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["state"] == "succeeded"
        assert Path(report["downloaded"]["output"]).stat().st_size > 10_000
        listed = run_vfx("jobs", "list", *args)
        assert report["id"] in listed.stdout and "succeeded" in listed.stdout
        logs = run_vfx("jobs", "logs", report["id"], *args)
        assert "swap started" in logs.stdout
        bad = run_vfx("submit", "probe", "-s", f"input={tmp_path}/missing.png", *args)
        assert bad.returncode == 3 and "file not found" in bad.stderr
        failed = run_vfx("submit", "sleep", "-s", "fail=input", "--wait", *args)
        assert failed.returncode == 1 and "wrong on purpose" in failed.stderr
        local = run_vfx("submit", "sleep", "--backend", "local", "--json", *args)
        assert local.returncode == 0 and json.loads(local.stdout)["backend"] == "local"
        absent = run_vfx("submit", "sleep", "--backend", "celery", *args)
        assert "celery backend is not configured" in absent.stderr, absent.stderr
        assert "Choose auto or one of: local." in absent.stderr


def test_job_ids_that_are_not_ids_are_input_errors(tmp_path: Path) -> None:
    """`../../etc` never becomes another URL; an unknown id is the user's mistake (exit 3)."""
    with ServerProcess(tmp_path / "data") as server:
        for job_id, says in [("../../etc", "is not a job id"), ("0" * 32, "does not exist")]:
            result = run_vfx("jobs", "show", job_id, "--server", server.url)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 3 and len(lines) == 1 and says in lines[0], result.stderr
            assert "report it" not in result.stderr
        with server.client() as client, pytest.raises(InputError, match="not a job id"):
            client.cancel("../jobs")


def test_serve_refuses_a_public_bind_without_a_token() -> None:
    result = run_vfx("serve", "--host", "0.0.0.0", drop=("VFX_API_TOKEN",))
    assert result.returncode == 2 and "VFX_API_TOKEN" in result.stderr


def test_cli_reports_an_unreachable_server() -> None:
    result = run_vfx("jobs", "list", "--server", "http://127.0.0.1:9")
    assert result.returncode == 1 and "cannot reach" in result.stderr


def test_fallback_to_another_server_over_http(tmp_path: Path) -> None:
    """A server with no workers of its own sends jobs to another vfxmocap server: inputs
    uploaded there, outputs brought back into the job's folder here."""
    with ServerProcess(tmp_path / "remote") as remote:
        main = ServerProcess(tmp_path / "main", workers=0, VFX_REMOTE_URL=remote.url)
        with main, main.client() as client:
            job = client.submit_files(
                "swap", {"sources": [sample_path("astronaut")], "target": sample_path("t1")}
            )
            final = client.wait(job["id"], timeout=180)
            assert final["state"] == "succeeded", final
            assert final["backend"] == "remote"
            assert final["route"] == f"no local workers; the server at {remote.url}"
            out = client.download(job["id"], "output", tmp_path)
            assert out.suffix == ".png" and out.stat().st_size > 10_000
        with remote.client() as there:
            assert there.jobs()["jobs"][0]["state"] == "succeeded"


def test_no_backend_left_is_a_clear_error(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, workers=0, VFX_REMOTE_URL="http://127.0.0.1:9")
    with server, server.client() as client:
        try:
            client.submit("sleep", {})
        except WorkerUnavailable as exc:
            assert "no worker can run sleep" in exc.message
            assert "cannot run sleep now" in exc.message
        else:
            raise AssertionError("a job with nowhere to run was accepted")
