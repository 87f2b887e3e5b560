"""The LivePortrait engine on real faces, through stand-in ONNX files with the public
FasterLivePortrait exports' inputs, outputs and dtypes (the real weights cannot be fetched
here): the keypoint maths against hand-computed values, the crop and the paste-back at full
resolution, stitching and retargeting wiring, providers for 5-D GridSample, edits, faces."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from tests import onnx_models
from tests.conftest import run_vfx
from vfxmocap.core.config import reload_settings
from vfxmocap.core.errors import InputError, InvalidParams, ModelMissing
from vfxmocap.media.image import read_image
from vfxmocap.models.store import ModelStore
from vfxmocap.portrait.engine import AnimateOptions, FaceEdits, open_engine
from vfxmocap.portrait.faces import MIN_FACE_PX
from vfxmocap.portrait.liveportrait import (
    EYE_KP,
    LIP_KP,
    MODEL,
    CpuFallbackSession,
    DriverFrame,
    LivePortraitEngine,
    Motion,
    bins_to_degrees,
    edited_motion,
    gridsample_providers,
    relative_keypoints,
    rotation_matrix,
    rotation_power,
    stitch,
    stitching_input,
    transform_keypoints,
)
from vfxmocap.samples import sample_path

STILL = AnimateOptions(smoothing=False)


@pytest.fixture(scope="module")
def analyzer(face_analyzer):
    return face_analyzer


@pytest.fixture(scope="module")
def lp_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """A model store holding the six stand-ins where the catalog's `liveportrait` entry
    expects them."""
    root = tmp_path_factory.mktemp("models")
    onnx_models.liveportrait(root / MODEL)
    return ModelStore(root=root)


@pytest.fixture(scope="module")
def astronaut_bgr() -> np.ndarray:
    return cv2.cvtColor(read_image(sample_path("astronaut")), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def driver(carphone_frames) -> list[np.ndarray]:
    """carphone (a man talking) as BGR frames, at 4x: his face is about 40 px wide as shot."""
    return [
        cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2BGR), None, fx=4, fy=4) for f in carphone_frames
    ]


def engine(source, store, analyzer, options=STILL, faces="largest") -> LivePortraitEngine:
    return LivePortraitEngine(source, options, faces=faces, analyzer=analyzer, store=store)


# --- keypoint maths, by hand -------------------------------------------------------------


def test_angles_come_from_the_66_bins_softmax() -> None:
    assert bins_to_degrees(np.zeros(66)) == pytest.approx(32.5 * 3 - 97.5)  # = 0
    peaked = np.full(66, -50.0)
    peaked[40] = 50.0
    assert bins_to_degrees(peaked) == pytest.approx(40 * 3 - 97.5)
    two = np.full(66, -50.0)
    two[[10, 20]] = 50.0  # equal mass on bins 10 and 20: their mean, 15
    assert bins_to_degrees(two[None]) == pytest.approx(15 * 3 - 97.5)


def test_rotation_matrix_is_livePortraits_convention() -> None:
    # yaw 90 alone: Ry = [[0,0,1],[0,1,0],[-1,0,0]], and R is its transpose
    assert np.allclose(rotation_matrix(0, 90, 0), [[0, 0, -1], [0, 1, 0], [1, 0, 0]])
    assert np.allclose(np.array([1.0, 0, 0]) @ rotation_matrix(0, 90, 0), [0, 0, -1])
    p, y, r = (math.radians(a) for a in (20, -35, 10))
    rx = [[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]]
    ry = [[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]]
    rz = [[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]]
    expected = (np.array(rz) @ np.array(ry) @ np.array(rx)).T
    assert np.allclose(rotation_matrix(20, -35, 10), expected)
    half = rotation_power(expected, 0.5)
    assert np.allclose(half @ half, expected)
    assert np.allclose(rotation_power(expected, 0.0), np.eye(3))


def _motion(rng, *, pitch=0.0, yaw=0.0, roll=0.0, t=(0, 0, 0), exp=None, scale=1.0, kp=None):
    return Motion(
        pitch,
        yaw,
        roll,
        np.array(t, float),
        np.zeros((21, 3)) if exp is None else exp,
        scale,
        rng.uniform(-0.5, 0.5, (21, 3)) if kp is None else kp,
    )


def test_relative_motion_composes_as_livePortrait() -> None:
    rng = np.random.default_rng(0)
    kp = rng.uniform(-0.5, 0.5, (21, 3))
    e0, d = rng.normal(0, 0.02, (21, 3)), rng.normal(0, 0.02, (21, 3))
    source = _motion(rng, t=(0.1, 0.2, 0.3), scale=2.0, kp=kp)
    neutral = _motion(rng, yaw=10.0, exp=e0, scale=1.0)
    driving = _motion(rng, yaw=25.0, exp=e0 + d, scale=1.5, t=(0.05, -0.02, 0.7))

    x = relative_keypoints(source, driving, neutral, STILL)
    # R_d·R_d0ᵀ·R_s about one axis: 15 degrees of yaw; exp_s + (exp_d − exp_d0) = d;
    # scale 2·(1.5/1); t = t_s + (t_d − t_d0) with depth zeroed.
    expected = 3.0 * (kp @ rotation_matrix(0, 15, 0) + d) + np.array([0.15, 0.18, 0.0])
    assert np.allclose(x, expected)

    half = relative_keypoints(source, driving, neutral, AnimateOptions(head_scale=0.5))
    assert np.allclose(
        half, 2 * 1.5**0.5 * (kp @ rotation_matrix(0, 7.5, 0) + d) + [0.125, 0.19, 0.0]
    )
    still = relative_keypoints(
        source, driving, neutral, AnimateOptions(head_scale=0, expression_scale=0)
    )
    assert np.allclose(still, source.keypoints())
    assert np.allclose(relative_keypoints(source, neutral, neutral, STILL), source.keypoints())

    lips = relative_keypoints(source, neutral, neutral, AnimateOptions(region="lips", head_scale=0))
    moved = relative_keypoints(
        source, driving, neutral, AnimateOptions(region="lips", head_scale=0)
    )
    changed = np.flatnonzero(np.abs(moved - lips).sum(axis=1) > 1e-12)
    assert set(changed) == set(LIP_KP)
    pose = relative_keypoints(source, driving, neutral, AnimateOptions(region="pose"))
    assert np.allclose(pose, 3.0 * (kp @ rotation_matrix(0, 15, 0)) + [0.15, 0.18, 0.0])


def test_the_smoothed_driving_signal_unpacks_to_the_same_motion() -> None:
    rng = np.random.default_rng(3)
    m = _motion(rng, pitch=-12.0, yaw=33.0, roll=4.0, t=(0.1, -0.2, 0.3), scale=1.7)
    m = Motion(m.pitch, m.yaw, m.roll, m.t, rng.normal(0, 0.02, (21, 3)), m.scale, m.kp)
    back = m.unpacked(m.packed())
    assert np.allclose(back.keypoints(), m.keypoints())
    assert back.yaw == pytest.approx(33.0) and back.scale == pytest.approx(1.7)


def test_transform_and_stitching_offsets() -> None:
    kp = np.arange(63, dtype=float).reshape(21, 3) / 100
    t = np.array([0.5, -0.5, 9.0])
    x = transform_keypoints(kp, np.eye(3), np.zeros((21, 3)), 2.0, t)
    assert np.allclose(x, 2 * kp + [0.5, -0.5, 0.0])  # t's depth is never applied
    delta = np.concatenate([np.full(63, 0.01), [0.1, -0.2]])
    stitched = stitch(x, delta)
    assert np.allclose(stitched, x + 0.01 + np.array([0.1, -0.2, 0.0]))
    feed = stitching_input(x, stitched)
    assert feed.shape == (1, 126) and feed.dtype == np.float32
    assert np.allclose(feed[0, :63], x.reshape(-1)) and np.allclose(
        feed[0, 63:], stitched.reshape(-1)
    )


# --- providers ---------------------------------------------------------------------------


def test_gridsample_nodes_leave_coreml_and_tensorrt_for_the_cpu(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="vfxmocap")
    cpu_only = [("CPUExecutionProvider", {})]
    assert gridsample_providers(cpu_only) == cpu_only
    assert not caplog.records

    coreml = [("CoreMLExecutionProvider", {}), ("CPUExecutionProvider", {})]
    assert gridsample_providers(coreml) == coreml  # CoreML declines the nodes itself
    assert "CoreML cannot run the 5-D GridSample" in caplog.text
    caplog.clear()

    trt = [
        ("TensorrtExecutionProvider", {"device_id": 0}),
        ("CUDAExecutionProvider", {"device_id": 0}),
    ]
    adjusted = gridsample_providers(trt)
    assert adjusted[0] == (
        "TensorrtExecutionProvider",
        {
            "device_id": 0,
            "trt_op_types_to_exclude": "NonMaxSuppression,NonZero,RoiAlign,GridSample",
        },
    )
    assert adjusted[1] == trt[1] and adjusted[-1] == ("CPUExecutionProvider", {})
    assert "TensorRT and CUDA cannot run the 5-D GridSample" in caplog.text
    assert "the rest stays on TensorRT" in caplog.text
    mine = [("TensorrtExecutionProvider", {"trt_op_types_to_exclude": "NonZero"})]
    assert gridsample_providers(mine)[0][1]["trt_op_types_to_exclude"] == "NonZero,GridSample"


def test_gridsample_warns_for_cuda_too(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="vfxmocap")
    cuda = [("CUDAExecutionProvider", {"device_id": 1}), ("CPUExecutionProvider", {})]
    assert gridsample_providers(cuda) == cuda  # ONNX Runtime hands the nodes to the CPU
    assert "CUDA cannot run the 5-D GridSample" in caplog.text
    assert gridsample_providers(cuda[:1])[-1] == ("CPUExecutionProvider", {})


class _Session:
    """A session stand-in: it fails as a 4-D-only GridSample kernel does, or works."""

    def __init__(self, error: str | None) -> None:
        self.error, self.calls = error, 0

    def run(self, names, feeds):
        self.calls += 1
        if self.error:
            raise RuntimeError(self.error)
        return ["ran"]


def test_a_provider_that_fails_on_5d_gridsample_falls_back_to_the_cpu(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="vfxmocap")
    made: list[tuple[bool, _Session]] = []

    def load(cpu_only: bool) -> _Session:
        made.append(
            (
                cpu_only,
                _Session(
                    None
                    if cpu_only
                    else "[ONNXRuntimeError] : 2 : "
                    "INVALID_ARGUMENT : Non-zero status code returned while running "
                    "GridSample node. Only 4-D tensor is supported"
                ),
            )
        )
        return made[-1][1]

    fallback = CpuFallbackSession(load, "warping_spade.onnx")
    assert fallback.run(None, {}) == ["ran"] and fallback.on_cpu
    assert [cpu for cpu, _ in made] == [False, True]
    assert "running the whole model on the CPU" in caplog.text
    assert fallback.run(None, {}) == ["ran"] and len(made) == 2  # loaded once

    other = CpuFallbackSession(lambda cpu_only: _Session("out of memory"), "m.onnx")
    with pytest.raises(RuntimeError, match="out of memory"):
        other.run(None, {})
    assert not other.on_cpu


def test_the_warping_stand_in_has_a_real_5d_gridsample(lp_store) -> None:
    onnx = pytest.importorskip("onnx")
    path = lp_store.require(MODEL)["warping_spade.onnx"]
    model = onnx.load(str(path))
    (node,) = [n for n in model.graph.node if n.op_type == "GridSample"]
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.input
    }
    assert node.input[0] == "feature_3d" and len(shapes["feature_3d"]) == 5
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["feature_3d", "kp_driving", "kp_source"]


# --- readiness ---------------------------------------------------------------------------


def test_missing_files_say_which_file_goes_where(tmp_path: Path, astronaut_bgr) -> None:
    store = ModelStore(root=tmp_path / "empty")
    with pytest.raises(ModelMissing) as caught:
        LivePortraitEngine(astronaut_bgr, STILL, store=store)
    message = caught.value.message
    assert not message.endswith("…")  # whole, not cut at the error length limit
    base = "https://huggingface.co/warmshao/FasterLivePortrait/resolve/main/liveportrait_onnx/"
    assert f"download each from {base}<name there>" in message
    assert f"place it in {tmp_path / 'empty' / MODEL}:" in message
    for name in onnx_models.LIVEPORTRAIT_FILES:
        assert f"  {name} -> {name} (size unknown, no checksum)" in message
    assert caught.value.exit_code == 4


def test_another_model_in_a_files_place_is_a_typed_error(tmp_path: Path, astronaut_bgr) -> None:
    folder = tmp_path / MODEL
    onnx_models.liveportrait(folder)
    onnx_models.lp_linear(folder / "stitching_eye.onnx", 65, 63, gain=0.01, seed=1)  # lip's
    with pytest.raises(ModelMissing, match=r"stitching_eye.onnx: not LivePortrait's stitching_eye"):
        LivePortraitEngine(astronaut_bgr, STILL, store=ModelStore(root=tmp_path))


def test_models_list_shows_liveportrait(tmp_path: Path) -> None:
    result = run_vfx("models", "list", "--json", env={"VFX_MODELS_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    row = next(r for r in json.loads(result.stdout) if r["name"] == MODEL)
    assert row["readiness"] == "missing" and len(row["missing"]) == 6
    onnx_models.liveportrait(tmp_path / MODEL)
    result = run_vfx("models", "list", "--json", env={"VFX_MODELS_DIR": str(tmp_path)})
    row = next(r for r in json.loads(result.stdout) if r["name"] == MODEL)
    assert row["ready"] and row["readiness"] == "present"  # no published sha256 to verify


# --- the engine on real faces ------------------------------------------------------------


def test_animating_astronaut_with_carphone(lp_store, analyzer, astronaut_bgr, driver) -> None:
    # A wider canvas than the crop: the output keeps the portrait's full size.
    portrait = widened(astronaut_bgr)
    eng = engine(portrait, lp_store, analyzer)
    try:
        (face,) = eng.faces
        assert face.feature.shape == (1, 32, 16, 64, 64) and face.x_s.shape == (21, 3)
        assert eng.set_neutral(driver[0])
        first = eng.drive(driver[0], 0.0)
        later = eng.drive(driver[25], 25 / 29.97)
        assert first.had_face and later.had_face and later.driver_faces == 1
        assert later.frame.shape == portrait.shape and later.frame.dtype == np.uint8

        # Only the face's crop region changes; everything outside it is the portrait.
        x0, y0, x1, y1 = face.paste.box
        outside = np.ones(portrait.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(later.frame[outside], portrait[outside])
        assert (x1 - x0) < portrait.shape[1] and (y1 - y0) < portrait.shape[0]
        face_box = face_region(analyzer, astronaut_bgr) + np.array([200, 40, 200, 40])
        fx0, fy0, fx1, fy1 = face_box.astype(int)
        assert (
            np.abs(later.frame[fy0:fy1, fx0:fx1].astype(int) - portrait[fy0:fy1, fx0:fx1]).mean()
            > 2
        )
        assert x0 <= fx0 and y0 <= fy0 and x1 >= fx1 and y1 >= fy1

        # The driver's own motion moves the keypoints: a later frame is not the neutral one.
        neutral = eng._neutral
        assert neutral is not None
        moved = eng._read_driver(driver[25])[0]
        assert moved is not None
        rest = eng.driven_keypoints(face, neutral, neutral)
        go = eng.driven_keypoints(face, moved, neutral)
        assert np.abs(go - rest).max() > 1e-3
        assert not np.array_equal(first.frame, later.frame)

        # A frame without a face holds the last pose, and says so.
        coffee = cv2.cvtColor(read_image(sample_path("coffee")), cv2.COLOR_RGB2BGR)
        held = eng.drive(coffee, 26 / 29.97)
        assert not held.had_face and held.driver_faces == 0
        assert np.array_equal(held.frame, later.frame)
    finally:
        eng.close()


def face_region(analyzer, image_bgr) -> np.ndarray:
    return analyzer.analyze(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))[0].box.astype(float)


def widened(image: np.ndarray) -> np.ndarray:
    """The portrait on a larger grey canvas (200 px left, 40 px top)."""
    return cv2.copyMakeBorder(image, 40, 60, 200, 100, cv2.BORDER_CONSTANT, value=(128, 128, 128))


def test_paste_back_puts_the_crop_back_where_it_came_from(
    lp_store, analyzer, astronaut_bgr, driver
) -> None:
    """The warping stand-in hands back the crop it was given when the driving keypoints are
    the source's (the driver at its neutral frame, no stitching): pasted through the inverse
    crop matrix, the face must land on itself. A paste 8 px off is several times worse."""
    portrait = widened(astronaut_bgr)
    eng = engine(portrait, lp_store, analyzer, AnimateOptions(smoothing=False, stitching=False))
    try:
        assert eng.set_neutral(driver[0])
        out = eng.drive(driver[0], 0.0).frame
    finally:
        eng.close()
    x0, y0, x1, y1 = face_region(analyzer, portrait).astype(int)

    def error(image: np.ndarray) -> float:
        return float(np.abs(image[y0:y1, x0:x1].astype(int) - portrait[y0:y1, x0:x1]).mean())

    off = cv2.warpAffine(out, np.float32([[1, 0, 8], [0, 1, 0]]), out.shape[1::-1])
    assert error(out) < 12  # the stand-in's 64 px volume blurs it a little
    assert error(off) > 2.5 * error(out)


def test_stitching_and_retargeting_wiring(lp_store, analyzer, astronaut_bgr, driver) -> None:
    options = AnimateOptions(smoothing=False, eye_ratio=2.0, lip_ratio=0.0)
    eng = engine(astronaut_bgr, lp_store, analyzer, options)
    try:
        (face,) = eng.faces
        neutral, frame = eng._read_driver(driver[0])[0], eng._read_driver(driver[25])[0]
        assert neutral is not None and frame is not None
        # Hand-built driver states: the eyes open by 0.1, the mouth by 0.2 from neutral.
        opened = DriverFrame(frame.motion, neutral.eye + 0.1, neutral.lip + 0.2)
        files = lp_store.require(MODEL)

        def run(name: str, feed: np.ndarray) -> np.ndarray:
            sess = ort.InferenceSession(str(files[name]), providers=["CPUExecutionProvider"])
            return sess.run(None, {"input": feed.astype(np.float32)})[0].reshape(-1)

        base_eye, base_lip = face.eye_ratios.mean(), face.lip_ratio

        def retarget(name, own, base, opening):
            feed = np.concatenate([face.x_s.reshape(-1), own, [max(0.0, base + opening)]])[None]
            return run(name, feed).reshape(21, 3)

        # eyes: wanted 2·0.1, carried 1·0.1; lips: wanted 0, carried 0.2
        expected_delta = (
            retarget("stitching_eye.onnx", face.eye_ratios, base_eye, 0.2)
            - retarget("stitching_eye.onnx", face.eye_ratios, base_eye, 0.1)
            + retarget("stitching_lip.onnx", [face.lip_ratio], base_lip, 0.0)
            - retarget("stitching_lip.onnx", [face.lip_ratio], base_lip, 0.2)
        )
        x_rel = relative_keypoints(face.motion, opened.motion, neutral.motion, options)
        x_pre = x_rel + expected_delta
        expected = stitch(x_pre, run("stitching.onnx", stitching_input(face.x_s, x_pre)))
        assert np.allclose(eng.driven_keypoints(face, opened, neutral), expected, atol=1e-5)
        assert np.abs(expected_delta).max() > 1e-4  # the networks did act

        # At the default ratios the retargeting networks add nothing; without stitching the
        # keypoints are the relative motion alone.
        eng.options = AnimateOptions(smoothing=False, stitching=False)
        plain = relative_keypoints(face.motion, opened.motion, neutral.motion, eng.options)
        assert np.array_equal(eng.driven_keypoints(face, opened, neutral), plain)
    finally:
        eng.close()


def test_edits_at_zero_change_nothing_and_a_smile_changes_the_face(
    lp_store, analyzer, astronaut_bgr
) -> None:
    eng = engine(astronaut_bgr, lp_store, analyzer)
    try:
        assert np.array_equal(eng.edit(FaceEdits()), astronaut_bgr)
        (face,) = eng.faces
        same = edited_motion(face.motion, FaceEdits())
        assert np.array_equal(same.keypoints(), face.x_s)

        smile = edited_motion(face.motion, FaceEdits(smile=1.0))
        moved = np.flatnonzero(np.abs(smile.exp - face.motion.exp).sum(axis=1) > 0)
        assert set(moved) == {3, 7, 13, 14, 16, 17, 20}
        blink = edited_motion(face.motion, FaceEdits(blink=1.0))
        assert set(np.flatnonzero(np.abs(blink.exp - face.motion.exp).sum(axis=1))) >= set(
            EYE_KP[:4]
        )
        assert np.array_equal(
            edited_motion(face.motion, FaceEdits(wink_left=-1.0)).exp, face.motion.exp
        )
        right = edited_motion(face.motion, FaceEdits(gaze_x=1.0)).exp - face.motion.exp
        left = edited_motion(face.motion, FaceEdits(gaze_x=-1.0)).exp - face.motion.exp
        assert right[15, 0] == pytest.approx(0.015) and left[15, 0] == pytest.approx(-0.0105)
        turned = edited_motion(face.motion, FaceEdits(yaw=10.0, pitch=50.0))
        assert turned.yaw == pytest.approx(face.motion.yaw - 10.0)
        assert turned.pitch == pytest.approx(face.motion.pitch - 30.0)  # clipped to its range

        out = eng.edit(FaceEdits(smile=1.0, yaw=10.0))
        x0, y0, x1, y1 = face.paste.box
        outside = np.ones(astronaut_bgr.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(out[outside], astronaut_bgr[outside])
        assert not np.array_equal(out, astronaut_bgr)
    finally:
        eng.close()


def test_every_chosen_face_is_animated(lp_store, analyzer, astronaut_bgr, driver) -> None:
    pair = np.hstack([astronaut_bgr, astronaut_bgr[:, ::-1]])  # two real faces side by side
    both = engine(pair, lp_store, analyzer, faces="all")
    try:
        assert len(both.faces) == 2
        left, right = (f.paste.box for f in both.faces)
        assert left[0] < right[0]
        assert both.set_neutral(driver[0])
        out = both.drive(driver[25], 1.0).frame
        for x0, y0, x1, y1 in (left, right):
            assert not np.array_equal(out[y0:y1, x0:x1], pair[y0:y1, x0:x1])
    finally:
        both.close()
    one = engine(pair, lp_store, analyzer, faces="1")
    try:
        assert [f.paste.box for f in one.faces] == [right]
    finally:
        one.close()
    with pytest.raises(InvalidParams, match="2 face"):
        engine(pair, lp_store, analyzer, faces="0,5")


def test_open_engine_builds_it_from_the_model_store_and_smooths_the_driver(
    lp_store, astronaut_bgr, driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VFX_MODELS_DIR", str(lp_store.root))
    reload_settings()
    eng = open_engine("liveportrait", astronaut_bgr, AnimateOptions())  # smoothing on
    try:
        assert isinstance(eng, LivePortraitEngine) and eng.name == "liveportrait"
        assert len(eng.faces) == 1
        assert eng.drive(driver[0], 0.0).had_face
        raw = [eng._read_driver(driver[i])[0].motion.packed() for i in (0, 25)]
        assert eng.drive(driver[25], 1 / 30).had_face
        # One Euro: the first step after the neutral frame goes part of the way, not all.
        smoothed = eng._filter._x
        assert smoothed is not None
        moved = np.abs(raw[1] - raw[0]) > 1e-3
        between = (smoothed - raw[0]) / np.where(moved, raw[1] - raw[0], 1.0)
        assert moved.any() and np.all((between[moved] > 0) & (between[moved] < 1))
    finally:
        eng.close()


def test_bad_portraits_are_input_errors(lp_store, analyzer, astronaut_bgr) -> None:
    coffee = cv2.cvtColor(read_image(sample_path("coffee")), cv2.COLOR_RGB2BGR)
    with pytest.raises(InputError, match="no face"):
        engine(coffee, lp_store, analyzer)
    tiny = cv2.resize(astronaut_bgr, (150, 150), interpolation=cv2.INTER_AREA)
    tiny = cv2.copyMakeBorder(tiny, 300, 300, 300, 300, cv2.BORDER_REFLECT)
    faces = analyzer.analyze(cv2.cvtColor(tiny, cv2.COLOR_BGR2RGB))
    assert faces and faces[0].width < MIN_FACE_PX  # a real face, found, but too small
    with pytest.raises(InputError, match=rf"{faces[0].width:.0f} px wide") as caught:
        engine(tiny, lp_store, analyzer)
    assert caught.value.exit_code == 3
