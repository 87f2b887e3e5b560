"""The compute device: the only module that asks whether CUDA, MPS or CoreML is here.

Torch and ONNX Runtime are optional and imported lazily, so `vfx doctor` works on a
machine that has neither. Everything else calls `resolve_device()` / `onnx_providers()`.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import platform
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Any

from vfxmocap.core.config import get_settings
from vfxmocap.core.errors import DeviceError

VALID_DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")

# Preference order of ONNX Runtime execution providers: fastest first, CPU always last.
ONNX_PROVIDER_ORDER = (
    "CUDAExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)
# An explicit device request narrows the providers to that device (and CPU as fallback).
_PROVIDERS_FOR_REQUEST = {
    "cuda": ("CUDAExecutionProvider",),
    "mps": ("CoreMLExecutionProvider",),
    "cpu": (),
}
# Providers that run on one CUDA GPU and take its ordinal as `device_id`.
_INDEXED_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
# Metal lets one process use about this share of unified memory.
_MPS_USABLE_FRACTION = 0.75


class Tier(StrEnum):
    """Coarse capability class used to pick defaults and route jobs."""

    CPU = "cpu"
    SMALL = "gpu-small"  # < 8 GB usable
    MEDIUM = "gpu-medium"  # 8-16 GB
    LARGE = "gpu-large"  # 16-40 GB
    XL = "gpu-xl"  # >= 40 GB


@dataclass(frozen=True)
class DeviceReport:
    """What `resolve_device()` found: enough to choose models, dtypes and batch sizes."""

    kind: str  # cuda | mps | cpu
    torch_device: str  # "cuda:0", "mps" or "cpu"
    name: str
    memory_gb: float
    dtype: str  # float16 on accelerators, float32 on CPU
    tier: Tier
    onnx_providers: list[str]
    requested: str
    index: int | None = None  # the CUDA ordinal; MPS and CPU have none
    # Native bfloat16 arithmetic: CUDA compute capability 8.0 (Ampere) and later.
    bf16: bool = False
    torch_version: str | None = None
    onnxruntime_version: str | None = None
    warnings: list[str] = field(default_factory=list)
    # What this process may still allocate there, when the device can tell: CUDA's free
    # memory plus what this process's allocator holds (its warm pipelines are its own to
    # give back); on MPS Metal's recommended working set, less what other processes leave
    # of unified memory; on CPU the RAM the OS reports available. None: not known (the
    # planner then counts `usable_memory_gb`).
    free_memory_gb: float | None = None

    @property
    def usable_memory_gb(self) -> float:
        """What one process may allocate on it: Metal caps a process below unified memory.
        Every memory decision (planning, routing, job budgets, readiness) reads this;
        `memory_gb` is what the machine has, for reports."""
        return usable_memory_gb(self.kind, self.memory_gb)

    @property
    def spec(self) -> str:
        """The exact device to hand a worker process ("cuda:1", "mps", "cpu")."""
        return self.torch_device

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tier"] = self.tier.value
        data["usable_memory_gb"] = self.usable_memory_gb
        return data


def usable_memory_gb(kind: str, memory_gb: float) -> float:
    """The share of a device's memory one process may allocate (all of it but on MPS)."""
    return round(memory_gb * (_MPS_USABLE_FRACTION if kind == "mps" else 1.0), 2)


def _import_optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _torch() -> ModuleType | None:
    return _import_optional("torch")


def _onnxruntime() -> ModuleType | None:
    """ONNX Runtime, its telemetry events off. Its import writes a device id and an event
    store under $XDG_CACHE_HOME (else ~/.cache)/Microsoft/DeveloperTools: that variable,
    read then, points into the models dir for the import only, so VFX_MODELS_DIR holds it."""
    if "onnxruntime" not in sys.modules:
        with _environment(XDG_CACHE_HOME=str(get_settings().models_dir / ".onnxruntime")):
            _import_optional("onnxruntime")
    ort = sys.modules.get("onnxruntime")
    if ort is not None and hasattr(ort, "disable_telemetry_events"):
        ort.disable_telemetry_events()
    return ort


def onnxruntime_module() -> ModuleType:
    """ONNX Runtime imported as above, for whoever builds sessions."""
    ort = _onnxruntime()
    if ort is None:
        raise ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime")
    return ort


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """These environment variables set for the block, then restored."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _system_memory_gb() -> float:
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0.0
    return round(pages * page_size / 1024**3, 1)


def _available_memory_gb() -> float | None:
    """RAM the OS says new allocations may take (MemAvailable), else psutil's figure."""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        match = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo.read_text(), re.MULTILINE)
        if match:
            return round(int(match.group(1)) * 1024 / 1024**3, 2)
    psutil = _import_optional("psutil")
    if psutil is None:
        return None
    return round(float(psutil.virtual_memory().available) / 1024**3, 2)


