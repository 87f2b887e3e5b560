"""Face restoration after a swap: GFPGAN 1.4 or CodeFormer (ONNX), on the swapped region.

The face is aligned to the FFHQ template at the model's size (512), restored, warped back
and blended inside the face mask, so only the face gains detail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vfxmocap.core.errors import ModelMissing
from vfxmocap.media.image import Frame
from vfxmocap.models.onnx_runtime import session
from vfxmocap.models.store import ModelStore
from vfxmocap.processors.face_swap.align import FFHQ, align, warp_back
from vfxmocap.processors.face_swap.engines import PasteOptions, Rendered, paste, target_roi
from vfxmocap.vision.faces import Face

ENHANCERS = ("gfpgan-1.4", "codeformer")


class FaceEnhancer:
    def __init__(self, model_path: Path, *, fidelity: float = 0.7) -> None:
        self.session: Any = session(model_path)
        inputs = self.session.get_inputs()
        self.image_input = inputs[0].name
        self.size = int(inputs[0].shape[2])
        # CodeFormer takes a second input: the fidelity weight w (0: quality, 1: fidelity).
        self.extra = {
            i.name: np.array([fidelity], dtype=np.float64 if "double" in i.type else np.float32)
            for i in inputs[1:]
        }

    @classmethod
    def from_store(cls, store: ModelStore | None = None) -> FaceEnhancer:
        store = store or ModelStore()
        for name in ENHANCERS:
            if store.status(name).ready:
                return cls(next(iter(store.require(name).values())))
        store.require(ENHANCERS[0])  # raises ModelMissing with the placement instructions
        raise ModelMissing("no face enhancer model is available")

    def restore(self, crop: Frame) -> Frame:
        blob = (crop.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]  # RGB, [-1, 1]
        out = self.session.run(None, {self.image_input: blob, **self.extra})[0][0]
        restored: Frame = np.clip((out.transpose(1, 2, 0) + 1.0) * 127.5 + 0.5, 0, 255).astype(
            np.uint8
        )
        return restored

    def enhance(self, frame: Frame, face: Face, opts: PasteOptions) -> bool:
        """Restore one face of `frame` in place."""
        roi = target_roi(face, frame.shape)
        if roi is None:
            return False
        crop, matrix = align(frame, face.kps5, FFHQ * self.size, self.size)
        restored = Rendered(*warp_back(self.restore(crop), matrix, roi), face.landmarks)
        paste(
            frame,
            restored,
            roi,
            opts.model_copy(update={"color_match": False, "sharpness_match": False}),
        )
        return True
