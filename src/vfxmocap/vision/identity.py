"""Identity descriptors, to tell which target face is which person (reference-image mapping).

The built-in descriptor needs no model: the face's rigid 3D shape from the mesh, centred and
scaled to unit size, described by its pairwise point distances (unchanged by head rotation,
so no alignment is needed), using points that expressions barely move (eye contours, nose,
face outline). With ArcFace in the model store, a neural embedding is better;
both return unit vectors compared by cosine similarity.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from vfxmocap.media.image import Frame
from vfxmocap.vision.faces import Face
from vfxmocap.vision.landmarks import FACE_OVAL, LEFT_EYE, NOSE, RIGHT_EYE

Embedding = NDArray[np.float32]

# Rigid points: eye contours, nose and the lower face outline (not the lips or brows).
_RIGID = sorted(set(RIGHT_EYE + LEFT_EYE + NOSE + FACE_OVAL))


class IdentityEmbedder(Protocol):
    def embed(self, frame: Frame, face: Face) -> Embedding: ...


class MeshShapeEmbedder:
    """Face shape from the landmark mesh: distinguishes people in a shot, not a database."""

    def embed(self, frame: Frame, face: Face) -> Embedding:
        del frame
        p = face.landmarks[_RIGID].astype(np.float64)
        p -= p.mean(axis=0)
        p /= np.linalg.norm(p)
        # Pairwise distances do not change with head pose (rotation) or position.
        d = np.linalg.norm(p[:, None] - p[None], axis=2)[np.triu_indices(len(p), 1)]
        vec: Embedding = (d - d.mean()).astype(np.float32)
        return vec / max(float(np.linalg.norm(vec)), 1e-9)


def similarity(a: Embedding, b: Embedding) -> float:
    return float(np.dot(a, b))
