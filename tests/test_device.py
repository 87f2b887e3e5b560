"""Device resolution: CUDA -> MPS -> CPU, honest ONNX providers, and loud advice.

Machines are simulated at the boundary: `vfxmocap.device._torch` / `_onnxruntime` return
fake modules, and the platform probes (`_is_apple_silicon`, `_nvidia_driver_present`,
`_nvidia_gpu_count`, `_system_memory_gb`) are patched. One test at the end runs on the
real machine.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import require
from vfxmocap import device
from vfxmocap.core.config import Settings, get_settings, reload_settings
from vfxmocap.core.errors import DeviceError, InsufficientMemory
from vfxmocap.device import (
    Tier,
    available_onnx_providers,
    device_kind,
    onnx_provider_options,
    onnx_providers,
    resolve_device,
    torch_device,
)

GIB = 1024**3
CUDA = "CUDAExecutionProvider"
COREML = "CoreMLExecutionProvider"
DML = "DmlExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
CPU = "CPUExecutionProvider"
VALID_LIST = "auto, cpu, cuda, cuda:N, mps"


def fake_gpu(name: str, memory_gib: float) -> SimpleNamespace:
    return SimpleNamespace(name=name, total_memory=int(memory_gib * GIB))


def fake_torch(gpus: tuple[SimpleNamespace, ...] = (), mps: bool = False) -> SimpleNamespace:
    """A torch module as seen by device.py: cuda.*, backends.mps, device(), __version__."""
    return SimpleNamespace(
        __version__="2.5.1+fake",
        cuda=SimpleNamespace(
            is_available=lambda: bool(gpus),
            device_count=lambda: len(gpus),
            get_device_properties=lambda i: gpus[i],
        ),
        backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: mps)),
        device=lambda spec: ("torch.device", spec),
    )


def fake_ort(*providers: str) -> SimpleNamespace:
    return SimpleNamespace(__version__="1.99.0", get_available_providers=lambda: list(providers))


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """Returns a function that installs a simulated machine; defaults: Linux box, 64 GB RAM."""
    monkeypatch.delenv("VFX_DEVICE", raising=False)
    reload_settings()

    def install(
        *,
        torch: SimpleNamespace | None,
        ort: SimpleNamespace | None,
        apple_silicon: bool = False,
        nvidia_driver: bool = False,
        ram_gb: float = 64.0,
        nvidia_gpus: int | None = None,
    ) -> None:
        monkeypatch.setattr(device, "_torch", lambda: torch)
        monkeypatch.setattr(device, "_onnxruntime", lambda: ort)
        monkeypatch.setattr(device, "_is_apple_silicon", lambda: apple_silicon)
        monkeypatch.setattr(device, "_nvidia_driver_present", lambda: nvidia_driver)
        monkeypatch.setattr(device, "_nvidia_gpu_count", lambda: nvidia_gpus)
        monkeypatch.setattr(device, "_system_memory_gb", lambda: ram_gb)
        monkeypatch.setattr(device, "_cpu_name", lambda: "Fake CPU 9000")

    return install


# --- CUDA -----------------------------------------------------------------------------------


def test_cuda_machine_auto_picks_first_gpu_in_half_precision(machine) -> None:
    machine(
        torch=fake_torch((fake_gpu("NVIDIA GeForce RTX 4090", 24),)),
        ort=fake_ort(CPU, CUDA),
        nvidia_driver=True,
    )

    report = resolve_device("auto")

    assert report.kind == "cuda"
    assert report.torch_device == "cuda:0"
    assert report.name == "NVIDIA GeForce RTX 4090"
    assert report.memory_gb == 24.0
    assert report.dtype == "float16"
    assert report.tier is Tier.LARGE
    assert report.onnx_providers == [CUDA, CPU]
    assert report.requested == "auto"
    assert report.torch_version == "2.5.1+fake"
    assert report.onnxruntime_version == "1.99.0"
    assert report.warnings == []


@pytest.mark.parametrize(
    ("memory_gib", "tier"),
    [
        (6, Tier.SMALL),
        (8, Tier.MEDIUM),
        (12, Tier.MEDIUM),
        (16, Tier.LARGE),
        (24, Tier.LARGE),
        (40, Tier.XL),
        (80, Tier.XL),
    ],
)
def test_cuda_tier_follows_gpu_memory(machine, memory_gib: float, tier: Tier) -> None:
    machine(torch=fake_torch((fake_gpu("GPU", memory_gib),)), ort=fake_ort(CUDA, CPU))
    assert resolve_device("cuda").tier is tier


def test_cuda_index_selects_that_gpu(machine) -> None:
    machine(
        torch=fake_torch((fake_gpu("small", 8), fake_gpu("NVIDIA H100", 80))),
        ort=fake_ort(CUDA, CPU),
    )

    report = resolve_device("cuda:1")

    assert report.torch_device == "cuda:1"
    assert report.name == "NVIDIA H100"
    assert report.tier is Tier.XL


@pytest.mark.parametrize("asked", ["cuda:1", "cuda:3"])
def test_cuda_index_beyond_device_count_is_a_device_error(machine, asked: str) -> None:
    machine(torch=fake_torch((fake_gpu("only one", 24),)), ort=fake_ort(CUDA, CPU))

    with pytest.raises(DeviceError, match="1 CUDA device") as info:
        resolve_device(asked)

    assert "cuda:0" in info.value.hint and "VFX_DEVICE" in info.value.hint


def test_explicit_cpu_on_cuda_machine_uses_only_the_cpu_provider(
    machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine(torch=fake_torch((fake_gpu("RTX", 24),)), ort=fake_ort(CUDA, CPU))
    monkeypatch.setenv("VFX_DEVICE", "cpu")
    reload_settings()

    report = resolve_device()  # from VFX_DEVICE

    assert report.requested == "cpu"
    assert report.kind == "cpu" and report.torch_device == "cpu"
    assert report.dtype == "float32"
    assert report.tier is Tier.CPU
    assert report.onnx_providers == [CPU]


def test_request_is_case_and_space_insensitive(machine) -> None:
    machine(torch=fake_torch((fake_gpu("RTX", 24),)), ort=fake_ort(CUDA, CPU))
    report = resolve_device(" CUDA:0 ")
    assert report.kind == "cuda" and report.torch_device == "cuda:0"


def test_cuda_without_onnx_cuda_provider_warns_to_install_onnxruntime_gpu(machine) -> None:
    machine(torch=fake_torch((fake_gpu("RTX", 24),)), ort=fake_ort(CPU), nvidia_driver=True)

    report = resolve_device("auto")

    assert report.kind == "cuda"
    assert report.onnx_providers == [CPU]
    assert any("onnxruntime-gpu" in w for w in report.warnings)


def test_no_torch_but_onnxruntime_cuda_still_resolves_cuda(machine) -> None:
    machine(torch=None, ort=fake_ort(CPU, CUDA), nvidia_driver=True)

    report = resolve_device("auto")

    assert report.kind == "cuda"
    assert report.torch_device == "cuda:0"
    assert report.dtype == "float16"
    assert report.onnx_providers == [CUDA, CPU]
    assert report.torch_version is None
    assert any("torch is not installed" in w for w in report.warnings)


# --- MPS ------------------------------------------------------------------------------------


def test_mps_machine_uses_unified_memory_and_coreml(machine) -> None:
    machine(torch=fake_torch(mps=True), ort=fake_ort(CPU, COREML), apple_silicon=True, ram_gb=64.0)

    report = resolve_device("auto")

    assert report.kind == "mps"
    assert report.torch_device == "mps"
    assert report.dtype == "float16"
    assert report.memory_gb == 64.0  # system RAM: the GPU shares it
    assert report.tier is Tier.XL  # 75 % of 64 GB = 48 GB usable
    assert report.onnx_providers == [COREML, CPU]
    assert report.warnings == []


@pytest.mark.parametrize(
    ("ram_gb", "tier"),
    # 16 GB would be gpu-large on CUDA; Metal gets only 75 % of it (12 GB).
    [(8, Tier.SMALL), (16, Tier.MEDIUM), (24, Tier.LARGE), (48, Tier.LARGE), (64, Tier.XL)],
)
def test_mps_tier_counts_three_quarters_of_unified_memory(
    machine, ram_gb: float, tier: Tier
) -> None:
    machine(
        torch=fake_torch(mps=True), ort=fake_ort(COREML, CPU), apple_silicon=True, ram_gb=ram_gb
    )
    assert resolve_device("mps").tier is tier


def test_no_torch_apple_silicon_with_coreml_resolves_mps(machine) -> None:
    machine(torch=None, ort=fake_ort(CPU, COREML), apple_silicon=True, ram_gb=32.0)
    report = resolve_device("auto")
    assert report.kind == "mps"
    assert report.onnx_providers == [COREML, CPU]


def test_apple_silicon_without_mps_warns(machine) -> None:
    machine(torch=fake_torch(mps=False), ort=fake_ort(CPU), apple_silicon=True)

    report = resolve_device("auto")

    assert report.kind == "cpu"
    assert any("Apple Silicon" in w for w in report.warnings)


# --- CPU ------------------------------------------------------------------------------------


def test_cpu_machine_runs_float32_on_cpu(machine) -> None:
    machine(torch=fake_torch(), ort=fake_ort(CPU), ram_gb=31.2)

    report = resolve_device("auto")

    assert report.kind == "cpu"
    assert report.torch_device == "cpu"
    assert report.name == "Fake CPU 9000"
    assert report.memory_gb == 31.2
    assert report.dtype == "float32"
    assert report.tier is Tier.CPU
    assert report.onnx_providers == [CPU]
    assert report.warnings == []


def test_nvidia_driver_without_cuda_warns(machine) -> None:
    machine(torch=fake_torch(), ort=fake_ort(CPU), nvidia_driver=True)

    report = resolve_device("auto")

    assert report.kind == "cpu"
    assert any("NVIDIA driver" in w for w in report.warnings)


def test_machine_without_torch_or_onnxruntime_still_resolves_cpu(machine) -> None:
    machine(torch=None, ort=None)

    report = resolve_device("auto")

    assert report.kind == "cpu"
    assert report.onnx_providers == []
    assert report.torch_version is None and report.onnxruntime_version is None
    assert available_onnx_providers() == []


@pytest.mark.parametrize("asked", ["cuda", "cuda:0", "mps"])
def test_unavailable_accelerator_is_a_device_error_listing_what_exists(machine, asked: str) -> None:
    machine(torch=fake_torch(), ort=fake_ort(CPU))

    with pytest.raises(DeviceError, match=r"available: cpu\)") as info:
        resolve_device(asked)

    assert asked in info.value.message
    assert info.value.exit_code == 5


def test_mps_request_on_cuda_machine_lists_cuda_as_available(machine) -> None:
    machine(torch=fake_torch((fake_gpu("RTX", 24),)), ort=fake_ort(CUDA, CPU))
    with pytest.raises(DeviceError, match=r"available: cpu, cuda\)"):
        resolve_device("mps")


# --- invalid requests -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["gpu", "mps:1", "cpu:0", "cuda:x", "cuda:", "cuda:-1", ""])
def test_bad_device_value_lists_valid_values(machine, bad: str) -> None:
    machine(torch=fake_torch(), ort=fake_ort(CPU))

    with pytest.raises(DeviceError) as info:
        resolve_device(bad)

    assert repr(bad) in info.value.message
    assert VALID_LIST in info.value.message
    assert "VFX_DEVICE" in info.value.hint


def test_bad_vfx_device_environment_value_is_a_device_error(
    machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine(torch=fake_torch(), ort=fake_ort(CPU))
    monkeypatch.setenv("VFX_DEVICE", "gpu")
    reload_settings()

    with pytest.raises(DeviceError, match=VALID_LIST):
        resolve_device()


def test_argument_overrides_vfx_device(machine, monkeypatch: pytest.MonkeyPatch) -> None:
    machine(torch=fake_torch(), ort=fake_ort(CPU))
    monkeypatch.setenv("VFX_DEVICE", "gpu")  # invalid, but never consulted
    reload_settings()
    assert resolve_device("cpu").kind == "cpu"


# --- ONNX Runtime providers -----------------------------------------------------------------


def test_providers_come_in_preference_order_and_unknown_ones_are_dropped(machine) -> None:
    machine(
        torch=None,
        ort=fake_ort(
            CPU, "AzureExecutionProvider", OPENVINO, "TensorrtExecutionProvider", DML, COREML, CUDA
        ),
    )

    assert available_onnx_providers() == [CUDA, COREML, DML, OPENVINO, CPU]
    assert onnx_providers() == [CUDA, COREML, DML, OPENVINO, CPU]


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ("auto", [CUDA, COREML, OPENVINO, CPU]),
        ("cuda", [CUDA, CPU]),
        ("mps", [COREML, CPU]),
        ("cpu", [CPU]),
    ],
)
def test_explicit_request_narrows_providers_to_that_device_plus_cpu(
    machine, request_: str, expected: list[str]
) -> None:
    machine(torch=None, ort=fake_ort(OPENVINO, CPU, COREML, CUDA))
    assert onnx_providers(request_) == expected


def test_cpu_is_always_last(machine) -> None:
    machine(torch=None, ort=fake_ort(CPU, DML))
    providers = onnx_providers("auto")
    assert providers[-1] == CPU and providers == [DML, CPU]


# --- one worker per GPU: the index survives ------------------------------------------------

TWO_GPUS = (fake_gpu("NVIDIA RTX A6000", 48), fake_gpu("NVIDIA H100", 80))


@pytest.fixture
def two_gpus(machine) -> None:
    """A 2-GPU CUDA machine with onnxruntime-gpu."""
    machine(torch=fake_torch(TWO_GPUS), ort=fake_ort(CPU, CUDA), nvidia_driver=True, nvidia_gpus=2)


def test_second_gpu_report_names_its_index_and_gpu(two_gpus) -> None:
    report = resolve_device("cuda:1")

    assert (report.index, report.name, report.torch_device) == (1, "NVIDIA H100", "cuda:1")
    assert report.spec == "cuda:1" and report.to_dict()["index"] == 1
    assert torch_device("cuda:1") == ("torch.device", "cuda:1")


@pytest.mark.parametrize(("asked", "device_id"), [("cuda:1", 1), ("cuda:0", 0), ("cuda", 0)])
def test_onnx_cuda_provider_gets_the_gpu_index_as_device_id(
    two_gpus, asked: str, device_id: int
) -> None:
    assert onnx_provider_options(asked) == [(CUDA, {"device_id": device_id}), (CPU, {})]


def test_auto_on_a_gpu_machine_puts_onnx_on_gpu_0(two_gpus) -> None:
    assert resolve_device("auto").index == 0
    assert onnx_provider_options("auto") == [(CUDA, {"device_id": 0}), (CPU, {})]


def test_providers_without_an_index_get_no_options(machine) -> None:
    machine(torch=fake_torch(mps=True), ort=fake_ort(CPU, COREML), apple_silicon=True)

    assert onnx_provider_options("mps") == [(COREML, {}), (CPU, {})]
    assert onnx_provider_options("cpu") == [(CPU, {})]
    assert resolve_device("mps").index is None and resolve_device("cpu").index is None


def test_tensorrt_runs_on_the_same_gpu_as_cuda(two_gpus, monkeypatch: pytest.MonkeyPatch) -> None:
    # TensorRT is not preferred by default (its engines build for minutes); when it is, it
    # must land on the asked GPU like CUDA.
    trt = "TensorrtExecutionProvider"
    monkeypatch.setattr(device, "ONNX_PROVIDER_ORDER", (trt, *device.ONNX_PROVIDER_ORDER))
    monkeypatch.setattr(device, "_PROVIDERS_FOR_REQUEST", {"cuda": (trt, CUDA)})
    monkeypatch.setattr(device, "_onnxruntime", lambda: fake_ort(CPU, CUDA, trt))

    options = onnx_provider_options("cuda:1")

    assert options == [(trt, {"device_id": 1}), (CUDA, {"device_id": 1}), (CPU, {})]


@pytest.mark.parametrize("check", [resolve_device, onnx_provider_options])
def test_an_index_the_machine_lacks_is_a_device_error_with_a_hint(two_gpus, check: Any) -> None:
    with pytest.raises(DeviceError, match="'cuda:7': this machine has 2 CUDA device") as info:
        check("cuda:7")

    assert "cuda:0 to cuda:1" in info.value.hint
    assert info.value.exit_code == 5


def test_without_torch_the_driver_counts_the_gpus(machine) -> None:
    machine(torch=None, ort=fake_ort(CPU, CUDA), nvidia_driver=True, nvidia_gpus=2)

    report = resolve_device("cuda:1")

    assert report.index == 1 and report.torch_device == "cuda:1"
    assert report.name == "NVIDIA GPU 1 (via onnxruntime)"
    assert onnx_provider_options("cuda:1") == [(CUDA, {"device_id": 1}), (CPU, {})]
    with pytest.raises(DeviceError, match="2 CUDA device"):
        resolve_device("cuda:2")


def test_onnx_options_check_the_index_without_importing_torch(
    two_gpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_torch() -> None:
        raise AssertionError("torch imported for ONNX Runtime options")

    monkeypatch.setattr(device, "_torch", no_torch)
    assert onnx_provider_options("cuda:1")[0] == (CUDA, {"device_id": 1})
    with pytest.raises(DeviceError, match="2 CUDA device"):
        onnx_provider_options("cuda:2")


def test_gpus_hidden_by_cuda_visible_devices_are_not_available(machine) -> None:
    machine(torch=None, ort=fake_ort(CPU, CUDA), nvidia_gpus=0)
    assert resolve_device("auto").kind == "cpu"
    with pytest.raises(DeviceError, match=r"available: cpu\)"):
        resolve_device("cuda")


def test_nvidia_gpu_count_follows_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert device._nvidia_gpu_count() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert device._nvidia_gpu_count() == 0


def test_vfx_device_with_an_index_reaches_torch_and_onnx(
    two_gpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VFX_DEVICE", "cuda:1")
    reload_settings()

    assert resolve_device().torch_device == "cuda:1"
    assert onnx_provider_options(get_settings().device)[0] == (CUDA, {"device_id": 1})


def test_device_kind_drops_the_index_without_probing() -> None:
    kinds = [device_kind(d) for d in ("cuda:1", "cuda", "mps", "cpu")]
    assert kinds == ["cuda", "cuda", "mps", "cpu"]


def test_each_gpu_gets_its_own_onnx_session(
    two_gpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vfxmocap.models import onnx_runtime
    from vfxmocap.models.cache import ModelCache

    model = tmp_path / "model.onnx"
    model.write_bytes(b"weights")
    cache = ModelCache(budget_gb=1.0)
    loads: list[Any] = []
    monkeypatch.setattr(onnx_runtime, "model_cache", lambda: cache)
    monkeypatch.setattr(onnx_runtime, "_load", lambda path, providers: loads.append(providers))

    for asked in ("cuda:0", "cuda:1", "cuda:1", "cuda"):
        onnx_runtime.session(model, asked)

    assert loads == [
        [(CUDA, {"device_id": 0}), (CPU, {})],
        [(CUDA, {"device_id": 1}), (CPU, {})],
    ]  # cuda:1 loaded once; "cuda" is GPU 0's session
    assert len(cache.cached()) == 2 and cache.hits == 2


def test_a_worker_process_gets_the_gpu_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real spawned worker: it is handed `cuda:1`, not the kind `cuda`; the job queue's
    pool stays `cuda` (any GPU of this class may take it)."""
    from vfxmocap.jobs.service import JobService

    monkeypatch.setenv("VFX_WORKFLOW_MODULES", json.dumps(["tests.plugin_device"]))
    reload_settings()
    service = JobService(Settings(data_dir=tmp_path, workers=1), device="cuda:1")
    runner = service.runner
    assert (service.device, runner.device, runner.pool) == ("cuda", "cuda:1", "cuda")
    service.start()
    try:
        job = service.submit("which_device", {})
        done = _finished(service, job.id)
    finally:
        service.stop(grace_s=1.0)

    assert done.state.value == "succeeded", done.error
    assert done.summary == {"VFX_DEVICE": "cuda:1", "settings": "cuda:1"}
    assert done.queue == "cuda" and done.route == "local workers (cuda:1)"


