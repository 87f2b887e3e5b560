"""Identity shape transfer for the geometric engine.

A texture warp alone keeps the target's facial proportions, and proportions are much of
what makes a face recognisable. Before warping, the target mesh's features are moved
toward where the source has them (after aligning the two faces): eyes and mouth as whole
parts (position, size, tilt, so a blink or an open mouth of the target stays), brows as
parts, the nose point by point. The face outline is left alone, so the swapped face still
covers the target's face exactly and pose and expression stay the target's.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from vfxmocap.processors.face_swap.align import similarity_transform
from vfxmocap.vision.landmarks import (
    FACE_OVAL,
    LEFT_BROW,
    LEFT_EYE,
    LEFT_EYE_INNER,
    LEFT_EYE_OUTER,
    LIPS_INNER,
    LIPS_OUTER,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    NOSE,
    RIGHT_BROW,
    RIGHT_EYE,
    RIGHT_EYE_INNER,
    RIGHT_EYE_OUTER,
)

Points = NDArray[np.float32]

_RIGHT_IRIS = list(range(468, 473))
_LEFT_IRIS = list(range(473, 478))
# Points that align the two faces: outline, eye corners and nose bridge.
_ALIGN = sorted(
    {*FACE_OVAL, RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_OUTER, LEFT_EYE_INNER, 168, 6, 197}
)
# (part, the points whose similarity transform moves it)
_PARTS = (
    (RIGHT_EYE + _RIGHT_IRIS, [RIGHT_EYE_OUTER, RIGHT_EYE_INNER]),
    (LEFT_EYE + _LEFT_IRIS, [LEFT_EYE_OUTER, LEFT_EYE_INNER]),
    (sorted(set(LIPS_OUTER + LIPS_INNER)), [MOUTH_RIGHT, MOUTH_LEFT]),
    (RIGHT_BROW, RIGHT_BROW),
    (LEFT_BROW, LEFT_BROW),
)


def _apply(matrix: NDArray[np.float64], points: NDArray[np.float64]) -> NDArray[np.float64]:
    moved: NDArray[np.float64] = points @ matrix[:, :2].T + matrix[:, 2]
    return moved


def _two_point(src: NDArray[np.float64], dst: NDArray[np.float64]) -> NDArray[np.float64]:
    """The similarity taking two points exactly onto two others (as complex z -> a z + b)."""
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    a = (zd[1] - zd[0]) / (zs[1] - zs[0]) if zs[1] != zs[0] else 1.0 + 0j
    b = zd[0] - a * zs[0]
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def transfer_shape(target: Points, source: Points, weight: float) -> Points:
    """Target landmarks with inner features moved `weight` of the way to the source's."""
    if weight <= 0:
        return target
    t = target[:, :2].astype(np.float64)
    s = _apply(
        similarity_transform(source[_ALIGN, :2], t[_ALIGN]), source[:, :2].astype(np.float64)
    )
    out = t.copy()
    for part, anchors in _PARTS:
        move = (
            _two_point(t[anchors], s[anchors])
            if len(anchors) == 2
            else similarity_transform(t[anchors], s[anchors])
        )
        out[part] = t[part] + weight * (_apply(move, t[part]) - t[part])
    out[NOSE] = t[NOSE] + weight * (s[NOSE] - t[NOSE])
    morphed = target.copy()
    morphed[:, :2] = out
    return morphed
