"""The inswapper engine and face enhancer, end to end on real faces with built ONNX models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests import onnx_models
from tests.conftest import run_vfx
from vfxmocap.core.config import reload_settings
from vfxmocap.core.errors import ModelMissing
from vfxmocap.media.image import read_image
from vfxmocap.models.onnx_runtime import read_initializer
from vfxmocap.processors.face_swap.engines import PasteOptions, swap_face, target_roi
from vfxmocap.processors.face_swap.enhancer import FaceEnhancer
from vfxmocap.processors.face_swap.inswapper import InswapperEngine
from vfxmocap.samples import sample_path
from vfxmocap.vision.faces import MediaPipeFaceAnalyzer
from vfxmocap.workflows import get_workflow


@pytest.fixture(scope="module")
def analyzer():
    a = MediaPipeFaceAnalyzer()
    yield a
    a.close()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A model store holding test models under the real catalog names, via VFX_CATALOG."""

    def place(tint: float = 0.0) -> Path:
        models = tmp_path / "models"
        files = {
            ("inswapper-128", "face-swap"): onnx_models.inswapper(
                models / "inswapper-128" / "inswapper_128.onnx", tint=tint
            ),
            ("arcface-w600k-r50", "face-recognition"): onnx_models.arcface(
                models / "arcface-w600k-r50" / "w600k_r50.onnx"
            ),
            ("gfpgan-1.4", "face-enhance"): onnx_models.enhancer(
                models / "gfpgan-1.4" / "GFPGANv1.4.onnx"
            ),
        }
        catalog = tmp_path / "catalog.toml"
        catalog.write_text(
            "".join(onnx_models.catalog_entry(n, t, p) for (n, t), p in files.items())
        )
        monkeypatch.setenv("VFX_MODELS_DIR", str(models))
        monkeypatch.setenv("VFX_CATALOG", str(catalog))
        reload_settings()
        return models

    return place


def test_emap_is_read_without_the_onnx_package(tmp_path: Path) -> None:
    path = onnx_models.inswapper(tmp_path / "m.onnx")
    expected = numpy_helper.to_array(onnx.load(str(path)).graph.initializer[-1])
    assert expected.shape == (512, 512)
    assert np.array_equal(read_initializer(path), expected)
    assert read_initializer(path, 0).shape == (512, 3)


def test_identity_swapper_puts_every_pixel_back(store, analyzer) -> None:
    """With a swapper that returns its aligned input, alignment + paste-back must reproduce the
    frame: any error in the 128 px template, the similarity fit or the inverse warp shows."""
    store(tint=0.0)
    engine = InswapperEngine.from_store()
    astronaut = read_image(sample_path("astronaut"))
    source = engine.prepare(astronaut, analyzer.analyze(astronaut)[0])
    t1 = read_image(sample_path("t1"))
    out = t1.copy()
    opts = PasteOptions(color_match=False, blend="feather")
    faces = analyzer.analyze(t1)
    assert all(swap_face(engine, out, f, source, opts) for f in faces)
    for face in faces:
        x0, y0, x1, y1 = target_roi(face, t1.shape)
        error = np.abs(out[y0:y1, x0:x1].astype(int) - t1[y0:y1, x0:x1]).mean()
        assert error < 2.0, face.box


def test_tinting_swapper_changes_faces_by_identity(store, analyzer) -> None:
    store(tint=0.05)
    engine = InswapperEngine.from_store()
    t1 = read_image(sample_path("t1"))
    face = analyzer.analyze(t1)[0]
    results = []
    for name in ("astronaut", "camera"):
        image = read_image(sample_path(name))
        source = engine.prepare(image, analyzer.analyze(image)[0])
        assert source.extra["latent"].shape == (1, 512)
        assert np.linalg.norm(source.extra["latent"]) == pytest.approx(1.0, abs=1e-5)
        out = t1.copy()
        swap_face(engine, out, face, source, PasteOptions(color_match=False))
        x0, y0, x1, y1 = face.box.astype(int)
        results.append(
            out[y0:y1, x0:x1].astype(int).mean(axis=(0, 1))
            - t1[y0:y1, x0:x1].astype(int).mean(axis=(0, 1))
        )
    assert np.abs(results[0]).max() > 3  # the face changed colour
    assert np.abs(results[0] - results[1]).max() > 2  # and differently per identity


def test_enhancer_identity_keeps_the_face(store, analyzer) -> None:
    store()
    enhancer = FaceEnhancer.from_store()
    t1 = read_image(sample_path("t1"))
    out = t1.copy()
    for face in analyzer.analyze(t1):
        assert enhancer.enhance(out, face, PasteOptions(blend="feather"))
    assert np.abs(out.astype(int) - t1).mean() < 0.5


def test_codeformer_fidelity_input(tmp_path: Path, analyzer) -> None:
    path = onnx_models.enhancer(tmp_path / "codeformer.onnx", codeformer=True)
    enhancer = FaceEnhancer(path, fidelity=0.5)
    assert list(enhancer.extra) == ["w"]
    crop = read_image(sample_path("astronaut"))
    assert np.abs(enhancer.restore(crop).astype(int) - crop).max() <= 1


