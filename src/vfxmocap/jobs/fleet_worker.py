"""`vfx worker`'s supervisor: keeps one Celery worker process running for this machine.

The process is restarted when it dies (a crash, or a job killed after ignoring cancel),
but a process that keeps dying within seconds of its start is not restarted for ever:
the wait between starts doubles, and after a few such deaths the supervisor gives up and
says so. (`vfx worker` checks the `distributed` extra before any start.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vfxmocap.core.errors import WorkerUnavailable
from vfxmocap.core.log import get_logger

log = get_logger("jobs.fleet_worker")


@dataclass(frozen=True)
class Restarts:
    """When a dying worker process is started again, and when that stops."""

    healthy_s: float = 30.0  # a process that lived this long died of something else
    first_wait_s: float = 1.0
    max_wait_s: float = 60.0
    give_up_after: int = 5  # fast deaths in a row

    def wait_s(self, fast_deaths: int) -> float:
        return float(min(self.max_wait_s, self.first_wait_s * 2 ** max(0, fast_deaths - 1)))


def supervise(
    command: list[str],
    env: dict[str, str],
    *,
    restarts: Restarts = Restarts(),
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run `command` until SIGTERM / SIGINT, restarting it when it dies. Raises
    `WorkerUnavailable` when it keeps dying fast."""
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)  # Celery's warm shutdown: the job finishes

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    fast_deaths = 0
    try:
        while not stopping:
            started = time.monotonic()
            child = subprocess.Popen(command, env=env)
            code = child.wait()
            if stopping:
                return
            lived_s = time.monotonic() - started
            fast_deaths = fast_deaths + 1 if lived_s < restarts.healthy_s else 0
            if fast_deaths >= restarts.give_up_after:
                raise WorkerUnavailable(
                    f"the Celery worker process exited {fast_deaths} times in a row within "
                    f"{restarts.healthy_s:.0f} s of its start (last exit code {code}); giving up",
                    hint="Its output above says why (a broker URL, a missing package, a crash).",
                )
            wait = restarts.wait_s(fast_deaths)
            log.warning("worker process exited (code %s); restarting in %.0f s", code, wait)
            sleep(wait)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def worker_command(name: str) -> list[str]:
    """The Celery worker process `vfx worker` supervises."""
    return [sys.executable, "-m", "vfxmocap.jobs.celery_app", name]


def run(broker_url: str, name: str, env: dict[str, str]) -> None:
    """`vfx worker`: keep a worker process for `broker_url` alive, with `env` added. The
    broker URL may hold a password: it goes through the environment, not argv (ps)."""
    supervise(worker_command(name), {**os.environ, **env, "VFX_BROKER_URL": broker_url})
