"""Service commands: serve the API, run a Celery worker, submit and manage jobs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer
from pydantic import ValidationError

from vfxmocap.cli.app import app, jobs_app
from vfxmocap.cli.common import (
    JsonOpt,
    ServerOpt,
    SetsOpt,
    err,
    guarded,
    listify,
    literal,
    out,
    parse_sets,
    print_json,
    progress_bar,
    server_client,
)
from vfxmocap.core.config import get_settings
from vfxmocap.core.errors import InvalidParams, VfxError
from vfxmocap.core.extras import require


@app.command()
@guarded
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8420).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (device slots).")] = None,
) -> None:
    """Run the API with its job queue and worker processes (Ctrl+C or SIGTERM to stop:
    running jobs get VFX_SHUTDOWN_GRACE_S to finish, then go back to the queue)."""
    require("uvicorn")
    import uvicorn

    from vfxmocap.api.app import create_app
    from vfxmocap.api.security import check_bind
    from vfxmocap.device import resolve_device
    from vfxmocap.jobs.service import JobService

    options = (("host", host), ("port", port), ("workers", workers))
    overrides = {k: v for k, v in options if v is not None}  # --workers 0 is a choice
    try:
        settings = get_settings().updated(**overrides)
    except ValidationError as exc:
        bad = (f"--{e['loc'][0]} {e['input']}: {e['msg']}" for e in exc.errors())
        raise InvalidParams(f"vfx serve: {'; '.join(bad)}") from None
    check_bind(settings.host, settings.api_token)
    device = resolve_device()  # before any worker starts: a GPU this machine lacks stops here
    service = JobService(settings, device=device.spec)  # the exact GPU, not just "cuda"
    err.print(
        f"vfxmocap API on http://{settings.host}:{settings.port}/api ({settings.workers} "
        f"worker(s) on {device.spec} · {device.name}, data in {settings.data_dir})"
    )
    # The event loop shares the GIL with the runner's threads; a shorter switch interval
    # (5 ms by default) keeps a thread that holds the store's write lock from making
    # every request wait a whole interval behind it.
    sys.setswitchinterval(0.0005)
    uvicorn.run(
        create_app(service),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5,
    )


@app.command()
@guarded
def worker(
    broker: Annotated[
        str | None, typer.Option(help="Celery broker, e.g. redis://host:6379/0 (VFX_BROKER_URL).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Worker name (default host-pid).")] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="This worker's GPU: cuda:N (one per GPU).")
    ] = None,
) -> None:
    """Run a Celery worker for this machine's device (one per GPU: set --device). It is
    restarted when it dies (a crash, or a job killed after ignoring cancel); one that
    keeps dying at start is given up on."""
    import socket

    from vfxmocap.device import resolve_device

    require("celery")  # a missing extra ends here, not in a child restarted forever
    require("redis")
    from vfxmocap.jobs import fleet_worker

    url = broker or get_settings().broker_url
    if not url:
        raise InvalidParams("no broker: pass --broker redis://... or set VFX_BROKER_URL")
    name = name or f"{socket.gethostname()}-{os.getpid()}"
    report = resolve_device(device)  # checked here, or the child would fail at each start
    shown = _without_password(url)
    err.print(f"vfxmocap Celery worker {name} on {shown}, {report.spec} · {report.name}")
    # The exact GPU ("cuda:1"): "auto" or "cuda" would put the child on GPU 0.
    fleet_worker.run(url, name, {"VFX_DEVICE": report.spec})


def _without_password(url: str) -> str:
    """The broker URL fit to print: its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _job_line(job: dict[str, Any]) -> str:
    percent = job.get("percent")
    progress = f" {percent:.0f}%" if percent is not None and job["state"] == "running" else ""
    error = job.get("error") or {}
    reason = f" — {error.get('message')}" if job["state"] == "failed" and error else ""
    return literal(f"{job['id']}  {job['workflow']:<10} {job['state']}{progress}{reason}")


@app.command()
@guarded
def submit(
    workflow: Annotated[str, typer.Argument(help="A workflow name (`vfx workflows`).")],
    sets: SetsOpt = None,
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    backend: Annotated[
        str, typer.Option(help="auto (the server's order), local, celery or remote.")
    ] = "auto",
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the job to end.")] = False,
    download: Annotated[
        Path | None, typer.Option(help="With --wait: save the outputs in this folder.")
    ] = None,
    server: ServerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a job on a vfxmocap server, e.g.
    `vfx submit swap -s sources=me.jpg -s target=shot.mp4 --wait --download out/`."""
    with server_client(server) as client:
        spec = client.workflow(workflow)
        inputs = listify(parse_sets(sets or []), spec["inputs"])  # local files are uploaded
        job = client.submit_files(workflow, inputs, priority=priority, backend=backend)
        if not wait:
            print_json(job) if as_json else out.print(job["id"])
            return
        with progress_bar(enabled=not as_json) as progress:
            seen: dict[str, Any] = {"stage": None}

            def update(state: dict[str, Any]) -> None:
                info = state.get("progress") or {}
                if info.get("stage") and info["stage"] != seen["stage"]:
                    seen["stage"] = info["stage"]
                    progress.stage(info["stage"], info.get("max"))
                if info.get("value") is not None and info["value"] > progress.value:
                    progress.advance(info["value"] - progress.value)

            final = client.wait(job["id"], on_update=update)
        saved = {}
        if download is not None and final["state"] == "succeeded":
            download.mkdir(parents=True, exist_ok=True)
            saved = {n: str(client.download(final["id"], n, download)) for n in final["outputs"]}
    if as_json:
        print_json({**final, "downloaded": saved})
    else:
        out.print(_job_line(final))
        for name, path in saved.items():
            out.print(literal(f"  {name}: {path}"), soft_wrap=True)
    if final["state"] == "failed":
        error = final.get("error") or {}
        raise VfxError(error.get("message", "the job failed"), hint=error.get("hint"))
    if final["state"] == "cancelled":
        raise typer.Exit(130)


@jobs_app.command("list")
@guarded
def jobs_list(
    state: Annotated[str | None, typer.Option(help="queued, running, succeeded...")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow.")] = None,
    limit: Annotated[int, typer.Option(help="How many.")] = 20,
    server: ServerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recent jobs, newest first."""
    with server_client(server) as client:
        page = client.jobs(state=state, workflow=workflow, limit=limit)
    if as_json:
        print_json(page)
        return
    for job in page["jobs"]:
        out.print(_job_line(job), highlight=False)


@jobs_app.command("show")
@guarded
def jobs_show(job_id: str, server: ServerOpt = None) -> None:
    """One job: state, progress, error and hint, outputs."""
    with server_client(server) as client:
        print_json(client.job(job_id))


@jobs_app.command("cancel")
@guarded
def jobs_cancel(job_id: str, server: ServerOpt = None) -> None:
    """Cancel a queued job, or stop a running one at its next frame."""
    with server_client(server) as client:
        out.print(_job_line(client.cancel(job_id)), highlight=False)


@jobs_app.command("retry")
@guarded
def jobs_retry(job_id: str, server: ServerOpt = None) -> None:
    """Queue a failed or cancelled job again."""
    with server_client(server) as client:
        out.print(_job_line(client.retry(job_id)), highlight=False)


@jobs_app.command("logs")
@guarded
def jobs_logs(job_id: str, server: ServerOpt = None) -> None:
    """What the job's worker logged."""
    with server_client(server) as client:
        sys.stdout.write(client.log(job_id))