def test_inswapper_without_files_says_where_to_put_them(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VFX_MODELS_DIR", str(tmp_path / "empty"))
    reload_settings()
    with pytest.raises(ModelMissing) as info:
        get_workflow("swap")(
            {
                "sources": [str(sample_path("astronaut"))],
                "target": str(sample_path("carphone")),
                "output": tmp_path / "o.mp4",
                "options": {"engine": "inswapper"},
            }
        )
    message = str(info.value)
    assert "inswapper_128.onnx" in message and str(tmp_path / "empty") in message
    assert not (tmp_path / "o.mp4").exists()


def test_cli_inswapper_with_enhance_end_to_end(store, tmp_path: Path) -> None:
    models = store(tint=0.02)
    out = tmp_path / "swapped.mp4"
    env = {"VFX_MODELS_DIR": str(models), "VFX_CATALOG": str(tmp_path / "catalog.toml")}
    result = run_vfx(
        "swap",
        "-s",
        sample_path("astronaut"),
        "-t",
        sample_path("carphone"),
        "-o",
        out,
        "--engine",
        "inswapper",
        "--enhance",
        "--json",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert summary["engine"] == "inswapper" and summary["faces_swapped"] == 120
    assert out.is_file()


def test_cli_missing_model_exits_4(tmp_path: Path) -> None:
    result = run_vfx(
        "swap",
        "-s",
        sample_path("astronaut"),
        "-t",
        sample_path("astronaut"),
        "-o",
        tmp_path / "o.png",
        "--engine",
        "inswapper",
        env={"VFX_MODELS_DIR": str(tmp_path / "none")},
    )
    assert result.returncode == 4 and "Traceback" not in result.stderr
    assert "inswapper_128.onnx" in result.stderr and not (tmp_path / "o.png").exists()


def test_templates_match_insightface() -> None:
    from vfxmocap.processors.face_swap.align import ARCFACE_112, arcface_template

    assert np.allclose(arcface_template(112), ARCFACE_112)
    assert np.allclose(
        arcface_template(128), ARCFACE_112 + np.array([8.0, 0.0])
    )  # inswapper's crop
    assert np.allclose(arcface_template(224), ARCFACE_112 * 2)


def test_five_points_fit_the_arcface_template(analyzer) -> None:
    """Neural swappers and ArcFace expect faces aligned on insightface's template: the five
    points we derive from the mesh must fit it closely on frontal faces."""
    from vfxmocap.processors.face_swap.align import ARCFACE_112, similarity_transform

    residuals = []
    for name in ("astronaut", "t1"):
        for face in analyzer.analyze(read_image(sample_path(name))):
            if abs(face.pose.yaw) < 15:
                m = similarity_transform(face.kps5, ARCFACE_112)
                fitted = face.kps5 @ m[:, :2].T + m[:, 2]
                residuals.append(np.linalg.norm(fitted - ARCFACE_112, axis=1))
    assert len(residuals) >= 3
    assert float(np.sqrt(np.mean(np.square(residuals)))) < 4.2  # pixels of a 112 px crop


def test_enhance_after_a_geometric_swap_follows_the_drawn_outline(
    store, analyzer, carphone_frames, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The geometric engine moves the face's outline to the source's; --enhance must paste
    its restored face inside that outline, not the target's old one. The enhancer here
    brightens what it restores, so the pixels it changes show where it pasted."""
    import cv2

    from vfxmocap.processors.face_swap.masks import MaskOptions, face_mask
    from vfxmocap.processors.face_swap.processor import FaceSwapProcessor, SwapSetup
    from vfxmocap.processors.face_swap.shape import transfer_shape

    store()
    monkeypatch.setattr(FaceEnhancer, "restore", lambda self, crop: cv2.add(crop, 60))
    frame = cv2.resize(carphone_frames[0], (704, 576), interpolation=cv2.INTER_CUBIC)
    astronaut = sample_path("astronaut")

    def swapped(enhance: bool) -> np.ndarray:
        processor = FaceSwapProcessor()
        options = {"shape": 1.0, "enhance": enhance, "blend": "feather"}
        state = processor.prepare(SwapSetup(sources=[str(astronaut)], options=options, live=False))
        try:
            return processor.process_still(frame, state)
        finally:
            state.close()

    changed = np.abs(swapped(True).astype(int) - swapped(False)).max(axis=2) > 0
    target = analyzer.analyze(frame)[0].landmarks
    source = analyzer.analyze(read_image(astronaut))[0].landmarks
    shape = (frame.shape[0], frame.shape[1])
    drawn = face_mask(shape, transfer_shape(target, source, 1.0), MaskOptions()) > 0
    old = face_mask(shape, target, MaskOptions()) > 0

    gained, lost = drawn & ~old, old & ~drawn  # where the outline moved out, and in
    assert gained.sum() + lost.sum() > 0.04 * old.sum()  # it really moved
    # measured: 0.76 and 0 (pasted in the target's old outline: 0 and 0.63)
    assert changed[gained].mean() > 0.5 and changed[lost].mean() < 0.1
