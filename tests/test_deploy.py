"""The container recipe (deploy/): every command, module and setting it names exists, and
the processes compose.yaml describes (Redis, `vfx serve`, a `vfx worker` per GPU) run a
job here as they would in their containers. No Docker daemon runs here: the images
themselves are not built."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import typer

from tests.conftest import ALLOW_SKIP, require
from tests.servers import ROOT, RedisServer, ServerProcess, WorkerProcess, wait_for_worker
from vfxmocap.cli import app
from vfxmocap.core.config import Settings

DEPLOY = ROOT / "deploy"
DOCKERFILES = [DEPLOY / "Dockerfile", DEPLOY / "Dockerfile.cuda"]
COMPOSE_FILES = [DEPLOY / "compose.yaml", DEPLOY / "compose.fleet.yaml"]


def compose(path: Path = DEPLOY / "compose.yaml") -> dict[str, Any]:
    """The compose file as Compose reads it with no deploy/.env: `${NAME:-default}` is the
    default."""
    text = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", path.read_text())
    data: dict[str, Any] = require("yaml").safe_load(text)
    return data


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as Docker reads an env file (comments and blank lines skipped)."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {key: value for key, value in pairs}


def instruction(dockerfile: Path, name: str) -> list[str]:
    """The exec-form (JSON) argument of a Dockerfile instruction, continuation lines joined;
    for HEALTHCHECK, its CMD."""
    text = dockerfile.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            argument = line.split("CMD", 1)[1] if name == "HEALTHCHECK" else line[len(name) :]
            parsed: list[str] = json.loads(argument)
            return parsed
    raise AssertionError(f"{dockerfile.name} has no {name}")


def vfx_command(args: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse `vfx ARGS` as the CLI would, without running it: an unknown command or option
    raises. Returns the command's name and its parameters."""
    group = typer.main.get_command(app)
    root = group.make_context("vfx", list(args))
    name, command, rest = group.resolve_command(root, [*root._protected_args, *root.args])
    assert command is not None and name is not None, args
    return name, command.make_context(name, rest, parent=root).params


def python_module(argv: list[str]) -> str:
    assert argv[:2] == ["python", "-m"], argv
    assert find_spec(argv[2]) is not None, f"{argv[2]} does not exist"
    return argv[2]


def vfx_services(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in spec["services"].items() if s.get("image", "").startswith("vfxmocap")}


def dockerfile_of(service: dict[str, Any]) -> Path:
    build = service["build"]  # the context is relative to the compose file, the file to it
    return (DEPLOY / build["context"] / build["dockerfile"]).resolve()


def argv(service: dict[str, Any]) -> list[str]:
    """What the container runs: the image's entrypoint, then the service's command."""
    return instruction(dockerfile_of(service), "ENTRYPOINT") + service["command"]


def test_the_images_run_real_commands() -> None:
    extras = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    for dockerfile in DOCKERFILES:
        (wanted,) = re.findall(r"^ARG EXTRAS=(\S+)$", dockerfile.read_text(), re.MULTILINE)
        assert set(wanted.split(",")) <= extras, dockerfile.name
        entry, default = instruction(dockerfile, "ENTRYPOINT"), instruction(dockerfile, "CMD")
        assert entry == ["vfx"] and vfx_command(default)[0] == "serve"
        assert python_module(instruction(dockerfile, "HEALTHCHECK")) == "vfxmocap.api.healthcheck"


def test_compose_runs_redis_one_server_and_a_worker_per_gpu() -> None:
    spec = compose()
    assert set(spec["services"]) == {"redis", "serve", "worker-gpu0", "worker-gpu1"}
    assert spec["services"]["redis"]["healthcheck"]["test"][:2] == ["CMD", "redis-cli"]
    for name, service in spec["services"].items():
        assert service["restart"] == "unless-stopped", name
    services = vfx_services(spec)
    for name, service in services.items():
        assert service["env_file"] == "vfx.env" and "/data" in service["volumes"][0], name
        assert dockerfile_of(service) in DOCKERFILES, name
    serve = services["serve"]
    assert vfx_command(argv(serve)[1:]) == ("serve", {"host": None, "port": None, "workers": 0})
    assert python_module(serve["healthcheck"]["test"][1:]) == "vfxmocap.api.healthcheck"


