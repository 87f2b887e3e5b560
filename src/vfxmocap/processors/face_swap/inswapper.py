"""The neural swap engine: InsightFace's inswapper_128 driven by an ArcFace identity embedding.

Preprocessing and paste-back follow the reference implementation (insightface
`model_zoo/inswapper.py`): the source's ArcFace embedding is L2-normalised and projected by
the model's own `emap` matrix (its last initializer); the target face is aligned by five
points to the 128 px template, swapped, and warped back. The paste-back then goes through
the same masks and blending as every engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vfxmocap.media.image import Frame
from vfxmocap.models.onnx_runtime import read_initializer, session
from vfxmocap.models.store import ModelStore
from vfxmocap.processors.face_swap.align import align, arcface_template, warp_back
from vfxmocap.processors.face_swap.engines import Rendered, SourceFace, prepare_source
from vfxmocap.vision.faces import Face

SWAPPER = "inswapper-128"
ARCFACE = "arcface-w600k-r50"


class ArcFace:
    """512-d identity embedding from a 112 px aligned face (w600k_r50.onnx)."""

    def __init__(self, model_path: Path) -> None:
        self.session = session(model_path)
        self.input = self.session.get_inputs()[0].name
        self.size = int(self.session.get_inputs()[0].shape[2])

    def embed(self, frame: Frame, face: Face) -> NDArray[np.float32]:
        crop, _ = align(frame, face.kps5, arcface_template(self.size), self.size)
        blob = (crop.astype(np.float32) - 127.5) / 127.5  # RGB, as insightface's swapRB blob
        out = self.session.run(None, {self.input: blob.transpose(2, 0, 1)[None]})[0][0]
        vector: NDArray[np.float32] = out / max(float(np.linalg.norm(out)), 1e-9)
        return vector.astype(np.float32)


class InswapperEngine:
    name = "inswapper"

    def __init__(self, swapper_path: Path, arcface_path: Path) -> None:
        self.session: Any = session(swapper_path)
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.target_input = "target" if "target" in inputs else self.session.get_inputs()[0].name
        self.source_input = "source" if "source" in inputs else self.session.get_inputs()[1].name
        self.size = int(inputs[self.target_input].shape[2])
        self.emap = read_initializer(swapper_path, -1).astype(np.float32)
        self.arcface = ArcFace(arcface_path)

    @classmethod
    def from_store(cls, store: ModelStore | None = None) -> InswapperEngine:
        store = store or ModelStore()
        swapper = store.require(SWAPPER)
        arcface = store.require(ARCFACE)
        return cls(next(iter(swapper.values())), next(iter(arcface.values())))

    def prepare(self, image: Frame, face: Face) -> SourceFace:
        source = prepare_source(image, face)
        embedding = self.arcface.embed(image, face)
        latent = embedding.reshape(1, -1) @ self.emap
        source.extra["latent"] = (latent / np.linalg.norm(latent)).astype(np.float32)
        source.extra["embedding"] = embedding
        return source

    def render(
        self, frame: Frame, target: Face, source: SourceFace, roi: tuple[int, int, int, int]
    ) -> Rendered:
        crop, matrix = align(frame, target.kps5, arcface_template(self.size), self.size)
        blob = (crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]  # RGB in [0, 1]
        out = self.session.run(
            None, {self.target_input: blob, self.source_input: source.extra["latent"]}
        )[0][0]
        fake = np.clip(out.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Rendered(*warp_back(fake, matrix, roi), target.landmarks)