def _finished(service: Any, job_id: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while (job := service.store.get(job_id)).state.value not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


def test_celery_worker_advert_names_its_gpu(two_gpus) -> None:
    pytest.importorskip("celery")
    from vfxmocap.jobs.celery_app import device_advert

    advert = device_advert(resolve_device("cuda:1"))

    assert advert == {"device_spec": "cuda:1", "gpu": {"index": 1, "name": "NVIDIA H100"}}


def test_api_system_names_the_gpu_of_the_workers(
    two_gpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from vfxmocap.api.app import create_app
    from vfxmocap.jobs.service import JobService

    service = JobService(Settings(data_dir=tmp_path, workers=0), device="cuda:1")
    with TestClient(create_app(service, start=False), base_url="http://127.0.0.1:8420") as client:
        reported = client.get("/api/system").json()["device"]

    assert (reported["torch_device"], reported["index"]) == ("cuda:1", 1)
    assert reported["name"] == "NVIDIA H100"


def test_the_uvicorn_factory_gives_its_workers_the_gpu_index(
    two_gpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vfxmocap.api import app

    monkeypatch.setenv("VFX_DEVICE", "cuda:1")
    reload_settings()
    monkeypatch.setattr(app, "JobService", lambda device: device)
    monkeypatch.setattr(app, "create_app", lambda service: service)

    assert app.default_app() == "cuda:1"


# --- the commands hand their workers the exact GPU --------------------------------------------


@pytest.fixture
def vfx_in_process(monkeypatch: pytest.MonkeyPatch):
    """`vfx ARGS` run in this process (so the simulated machine applies), returning its
    exit code; it may set VFX_DEVICE, which the test's end restores."""
    import importlib

    from vfxmocap.cli import main

    cli_app = importlib.import_module("vfxmocap.cli.app")  # the package's `app` is the Typer
    monkeypatch.setenv("VFX_DEVICE", "auto")
    monkeypatch.setattr(cli_app, "setup_logging", lambda *args: None)
    return main


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--device", "cuda:1", "serve"], "auto"), (["serve"], "cuda:1")],
)
def test_serve_gives_its_workers_the_gpu_index(
    two_gpus, vfx_in_process, monkeypatch: pytest.MonkeyPatch, args: list[str], env: str
) -> None:
    import sys

    import uvicorn

    from vfxmocap.api import app as api_app
    from vfxmocap.jobs import service

    monkeypatch.setenv("VFX_DEVICE", env)
    services: list[str] = []
    monkeypatch.setattr(service, "JobService", lambda settings, device: services.append(device))
    monkeypatch.setattr(api_app, "create_app", lambda svc: None)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    monkeypatch.setattr(sys, "setswitchinterval", lambda s: None)

    assert vfx_in_process(args) == 0
    assert services == ["cuda:1"]


@pytest.fixture
def worker_children(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """The environments of the children `vfx worker` starts; each child "runs" until the
    worker is stopped (SIGTERM), so there is no restart."""
    import signal
    import subprocess

    envs: list[dict[str, str]] = []
    handlers: dict[int, Any] = {}

    def popen(command: list[str], env: dict[str, str]) -> SimpleNamespace:
        envs.append(env)

        def wait() -> int:
            handlers[signal.SIGTERM](signal.SIGTERM, None)  # stopped while the child runs
            return 0

        return SimpleNamespace(wait=wait, poll=lambda: 0)

    monkeypatch.setattr(signal, "signal", handlers.__setitem__)
    monkeypatch.setattr(subprocess, "Popen", popen)
    return envs


@pytest.mark.parametrize(
    "args",
    [["worker", "--device", "cuda:1"], ["--device", "cuda:1", "worker"], ["worker"]],
)
def test_celery_worker_child_runs_on_the_asked_gpu(
    two_gpus, vfx_in_process, worker_children, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    if args == ["worker"]:
        monkeypatch.setenv("VFX_DEVICE", "cuda:1")

    assert vfx_in_process([*args, "--broker", "redis://broker:6379/0"]) == 0
    assert [env["VFX_DEVICE"] for env in worker_children] == ["cuda:1"]


def test_celery_worker_on_a_gpu_the_machine_lacks_never_starts(
    two_gpus, vfx_in_process, worker_children
) -> None:
    code = vfx_in_process(["worker", "--device", "cuda:7", "--broker", "redis://broker:6379/0"])

    assert code == 5 and worker_children == []


# --- reports --------------------------------------------------------------------------------


def test_report_to_dict_is_json_serialisable(machine) -> None:
    machine(torch=fake_torch((fake_gpu("RTX", 24),)), ort=fake_ort(CUDA, CPU), nvidia_driver=True)

    data = json.loads(json.dumps(resolve_device("auto").to_dict()))

    assert data["tier"] == "gpu-large" and type(data["tier"]) is str
    assert data["kind"] == "cuda"
    assert data["onnx_providers"] == [CUDA, CPU]
    assert data["warnings"] == []


def test_torch_device_returns_the_torch_device_of_the_resolved_device(machine) -> None:
    machine(torch=fake_torch((fake_gpu("RTX", 24),)), ort=fake_ort(CUDA, CPU))
    assert torch_device("auto") == ("torch.device", "cuda:0")


def test_torch_device_without_torch_is_a_device_error(machine) -> None:
    machine(torch=None, ort=fake_ort(CPU))
    with pytest.raises(DeviceError, match="torch is not installed"):
        torch_device("cpu")


# --- the real machine -----------------------------------------------------------------------


def test_real_machine_cpu_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """No fakes: the installed onnxruntime (CPU build) and torch 2.13 CPU build."""
    torch = require("torch")
    monkeypatch.delenv("VFX_DEVICE", raising=False)
    reload_settings()

    report = resolve_device("cpu")

    assert report.kind == "cpu" and report.dtype == "float32"
    assert report.onnx_providers == [CPU]
    assert report.memory_gb > 0
    assert report.torch_version is not None and report.torch_version.startswith("2.13")
    assert report.onnxruntime_version is not None
    # The installed onnxruntime also offers AzureExecutionProvider, which is not used.
    assert "AzureExecutionProvider" not in available_onnx_providers()
    assert available_onnx_providers()[-1] == CPU
    assert torch_device("cpu") == torch.device("cpu")


def test_onnx_runtime_keeps_its_files_in_the_models_dir(tmp_path: Path) -> None:
    """ONNX Runtime's import writes a telemetry device id and event store under the XDG
    cache (~/.cache): with vfx they land in VFX_MODELS_DIR, and nothing in HOME."""
    from tests.conftest import run_vfx

    home, models = tmp_path / "home", tmp_path / "models"
    home.mkdir()
    env = {"HOME": str(home), "VFX_MODELS_DIR": str(models)}
    ci = ("CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL")  # ORT writes none
    result = run_vfx("doctor", "--json", env=env, drop=("XDG_CACHE_HOME", *ci), timeout=120)
    assert result.returncode == 0, result.stderr
    assert not (home / ".cache" / "Microsoft").exists()
    written = list((models / ".onnxruntime").rglob("*"))
    assert all(p.is_dir() or p.name in ("deviceid", "onnxruntime.db") for p in written)


def test_an_mps_machine_budgets_jobs_with_the_memory_the_planner_uses(
    machine, tmp_path: Path
) -> None:
    """A 16 GB Mac: Metal lets a process use 12 GB. The planner, the job service's budget,
    routing and readiness all count 12 GB, so a 13 GB job is refused up front rather than
    admitted and then failing in the planner."""
    from vfxmocap.generation.families import family_of
    from vfxmocap.generation.planner import MemoryFigures, Offload, plan
    from vfxmocap.jobs.service import JobService
    from vfxmocap.models.store import ModelStore
    from vfxmocap.workflows import Resources, get_workflow
    from vfxmocap.workflows.readiness import gaps

    machine(torch=fake_torch(mps=True), ort=fake_ort(COREML, CPU), apple_silicon=True, ram_gb=16)
    report = resolve_device("mps")
    assert (report.memory_gb, report.usable_memory_gb) == (16.0, 12.0)
    assert report.to_dict()["usable_memory_gb"] == 12.0
    service = JobService(Settings(data_dir=tmp_path, workers=1), device="mps")
    try:
        assert service.memory_gb == 12.0
    finally:
        service.store.dispose()
    big = Resources(memory_gb=13.0)
    assert big.unmet("mps", service.memory_gb, None) == "needs 13 GB of memory (has 12 GB)"
    flow = dataclasses.replace(get_workflow("probe"), resources=big)
    memory = [g.what for g in gaps(flow, report, ModelStore(tmp_path)) if g.kind == "memory"]
    assert memory == ["13 GB of mps memory (has 12 GB usable)"]
    wan = family_of("WanPipeline", "wan")
    figures = MemoryFigures.from_tiers({tier.value: 13.0 for tier in Offload}, "13 GB at best")
    with pytest.raises(InsufficientMemory):
        plan(report, figures, wan)