def test_each_worker_reserves_one_gpu_of_its_own() -> None:
    workers = {n: s for n, s in compose()["services"].items() if n.startswith("worker")}
    reserved = []
    for name, service in workers.items():
        command, params = vfx_command(argv(service)[1:])
        assert command == "worker" and params["name"] == f"head-{name.removeprefix('worker-')}"
        assert params["device"] == "cuda:0", name  # its container sees only its GPU, as 0
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        reserved += device["device_ids"]
    assert sorted(reserved) == ["0", "1"]


def test_every_setting_the_recipe_names_exists() -> None:
    settings = {f"VFX_{name.upper()}" for name in Settings.model_fields}
    for path in sorted(DEPLOY.iterdir()):
        named = set(re.findall(r"\bVFX_[A-Z0-9_]+", path.read_text()))
        assert named <= settings, f"{path.name}: {sorted(named - settings)} are not settings"
    for path in COMPOSE_FILES:
        for service in compose(path)["services"].values():
            assert set(service.get("environment", {})) <= settings


def test_the_checks_catch_what_does_not_exist() -> None:
    with pytest.raises(Exception, match="No such option"):
        vfx_command(["serve", "--gpus", "2"])
    with pytest.raises(Exception, match="No such command"):
        vfx_command(["--device", "cuda:0", "wrker"])
    with pytest.raises(AssertionError, match="does not exist"):
        python_module(["python", "-m", "vfxmocap.api.healthz"])


def on_this_machine(args: list[str]) -> list[str]:
    """The same command on this GPU-less machine: `--device cuda:N` becomes cpu."""
    args = list(args)
    for i in range(1, len(args)):
        if args[i - 1] == "--device" and args[i].startswith("cuda"):
            args[i] = "cpu"
    return args


def healthcheck(env: dict[str, str]) -> int:
    """Run the server's compose health check as Docker would, in the server's environment."""
    test = compose()["services"]["serve"]["healthcheck"]["test"]
    return subprocess.run([sys.executable, *test[2:]], env=env, timeout=60, check=False).returncode


def test_the_compose_processes_run_jobs_on_both_workers(tmp_path: Path) -> None:
    """The compose file's commands and environments, with this machine's addresses for
    the container names: Redis, `vfx serve --workers 0`, one `vfx worker` per GPU."""
    if shutil.which("redis-server") is None:
        if ALLOW_SKIP:
            pytest.skip("redis-server is not installed (VFX_TEST_ALLOW_SKIP=1)")
        pytest.fail("redis-server is not installed: apt-get install redis-server (.ci/run does)")
    services = vfx_services(compose())
    token_file = env_file(DEPLOY / "vfx.env.example")
    with RedisServer(tmp_path / "redis") as redis:
        here = {
            "VFX_BROKER_URL": redis.url,
            "VFX_DATA_DIR": str(tmp_path / "data"),  # the shared volume
            "VFX_MODELS_DIR": str(tmp_path / "models"),
            "VFX_HOST": "127.0.0.1",  # the image binds 0.0.0.0 inside its container
        }

        def environment(name: str) -> dict[str, str]:
            return {**token_file, **services[name]["environment"], **here}

        workers = [
            WorkerProcess(
                redis.url, name, tmp_path, args=on_this_machine(argv(s)[1:]), **environment(name)
            ).start()
            for name, s in services.items()
            if name.startswith("worker")
        ]
        server = ServerProcess(
            tmp_path / "data", args=argv(services["serve"])[1:], **environment("serve")
        )
        try:
            with server, server.client() as client:
                for name in ("head-gpu0", "head-gpu1"):
                    wait_for_worker(client, name)
                assert healthcheck(server.env) == 0
                assert healthcheck({**server.env, "VFX_API_TOKEN": "wrong"}) == 1
                jobs = [client.submit("sleep", {"seconds": 1.5}) for _ in range(2)]
                done = [client.wait(job["id"], timeout=120) for job in jobs]
        finally:
            for worker in workers:
                worker.stop()
    assert [job["state"] for job in done] == ["succeeded", "succeeded"], done
    assert {job["worker"] for job in done} == {"celery/head-gpu0", "celery/head-gpu1"}
