"""Real processes for the tests and bench/api.py: `vfx serve`, `vfx worker`, redis-server and
a throwaway PostgreSQL cluster."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vfxmocap.client import Client
from vfxmocap.core.errors import WorkerUnavailable

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """Starts `vfx serve` (or the `vfx` arguments in `args`) on a free port with its data
    in `data_dir`; the test plugin (`tests.plugin_workflows`) is loaded so the `sleep`
    workflow exists. Its clients send `VFX_API_TOKEN` when `env` sets one."""

    def __init__(
        self, data_dir: Path, *, workers: int = 1, args: Sequence[str] = ("serve",), **env: str
    ) -> None:
        self.data_dir, self.args = data_dir, list(args)
        self.port = free_port()
        self.env = {
            **os.environ,
            "VFX_DATA_DIR": str(data_dir),
            "VFX_PORT": str(self.port),
            "VFX_WORKERS": str(workers),
            "VFX_WORKFLOW_MODULES": '["tests.plugin_workflows"]',
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vfxmocap.cli", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        deadline = time.monotonic() + timeout
        with Client(self.url, self.env.get("VFX_API_TOKEN"), timeout=2) as client:
            while True:
                try:
                    if client.queue()["busy"] >= 0:
                        return self
                except WorkerUnavailable:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"server did not start: {(self.data_dir / 'server.log').read_text()}"
                        ) from None
                    time.sleep(0.1)

    def client(self) -> Client:
        return Client(self.url, self.env.get("VFX_API_TOKEN"))

    def kill(self) -> None:
        """kill -9: no shutdown, no cleanup."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def wait_for_worker(client: Client, name: str, timeout: float = 90) -> dict[str, Any]:
    """Wait until a Celery worker's advertisement (its capabilities) reaches the server and
    says it is idle."""
    deadline = time.monotonic() + timeout
    while True:
        found = {w["name"]: w for w in client._request("GET", "/workers").get("celery", [])}
        if name in found and not found[name]["busy"]:
            advert: dict[str, Any] = found[name]
            return advert
        assert time.monotonic() < deadline, f"worker {name} never advertised"
        time.sleep(0.2)


class RedisServer:
    """A throwaway `redis-server` (the Debian package) on a free port, nothing saved."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        import redis

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)


class WorkerProcess:
    """`vfx worker` (the supervisor and its Celery worker process) for a broker, or the
    `vfx` arguments in `args`."""

    def __init__(
        self,
        broker: str,
        name: str,
        log_dir: Path,
        *,
        args: Sequence[str] | None = None,
        **env: str,
    ) -> None:
        self.broker, self.name, self.log_dir = broker, name, log_dir
        self.args = list(args or ["worker", "--broker", broker, "--name", name])
        self.env = {
            **os.environ,
            "VFX_WORKFLOW_MODULES": '["tests.plugin_workflows"]',
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"worker-{self.name}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vfxmocap.cli", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def postgres_bindir() -> Path | None:
    """Debian's PostgreSQL server programs (`postgresql` puts them outside PATH), newest."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts[-3])
    return found[-1].parent if found else None


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 and a free port: initdb into a temporary
    folder, trust authentication, fsync off (nothing here must survive a power cut). As
    root it runs as the `postgres` user: PostgreSQL refuses to run as root."""

    def __init__(self, bindir: Path) -> None:
        self.bindir, self.port = bindir, free_port()
        self.root = Path(tempfile.mkdtemp(prefix="vfx-pg-"))
        self.data = self.root / "data"

    def _run(self, program: str, *args: str) -> None:
        argv = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            argv = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(argv)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stdout}{done.stderr}")

    def __enter__(self) -> PostgresServer:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -F"
            " -c full_page_writes=off -c synchronous_commit=off"
        )
        log = str(self.root / "server.log")
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", log, "-w", "-t", "60", "-o", options, "start"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def new_database(self) -> str:
        """A fresh, empty database: its SQLAlchemy URL (psycopg 3)."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        admin = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")  # fast, no WAL
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"