def _free_memory_gb(kind: str, torch: ModuleType | None, index: int | None) -> float | None:
    """`DeviceReport.free_memory_gb`: probed now, so a job plans with what is free when it
    starts, not with what the machine has."""
    if kind == "cpu":
        return _available_memory_gb()
    if torch is None:
        return None
    if kind == "cuda":
        mem_get_info = getattr(torch.cuda, "mem_get_info", None)
        if mem_get_info is None:
            return None
        free, _total = mem_get_info(index or 0)
        ours = getattr(torch.cuda, "memory_reserved", lambda _i: 0)(index or 0)
        return round(float(free + ours) / 1024**3, 2)
    mps = getattr(torch, "mps", None)
    working_set = getattr(mps, "recommended_max_memory", None)
    if working_set is None:
        return None
    cap = float(working_set()) / 1024**3
    ram = _available_memory_gb()
    if ram is None:
        return round(cap, 2)
    ours = float(getattr(mps, "driver_allocated_memory", lambda: 0)()) / 1024**3
    return round(min(cap, ram + ours), 2)


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine() or "CPU"


def _is_apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def _nvidia_driver_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def _nvidia_gpu_count() -> int | None:
    """GPUs CUDA would number, when torch cannot say: CUDA_VISIBLE_DEVICES, else the
    driver's list; None when neither tells (then an index is not checked)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else None


def available_onnx_providers() -> list[str]:
    """Providers the installed onnxruntime offers, in our preference order."""
    ort = _onnxruntime()
    if ort is None:
        return []
    offered = set(ort.get_available_providers())
    return [p for p in ONNX_PROVIDER_ORDER if p in offered]


def _cuda_available(torch: ModuleType | None) -> bool:
    if torch is not None:
        return bool(torch.cuda.is_available())
    # onnxruntime-gpu offers its provider even when CUDA_VISIBLE_DEVICES hides every GPU.
    return "CUDAExecutionProvider" in available_onnx_providers() and _nvidia_gpu_count() != 0


def _mps_available(torch: ModuleType | None) -> bool:
    if torch is not None:
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available())
    return _is_apple_silicon() and "CoreMLExecutionProvider" in available_onnx_providers()


def _parse_request(requested: str) -> tuple[str, int | None]:
    value = requested.strip().lower()
    match = re.fullmatch(r"(auto|cpu|mps|cuda)(?::(\d+))?", value)
    if not match or (match.group(2) is not None and match.group(1) != "cuda"):
        raise DeviceError(
            f"unknown device {requested!r}; valid values: {', '.join(VALID_DEVICES)}",
            hint="Set VFX_DEVICE (or --device) to one of the valid values.",
        )
    index = int(match.group(2)) if match.group(2) is not None else None
    return match.group(1), index


def _checked_cuda_index(request: str, index: int | None, count: int | None) -> int:
    """The CUDA ordinal asked for (0 when none), refused when this machine has no such GPU
    (`count` None: unknown, not checked)."""
    index = index or 0
    if count is not None and index >= count:
        valid = f"cuda:0 to cuda:{count - 1}" if count > 1 else "cuda or cuda:0"
        raise DeviceError(
            f"device {request!r}: this machine has {count} CUDA device(s)",
            hint=f"Use {valid} (see `vfx doctor`), in --device or VFX_DEVICE.",
        )
    return index


def device_kind(request: str) -> str:
    """The class of a device request ("cuda:1" -> "cuda"), without probing the machine."""
    return _parse_request(request)[0]


def _tier_for(kind: str, memory_gb: float) -> Tier:
    if kind == "cpu":
        return Tier.CPU
    usable = usable_memory_gb(kind, memory_gb)
    if usable >= 40:
        return Tier.XL
    if usable >= 16:
        return Tier.LARGE
    if usable >= 8:
        return Tier.MEDIUM
    return Tier.SMALL


def onnx_providers(request: str = "auto") -> list[str]:
    """ONNX Runtime providers for a device request, preferred first, CPU last.

    `auto` takes every accelerator onnxruntime offers; `cuda`, `mps` or `cpu` keep
    only that device's provider (plus CPU, which runs the operators it cannot).
    """
    kind, _ = _parse_request(request)
    offered = available_onnx_providers()
    if kind == "auto":
        return offered
    wanted = {*_PROVIDERS_FOR_REQUEST[kind], "CPUExecutionProvider"}
    return [p for p in offered if p in wanted]


def onnx_provider_options(request: str = "auto") -> list[tuple[str, dict[str, Any]]]:
    """`onnx_providers(request)` with each provider's options for ONNX Runtime: the CUDA
    and TensorRT providers get the request's GPU as `device_id` (GPU 0 for auto / cuda)."""
    _, index = _parse_request(request)
    providers = onnx_providers(request)
    if not any(p in _INDEXED_PROVIDERS for p in providers):
        return [(p, {}) for p in providers]
    # The driver's count, not torch's: a worker that runs only ONNX should not import torch.
    device_id = _checked_cuda_index(request, index, _nvidia_gpu_count()) if index else 0
    return [(p, {"device_id": device_id} if p in _INDEXED_PROVIDERS else {}) for p in providers]


