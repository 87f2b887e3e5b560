"""Scale-out, the worker side: a Celery worker (solo pool, one per GPU, acks_late,
prefetch 1) that runs jobs of the same workflow registry.

Each worker consumes its own queue (`vfx.w.<name>`) and advertises what it can do in
Redis (`vfx:worker:<name>`: device class, memory, ready models, runnable workflows, the
job it is running), refreshed every few seconds with a short expiry, so the server routes
a job only to a worker that can run it and sees a dead worker disappear. Progress goes
out on a Redis channel; a job's end goes on a Redis list the server drains, so it is not
lost if the server is restarting. Cancel comes in through a Redis key checked between
frames; the server kills the task if it does not stop.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import redis
from celery import Celery

from vfxmocap.core.errors import VfxError, as_vfx_error
from vfxmocap.core.log import get_logger, job_id_var
from vfxmocap.jobs.events import PREVIEW_INTERVAL_S

if TYPE_CHECKING:
    from vfxmocap.core.progress import ProgressEvent
    from vfxmocap.device import DeviceReport

log = get_logger("jobs.celery")

PREFIX = "vfx:"
ADVERTISE_S = 3.0
ADVERTISE_TTL_S = 10
# Longer than the longest job (7 days is the API's upper limit), so Redis never hands an
# unacknowledged message to a second worker while the first still runs it.
VISIBILITY_TIMEOUT_S = 8 * 86400


def events_channel(namespace: str) -> str:
    """Pub/sub for progress (lossy is fine: the next event supersedes a lost one)."""
    return f"{PREFIX}events:{namespace}"


def finals_list(namespace: str) -> str:
    """A list for started / done / error, drained by the servers of that job store."""
    return f"{PREFIX}finals:{namespace}"


def worker_key(name: str) -> str:
    return f"{PREFIX}worker:{name}"


def cancel_key(job_id: str) -> str:
    return f"{PREFIX}cancel:{job_id}"


def attempt_key(job_id: str) -> str:
    return f"{PREFIX}attempt:{job_id}"


def kill_key(worker: str) -> str:
    return f"{PREFIX}kill:{worker}"


def queue_of(worker: str) -> str:
    return f"vfx.w.{worker}"


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=10)


def make_app(broker_url: str) -> Celery:
    app = Celery("vfxmocap", broker=broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    app.task(name="vfxmocap.run_job")(run_job)
    return app


class _Outage:
    """Logs a Redis outage once when it starts and once when it ends, not per call (the
    frame loop calls many times a second)."""

    def __init__(self, what: str) -> None:
        self.what, self.down = what, False

    def failed(self, exc: redis.RedisError) -> None:
        if not self.down:
            self.down = True
            log.warning("cannot reach Redis to %s (%s); the job goes on", self.what, exc)

    def ok(self) -> None:
        if self.down:
            self.down = False
            log.info("Redis is back: %s again", self.what)


class RedisCancel:
    """A cancel flag in Redis, read at most every `every_s` (the frame loop calls often).
    Redis out of reach reads as not cancelled, and the next check asks again: a transient
    outage must not fail the job (a cancel then waits for Redis, or the server's kill)."""

    def __init__(self, client: redis.Redis, job_id: str, every_s: float = 0.2) -> None:
        self.client, self.key, self.every_s = client, cancel_key(job_id), every_s
        self._checked = 0.0
        self._set = False
        self._outage = _Outage("check for a cancel")

    def is_set(self) -> bool:
        now = time.monotonic()
        if not self._set and now - self._checked >= self.every_s:
            self._checked = now
            try:
                self._set = bool(self.client.exists(self.key))
            except redis.RedisError as exc:
                self._outage.failed(exc)
            else:
                self._outage.ok()
        return self._set

    def set(self) -> None:
        self.client.set(self.key, "1", ex=86400)
        self._set = True


class ProgressPublisher:
    """Sends a job's progress events on the events channel. Progress is lossy by design
    (the next event supersedes a lost one): with Redis out of reach an event is dropped,
    logged once, never a failure of the job."""

    def __init__(self, client: redis.Redis, namespace: str, job_id: str, attempt: int) -> None:
        self.client, self.channel = client, events_channel(namespace)
        self.fields = {"job_id": job_id, "attempt": attempt}
        self._outage = _Outage("publish progress")

    def __call__(self, event: ProgressEvent) -> None:
        try:
            self.client.publish(self.channel, json.dumps({**self.fields, **event.to_dict()}))
        except redis.RedisError as exc:
            self._outage.failed(exc)
        else:
            self._outage.ok()


class _Worker:
    """This process's identity and Redis connection, set by `run_worker`. `boot` changes
    with every start, so the server tells a restarted worker from one that kept running."""

    name = ""
    boot = uuid.uuid4().hex
    redis: redis.Redis | None = None
    busy = ""  # the job id being run
    attempt = ""  # "<job id>:<attempt>": what a kill order names


def run_job(
    job_id: str, attempt: int, workflow: str, inputs: dict[str, Any], namespace: str
) -> None:
    """The Celery task: run one attempt of a job and report to the servers of the job
    store named by `namespace` (several stores may share one Redis)."""
    from vfxmocap.core.progress import CancelToken, Progress
    from vfxmocap.workflows import get_workflow

    client = _Worker.redis
    assert client is not None, "run_job runs inside `vfx worker`"
    current = client.get(attempt_key(job_id))
    if current != str(attempt):
        # A redelivered message for an attempt the server has since given up on.
        log.warning("job %s: skipping stale attempt %s (current %s)", job_id, attempt, current)
        return

    def final(kind: str, **fields: Any) -> None:
        message = {"kind": kind, "job_id": job_id, "attempt": attempt, "worker": _Worker.name}
        client.rpush(finals_list(namespace), json.dumps({**message, **fields}, default=str))

    token = job_id_var.set(job_id)
    _Worker.busy = job_id
    _Worker.attempt = f"{job_id}:{attempt}"
    _advertise()
    final("started")
    try:
        log.info("job %s: %s started on %s", job_id, workflow, _Worker.name)
        result = get_workflow(workflow)(
            inputs,
            Progress(
                ProgressPublisher(client, namespace, job_id, attempt),
                job_id=job_id,
                preview_interval_s=PREVIEW_INTERVAL_S,
            ),
            CancelToken(RedisCancel(client, job_id)),
        )
        outputs = {k: str(v) for k, v in result.outputs.items()}
        final("done", outputs=outputs, summary=result.summary)
        log.info("job %s: succeeded", job_id)
    except Exception as exc:  # typed errors as they are; a bug as internal, logged
        if not isinstance(exc, VfxError):
            log.exception("job %s failed with an internal error", job_id)
        error = as_vfx_error(exc)
        final("error", error=error.to_dict(), retryable=error.retryable)
    finally:
        job_id_var.reset(token)
        _Worker.busy = _Worker.attempt = ""
        _advertise()


def capabilities(device_kind: str, memory_gb: float) -> dict[str, Any]:
    """What this worker can run: workflows whose device class, memory and catalog models
    fit here, and the models ready here (the server routes each job by them)."""
    from vfxmocap.models.store import ModelStore
    from vfxmocap.workflows import all_workflows

    store = ModelStore()
    ready: set[str] = set()
    for spec in store.catalog:
        try:
            if store.status(spec.name).ready:
                ready.add(spec.name)
        except VfxError as exc:  # e.g. a built-in's package is missing: not ready
            log.debug("model %s not ready: %s", spec.name, exc.message)
    # Workflows runnable with their default inputs; a job's own needs (an inswapper swap's
    # models) are matched against `models` when it is routed and claimed.
    runnable = [
        w.name for w in all_workflows() if w.resources.unmet(device_kind, memory_gb, ready) is None
    ]
    return {
        "device": device_kind,
        "memory_gb": memory_gb,
        "models": sorted(ready),
        "workflows": runnable,
    }


def device_advert(device: DeviceReport) -> dict[str, Any]:
    """The exact device this worker's models run on (beside the class routing reads): with
    one worker per GPU, each names its own GPU's index and name."""
    gpu = {"index": device.index, "name": device.name} if device.kind != "cpu" else None
    return {"device_spec": device.spec, "gpu": gpu}


_advert: dict[str, Any] = {}


def _advertise() -> None:
    client = _Worker.redis
    if client is None or not _advert:
        return
    key = worker_key(_Worker.name)
    payload = {
        **_advert,
        "busy": _Worker.busy,
        "boot": _Worker.boot,
        "pid": os.getpid(),
        "seen": time.time(),
    }
    client.set(key, json.dumps(payload), ex=ADVERTISE_TTL_S)


def _watch_forever(stop: threading.Event) -> None:
    """Advertise now and then; obey a kill order for the running job at once. This runs
    beside the task (the solo pool's one thread is busy running it), so a job that ignores
    its cancel token still stops: the process dies and `vfx worker` starts a fresh one."""
    client = _Worker.redis
    assert client is not None
    last = 0.0
    while not stop.wait(0.25):
        try:
            order = client.get(kill_key(_Worker.name))
            if order and order == _Worker.attempt:
                client.delete(kill_key(_Worker.name))
                log.warning("job %s: killed on the server's order", order)
                os.kill(os.getpid(), signal.SIGKILL)
            if time.monotonic() - last >= ADVERTISE_S:
                last = time.monotonic()
                _advertise()
        except redis.RedisError as exc:  # the broker is restarting: say so, try again
            log.warning("cannot reach Redis: %s", exc)


def run_worker(broker_url: str, name: str | None = None, loglevel: str = "INFO") -> None:
    """`vfx worker`: advertise this machine's capabilities, then consume its queue."""
    from vfxmocap.device import resolve_device

    device = resolve_device()  # VFX_DEVICE, set by `vfx worker --device cuda:1`
    _Worker.name = name or f"{socket.gethostname()}-{os.getpid()}"
    _Worker.redis = redis_client(broker_url)
    _advert.update(
        name=_Worker.name,
        queue=queue_of(_Worker.name),
        **capabilities(device.kind, device.usable_memory_gb),  # what jobs may use
        **device_advert(device),
    )
    _advertise()
    stop = threading.Event()
    threading.Thread(target=_watch_forever, args=(stop,), daemon=True).start()
    app = make_app(broker_url)
    try:
        app.worker_main(
            [
                "worker",
                "--pool=solo",
                "--concurrency=1",
                f"--hostname={_Worker.name}@{socket.gethostname()}",
                f"--queues={queue_of(_Worker.name)}",
                f"--loglevel={loglevel}",
                "--without-gossip",
                "--without-mingle",
            ]
        )
    finally:
        stop.set()
        _Worker.redis.delete(worker_key(_Worker.name))


if __name__ == "__main__":  # the process `vfx worker` supervises
    import sys

    from vfxmocap.core.config import get_settings
    from vfxmocap.core.log import setup_logging

    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    if not settings.broker_url:
        sys.exit("VFX_BROKER_URL is not set (start workers with `vfx worker`)")
    run_worker(settings.broker_url, sys.argv[1] if len(sys.argv) > 1 else None)
