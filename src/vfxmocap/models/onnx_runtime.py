"""ONNX Runtime sessions on the device layer's providers, and reading a model's weights
without the `onnx` package (which would pull protobuf 6 and break MediaPipe)."""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vfxmocap.core.errors import (
    DeviceError,
    ModelMissing,
    VfxError,
    insufficient_memory,
    typed_memory_errors,
)
from vfxmocap.device import onnx_provider_options, onnxruntime_module
from vfxmocap.models.cache import model_cache

# TensorProto.DataType -> numpy
_DTYPES = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    6: np.int32,
    7: np.int64,
    10: np.float16,
    11: np.float64,
}


_Providers = list[tuple[str, dict[str, Any]]]  # (provider name, its options: the GPU index)


def session(
    path: Path,
    device: str | None = None,
    *,
    adjust: Callable[[_Providers], _Providers] | None = None,
) -> Any:
    """An inference session on the best providers for `device` (default: VFX_DEVICE),
    kept warm in the model cache: the same file on the same providers and GPU loads once.
    `adjust` rewrites the provider list first (a model whose operators some provider
    cannot run keeps them off it)."""
    from vfxmocap.core.config import get_settings

    providers = onnx_provider_options(device or get_settings().device)
    if adjust is not None:
        providers = adjust(providers)
    if not providers:
        raise DeviceError(
            "onnxruntime offers no execution provider",
            hint="Reinstall onnxruntime (or onnxruntime-gpu).",
        )
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise ModelMissing(f"{path}: {exc.strerror}", hint="Pull the model again.") from exc
    # The options hold the GPU index: a session on cuda:0 never serves cuda:1.
    placement = tuple((name, tuple(sorted(opts.items()))) for name, opts in providers)
    key = ("onnx", str(Path(path).resolve()), stat.st_mtime_ns, placement)
    # Weights plus runtime buffers: about 1.5x the file.
    size_gb = 1.5 * stat.st_size / 2**30
    return model_cache().get(key, lambda: _load(path, providers), size_gb)


class OnnxSession:
    """An ONNX Runtime session whose `run` reports a device out of memory as
    InsufficientMemory (retryable), for every model and engine that runs one."""

    def __init__(self, inner: Any, path: Path) -> None:
        self.inner = inner
        self.path = path

    def get_inputs(self) -> Any:
        return self.inner.get_inputs()

    def get_outputs(self) -> Any:
        return self.inner.get_outputs()

    def get_providers(self) -> list[str]:
        providers: list[str] = self.inner.get_providers()
        return providers

    def run(self, output_names: list[str] | None, feeds: dict[str, Any]) -> list[Any]:
        with typed_memory_errors(f"running {self.path.name} on {self.get_providers()[0]}"):
            outputs: list[Any] = self.inner.run(output_names, feeds)
        return outputs


def _load(path: Path, providers: _Providers) -> OnnxSession:
    ort = onnxruntime_module()

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        inner = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime's errors share no base class but Exception
        raise _load_error(path, providers, exc) from exc
    return OnnxSession(inner, Path(path))


# onnxruntime's errors for a file that is not a usable model; its loader also prefixes
# every parse or graph failure with "Load model from <path> failed".
_BAD_MODEL_TYPES = frozenset({"InvalidProtobuf", "InvalidGraph", "NoModel", "NoSuchFile"})


def _load_error(path: Path, providers: _Providers, error: Exception) -> VfxError:
    """What a failed session start means: the device's memory, the file, or the device."""
    oom = insufficient_memory(error, f"{path}: loading the model")
    if oom is not None:
        return oom
    if type(error).__name__ in _BAD_MODEL_TYPES or "load model from" in str(error).lower():
        return ModelMissing(
            f"{path}: not a loadable ONNX model ({error})",
            hint="Delete the file and pull the model again.",
        )
    names = ", ".join(name for name, _ in providers)
    return DeviceError(
        f"{path}: onnxruntime could not start the model on {names} ({error})",
        hint="Run `vfx doctor` to check the device and its runtime libraries "
        "(CUDA, cuDNN, onnxruntime-gpu), or run on the CPU: `vfx --device cpu ...`.",
    )


# --- a minimal protobuf reader: just enough to find an ONNX initializer -------------------


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value end | varint value) over a message."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value, value
        elif wire == 1:
            yield number, wire, pos, pos + 8
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            yield number, wire, pos, pos + length
            pos += length
        elif wire == 5:
            yield number, wire, pos, pos + 4
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def read_initializer(path: Path, index: int = -1) -> NDArray[Any]:
    """The `index`-th initializer (weight tensor) of an ONNX file, e.g. inswapper's `emap`,
    read through mmap so a 500 MB model is not loaded into memory."""
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        buf = memoryview(mm)
        try:
            graph = next((s, e) for n, w, s, e in _fields(buf, 0, len(buf)) if n == 7 and w == 2)
            spans = [(s, e) for n, w, s, e in _fields(buf, *graph) if n == 5 and w == 2]
            tensor = _tensor(buf, *spans[index])
        finally:
            buf.release()
    return tensor


def _tensor(buf: memoryview, start: int, end: int) -> NDArray[Any]:
    dims: list[int] = []
    dtype, raw, floats = 1, None, None
    for number, wire, s, e in _fields(buf, start, end):
        if number == 1:
            if wire == 0:
                dims.append(s)
            else:  # packed
                pos = s
                while pos < e:
                    value, pos = _varint(buf, pos)
                    dims.append(value)
        elif number == 2:
            dtype = s
        elif number == 4:
            floats = np.frombuffer(buf[s:e], dtype="<f4").copy()
        elif number == 9:
            raw = bytes(buf[s:e])
    np_type = _DTYPES.get(dtype)
    if np_type is None:
        raise ValueError(f"unsupported tensor data type {dtype}")
    data = (
        np.frombuffer(raw, dtype=np.dtype(np_type).newbyteorder("<")) if raw is not None else floats
    )
    if data is None:
        raise ValueError("tensor has no data")
    return np.asarray(data, dtype=np_type).reshape(dims)