def _advice(kind: str, torch: ModuleType | None, providers: list[str]) -> list[str]:
    """Say loudly what the old tools hid: an accelerator present but unused."""
    notes = []
    if _is_apple_silicon() and kind == "cpu":
        notes.append(
            "Apple Silicon detected but running on CPU: install an arm64 build of torch "
            "with MPS support and onnxruntime>=1.17 (CoreML provider)."
        )
    if _nvidia_driver_present() and kind != "cuda":
        notes.append(
            "An NVIDIA driver is present but CUDA is not used: install a CUDA build of torch "
            "and onnxruntime-gpu (see README, Hardware)."
        )
    if kind == "cuda" and "CUDAExecutionProvider" not in providers:
        notes.append(
            "torch sees CUDA but onnxruntime has no CUDAExecutionProvider: ONNX models run on "
            "CPU. Replace onnxruntime with onnxruntime-gpu."
        )
    if torch is None:
        notes.append("torch is not installed: torch-based models (generation) are unavailable.")
    return notes


def resolve_device(requested: str | None = None) -> DeviceReport:
    """Pick the device: the request (argument, then VFX_DEVICE) or CUDA -> MPS -> CPU."""
    request = requested if requested is not None else get_settings().device
    asked, index = _parse_request(request)
    kind = asked
    torch = _torch()
    cuda, mps = _cuda_available(torch), _mps_available(torch)

    if kind == "auto":
        kind = "cuda" if cuda else "mps" if mps else "cpu"
    elif (kind == "cuda" and not cuda) or (kind == "mps" and not mps):
        found = ["cpu"] + (["cuda"] if cuda else []) + (["mps"] if mps else [])
        raise DeviceError(
            f"device {request!r} is not available on this machine (available: {', '.join(found)})",
        )

    name, memory_gb, torch_device = _cpu_name(), _system_memory_gb(), "cpu"
    bf16 = False
    if kind == "cuda":
        count = int(torch.cuda.device_count()) if torch is not None else _nvidia_gpu_count()
        index = _checked_cuda_index(request, index, count)
        torch_device = f"cuda:{index}"
        if torch is not None:
            props = torch.cuda.get_device_properties(index)
            name, memory_gb = str(props.name), round(props.total_memory / 1024**3, 1)
            bf16 = int(getattr(props, "major", 0)) >= 8
        else:
            name, memory_gb = f"NVIDIA GPU {index} (via onnxruntime)", 0.0
    elif kind == "mps":
        # Unified memory: the GPU shares system RAM.
        torch_device, name = "mps", f"Apple Silicon GPU ({platform.machine()})"

    providers = onnx_providers(asked)
    ort = _onnxruntime()
    return DeviceReport(
        kind=kind,
        torch_device=torch_device,
        name=name,
        memory_gb=memory_gb,
        dtype="float32" if kind == "cpu" else "float16",
        tier=_tier_for(kind, memory_gb),
        onnx_providers=providers,
        requested=request,
        index=index,
        bf16=bf16,
        torch_version=getattr(torch, "__version__", None) if torch else None,
        onnxruntime_version=getattr(ort, "__version__", None) if ort else None,
        warnings=_advice(kind, torch, providers),
        free_memory_gb=_free_memory_gb(kind, torch, index),
    )


def release_memory(torch_device: str) -> None:
    """Give back what a failed run left allocated: the garbage first (tensors held in
    reference cycles), then the blocks the accelerator's caching allocator keeps."""
    gc.collect()
    torch = sys.modules.get("torch")  # nothing to release where torch never ran
    if torch is None:
        return
    kind = device_kind(torch_device)
    if kind == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif kind == "mps" and _mps_available(torch):
        torch.mps.empty_cache()


def torch_device(requested: str | None = None) -> Any:
    """The `torch.device` to run on; raises DeviceError when torch is missing."""
    torch = _torch()
    if torch is None:
        raise DeviceError(
            "torch is not installed",
            hint="pip install 'vfxmocap[gen]' (with the torch build for your hardware).",
        )
    return torch.device(resolve_device(requested).torch_device)
