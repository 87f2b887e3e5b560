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


def _save(graph: onnx.GraphProto, path: Path, opset: int = 13) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset < 19 else 9
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


# --- LivePortrait (FasterLivePortrait's ONNX export signatures) --------------------------

LIVEPORTRAIT_FILES = (
    "appearance_feature_extractor.onnx",
    "motion_extractor.onnx",
    "warping_spade.onnx",
    "stitching.onnx",
    "stitching_eye.onnx",
    "stitching_lip.onnx",
)


def _f32(rng: np.random.Generator, shape: tuple[int, ...], scale: float, name: str):
    return numpy_helper.from_array((rng.normal(0, 1, shape) * scale).astype(np.float32), name)


def _value(name: str, shape: list[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def lp_appearance(path: Path, *, seed: int = 10) -> Path:
    """img (1,3,256,256) -> output (1,32,16,64,64): the image pooled to 64x64 and spread by a
    1x1 convolution into 32 channels x 16 depths; channels 0-2 carry its R, G, B at every
    depth (so the warping stand-in can hand the crop back), the others random mixes."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0, 0.3, (512, 3, 1, 1)).astype(np.float32)
    for channel in range(3):
        weights[channel * 16 : (channel + 1) * 16] = 0.0
        weights[channel * 16 : (channel + 1) * 16, channel] = 1.0
    nodes = [
        helper.make_node("AveragePool", ["img"], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Conv", ["pooled", "W"], ["mixed"]),
        helper.make_node("Reshape", ["mixed", "shape"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "appearance_feature_extractor_test",
        [_value("img", [1, 3, 256, 256])],
        [_value("output", [1, 32, 16, 64, 64])],
        initializer=[
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(np.array([1, 32, 16, 64, 64], np.int64), "shape"),
        ],
    )
    return _save(graph, path)


def lp_motion(path: Path, *, seed: int = 11) -> Path:
    """img (1,3,256,256) -> pitch, yaw, roll (1,66) bins, t (1,3), exp (1,63), scale (1,1),
    kp (1,63): each a linear function of the crop pooled to 8x8 (centred on the crop's mean
    grey), so a different face, pose or expression gives different motion. kp and scale
    have a fixed part (a canonical 21-point layout, scale about 1.5), as the real model's."""
    rng = np.random.default_rng(seed)
    sizes = {"pitch": 66, "yaw": 66, "roll": 66, "t": 3, "exp": 63, "scale": 1, "kp": 63}
    gains = {
        "pitch": 2.0,
        "yaw": 2.0,
        "roll": 2.0,
        "t": 0.02,
        "exp": 0.02,
        "scale": 0.02,
        "kp": 0.01,
    }
    init = [
        numpy_helper.from_array(np.array([1, 192], np.int64), "flat"),
        numpy_helper.from_array(np.array(0.5, np.float32), "grey"),
    ]
    nodes = [
        helper.make_node(
            "AveragePool", ["img"], ["pooled"], kernel_shape=[32, 32], strides=[32, 32]
        ),
        helper.make_node("Reshape", ["pooled", "flat"], ["vec0"]),
        helper.make_node("Sub", ["vec0", "grey"], ["vec"]),
    ]
    bias = {
        "kp": rng.uniform(-0.6, 0.6, 63),
        "scale": np.array([1.5]),
        "pitch": -0.05 * (np.arange(66) - 32.5) ** 2 / 10,  # bins peaked near 0 degrees
    }
    bias["yaw"] = bias["roll"] = bias["pitch"]
    for name, size in sizes.items():
        init.append(_f32(rng, (192, size), gains[name], f"W_{name}"))
        b = bias.get(name, np.zeros(size))
        init.append(
            numpy_helper.from_array(np.asarray(b, np.float32).reshape(1, size), f"B_{name}")
        )
        nodes.append(helper.make_node("MatMul", ["vec", f"W_{name}"], [f"m_{name}"]))
        nodes.append(helper.make_node("Add", [f"m_{name}", f"B_{name}"], [name]))
    graph = helper.make_graph(
        nodes,
        "motion_extractor_test",
        [_value("img", [1, 3, 256, 256])],
        [_value(name, [1, size]) for name, size in sizes.items()],
        initializer=init,
    )
    return _save(graph, path)


def lp_warping(path: Path) -> Path:
    """feature_3d (1,32,16,64,64), kp_driving, kp_source (1,21,3) -> out (1,3,512,512).

    A real 5-D GridSample (opset 20, as torch exports volumetric grid_sample): the volume is
    sampled on an identity grid moved by the driving keypoints' mean offset from the
    source's, averaged over depth, its channels 0-2 taken as R, G, B and upsampled to 512.
    With the driving keypoints at the source's it hands back the crop the appearance
    stand-in saw (at 64 px detail); moving the keypoints moves the picture."""
    d, h, w = 16, 64, 64
    zs, ys, xs = np.meshgrid(
        np.linspace(-1, 1, d), np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij"
    )
    grid = np.stack([xs, ys, zs], axis=-1)[None].astype(np.float32)  # (1,D,H,W,3): x, y, z
    init = [
        numpy_helper.from_array(grid, "base_grid"),
        numpy_helper.from_array(np.array([1, 1, 1, 1, 3], np.int64), "shift_shape"),
        numpy_helper.from_array(np.eye(3, 32, dtype=np.float32)[:, :, None, None], "W"),
        numpy_helper.from_array(np.array([1, 1, 8, 8], np.float32), "scales"),
    ]
    nodes = [
        helper.make_node("Sub", ["kp_driving", "kp_source"], ["moved"]),
        helper.make_node("ReduceMean", ["moved"], ["shift0"], axes=[1], keepdims=1),
        helper.make_node("Reshape", ["shift0", "shift_shape"], ["shift"]),
        helper.make_node("Sub", ["base_grid", "shift"], ["grid"]),
        helper.make_node(
            "GridSample", ["feature_3d", "grid"], ["sampled"], mode="linear", align_corners=1
        ),
        helper.make_node("ReduceMean", ["sampled"], ["flat"], axes=[2], keepdims=0),
        helper.make_node("Conv", ["flat", "W"], ["small"]),
        helper.make_node("Resize", ["small", "", "scales"], ["out"], mode="linear"),
    ]
    graph = helper.make_graph(
        nodes,
        "warping_spade_test",
        [
            _value("feature_3d", [1, 32, 16, 64, 64]),
            _value("kp_driving", [1, 21, 3]),
            _value("kp_source", [1, 21, 3]),
        ],
        [_value("out", [1, 3, 512, 512])],
        initializer=init,
    )
    # ReduceMean takes axes as an attribute up to opset 17: keep it as an input at 20.
    for node in graph.node:
        if node.op_type == "ReduceMean":
            axes = next(a for a in node.attribute if a.name == "axes")
            name = f"{node.output[0]}_axes"
            graph.initializer.append(numpy_helper.from_array(np.array(axes.ints, np.int64), name))
            node.input.append(name)
            node.attribute.remove(axes)
    return _save(graph, path, opset=20)


def lp_linear(path: Path, inputs: int, outputs: int, *, gain: float, seed: int) -> Path:
    """input (1,N) -> output (1,M): the stitching and retargeting MLPs' signature, linear."""
    rng = np.random.default_rng(seed)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "W"], ["m"]),
            helper.make_node("Add", ["m", "B"], ["output"]),
        ],
        "stitching_test",
        [_value("input", [1, inputs])],
        [_value("output", [1, outputs])],
        initializer=[_f32(rng, (inputs, outputs), gain, "W"), _f32(rng, (1, outputs), gain, "B")],
    )
    return _save(graph, path)


def liveportrait(folder: Path) -> dict[str, Path]:
    """The six LivePortrait stand-ins in `folder`, under the export's file names."""
    return {
        "appearance_feature_extractor.onnx": lp_appearance(folder / LIVEPORTRAIT_FILES[0]),
        "motion_extractor.onnx": lp_motion(folder / LIVEPORTRAIT_FILES[1]),
        "warping_spade.onnx": lp_warping(folder / LIVEPORTRAIT_FILES[2]),
        "stitching.onnx": lp_linear(folder / "stitching.onnx", 126, 65, gain=0.002, seed=13),
        "stitching_eye.onnx": lp_linear(folder / "stitching_eye.onnx", 66, 63, gain=0.01, seed=14),
        "stitching_lip.onnx": lp_linear(folder / "stitching_lip.onnx", 65, 63, gain=0.01, seed=15),
    }
