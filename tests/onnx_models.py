"""Small ONNX models with the real models' input and output names and shapes.

The real weights (inswapper 554 MB, ArcFace 174 MB, GFPGAN 340 MB) cannot be downloaded
here, so tests run the whole pre-processing, alignment and paste-back path on models built
from these graphs, and the real files are used when a user places them in the model store.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def inswapper(path: Path, *, tint: float = 0.0, seed: int = 0) -> Path:
    """target (1,3,128,128) in [0,1] + source (1,512) -> output (1,3,128,128).

    output = clip(target + tint * source @ W): with tint 0 it hands the aligned target back,
    which pins down alignment and paste-back; with tint it colours the face by identity.
    The last initializer is `emap` (512x512), where inswapper keeps it.
    """
    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array((rng.normal(0, 1, (512, 3)) * tint).astype(np.float32), "W")
    shape = numpy_helper.from_array(np.array([1, 3, 1, 1], np.int64), "shape")
    lo = numpy_helper.from_array(np.array(0.0, np.float32), "lo")
    hi = numpy_helper.from_array(np.array(1.0, np.float32), "hi")
    emap_values = np.linalg.qr(rng.normal(size=(512, 512)))[0].astype(np.float32)
    emap = numpy_helper.from_array(emap_values, "emap")
    nodes = [
        helper.make_node("MatMul", ["source", "W"], ["shift"]),
        helper.make_node("Reshape", ["shift", "shape"], ["shift4"]),
        helper.make_node("Add", ["target", "shift4"], ["sum"]),
        helper.make_node("Clip", ["sum", "lo", "hi"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "inswapper_test",
        [
            helper.make_tensor_value_info("target", TensorProto.FLOAT, [1, 3, 128, 128]),
            helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, 512]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 128, 128])],
        initializer=[weights, shape, lo, hi, emap],
    )
    return _save(graph, path)


def arcface(path: Path, *, seed: int = 1) -> Path:
    """input.1 (1,3,112,112) -> 683 (1,512): pooled colour and a coarse 4x4 layout, projected."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(0, 1, (48, 512)).astype(np.float32), "W")
    flat = numpy_helper.from_array(np.array([1, 48], np.int64), "flat")
    nodes = [
        helper.make_node(
            "AveragePool", ["input.1"], ["pooled"], kernel_shape=[28, 28], strides=[28, 28]
        ),
        helper.make_node("Reshape", ["pooled", "flat"], ["vec"]),
        helper.make_node("MatMul", ["vec", "W"], ["683"]),
    ]
    graph = helper.make_graph(
        nodes,
        "arcface_test",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, 512])],
        initializer=[w, flat],
    )
    return _save(graph, path)


def enhancer(path: Path, *, codeformer: bool = False) -> Path:
    """GFPGAN's input (1,3,512,512) in [-1,1] -> output, the identity; CodeFormer adds `w`."""
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 512, 512])]
    nodes = [helper.make_node("Identity", ["input"], ["output"])]
    if codeformer:
        inputs = [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 512, 512]),
            helper.make_tensor_value_info("w", TensorProto.DOUBLE, [1]),
        ]
        nodes = [helper.make_node("Identity", ["x"], ["output"])]
    graph = helper.make_graph(
        nodes,
        "enhancer_test",
        inputs,
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 512, 512])],
    )
    return _save(graph, path)


def greedy_enhancer(path: Path) -> Path:
    """GFPGAN's signature, but it expands the face to 2**20 copies on the way: asking for
    3 TB, it runs out of memory for real on any device."""
    copies = numpy_helper.from_array(np.array([2**20, 3, 512, 512], np.int64), "copies")
    nodes = [
        helper.make_node("Expand", ["input", "copies"], ["many"]),
        helper.make_node("ReduceMean", ["many"], ["output"], axes=[0], keepdims=1),
    ]
    graph = helper.make_graph(
        nodes,
        "greedy_enhancer_test",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 512, 512])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 512, 512])],
        initializer=[copies],
    )
    return _save(graph, path)


def catalog_entry(name: str, task: str, path: Path) -> str:
    """A catalog TOML entry for a file placed in a model store folder."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    file = (
        f'{{ path = "{path.name}", sha256 = "{digest}", size = {path.stat().st_size}, '
        f'url = "http://127.0.0.1:9/{path.name}" }}'
    )
    return f"""
[[models]]
name = "{name}"
task = "{task}"
backend = "onnx"
description = "test model with the real model's inputs and outputs"
license = "test"
memory_gb = 0.1
source = {{ kind = "url" }}
files = [{file}]
"""
