"""Identity shape transfer for the geometric engine.

A texture warp alone keeps the target's facial proportions and outline, and those are much
of what makes a face recognisable. Before warping, the target mesh moves toward the
source's whole face: the source mesh is turned into the target's head pose (a 3D similarity
fitted on points an expression does not move: eye corners and nose), so its outline, jaw,
cheeks, nose and the places of its eyes, brows and mouth come across. Expression stays the
target's: each eye and the lips keep the target's shape (set on the source's corners), the
jaw opens as far as the target's mouth, and the skin around them follows smoothly.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from vfxmocap.processors.face_swap.align import similarity_transform
from vfxmocap.vision.landmarks import (
    FACE_OVAL,
    LEFT_EYE,
    LEFT_EYE_INNER,
    LEFT_EYE_OUTER,
    LEFT_IRIS,
    LIPS,
    LIPS_INNER,
    LIPS_OUTER,
    LOWER_LIP_INNER,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    NOSE_TIP,
    RIGHT_EYE,
    RIGHT_EYE_INNER,
    RIGHT_EYE_OUTER,
    RIGHT_IRIS,
)

Points = NDArray[np.float32]
Vectors = NDArray[np.float64]

# Rigid under expression: eye corners, the nose bridge and tip, the sides of the nose.
_ALIGN = [RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_OUTER, LEFT_EYE_INNER]
_ALIGN += [168, 6, 197, 195, 5, NOSE_TIP, 98, 327]
# All of the lips take the target's shape, the rings between their contours too: a ring
# left in the source's place folds over an opening the target's contours make (a closed
# source mouth on an open target drew its upper lip down across the opening).
_LIPS = LIPS
# Skin around a part follows its contours; the lips' inner rings pull none of it (more pulls
# near the mouth drag the cheeks towards the target's: astronaut -> carphone 720p, dlib
# distance to the source 0.448 with the contours pulling, 0.458 with every lip point).
_NO_PULL = sorted(set(LIPS) - set(LIPS_OUTER) - set(LIPS_INNER))
_UPPER_LIP_TOP = 0
# (part whose shape is expression, its two corners, how far its size may follow the source's,
# the point that places it or None for the corners' midpoint): eye corners do not move with
# expression; mouth corners do (a smile widens and lifts them, an "o" narrows them), so the
# mouth is placed by the top of the upper lip, which stays under the nose
_EXPRESSION_PARTS = (
    (RIGHT_EYE + RIGHT_IRIS, [RIGHT_EYE_OUTER, RIGHT_EYE_INNER], 1.0, None),
    (LEFT_EYE + LEFT_IRIS, [LEFT_EYE_OUTER, LEFT_EYE_INNER], 1.0, None),
    (_LIPS, [MOUTH_RIGHT, MOUTH_LEFT], 0.05, _UPPER_LIP_TOP),
)
_SPREAD = 0.12  # of the eye-corner distance: how far skin follows a part's displacement


def _apply(matrix: Vectors, points: Vectors) -> Vectors:
    n = matrix.shape[0]
    moved: Vectors = points @ matrix[:, :n].T + matrix[:, n]
    return moved


def _two_point(
    src: Vectors, dst: Vectors, limit: float, anchor: tuple[Vectors, Vectors]
) -> Vectors:
    """The similarity rotating and scaling as two points to two others (the scale within
    1 +- `limit`) that takes the anchor point of src onto that of dst."""
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    a = (zd[1] - zd[0]) / (zs[1] - zs[0]) if zs[1] != zs[0] else 1.0 + 0j
    a *= np.clip(abs(a), 1 - limit, 1 + limit) / max(abs(a), 1e-9)
    (xs, ys), (xd, yd) = anchor
    b = (xd + 1j * yd) - a * (xs + 1j * ys)
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def posed_source(target: Points, source: Points) -> Vectors:
    """The source mesh turned, scaled and moved into the target's head pose (x, y, z)."""
    s3 = source[:, :3].astype(np.float64)
    t3 = target[:, :3].astype(np.float64)
    return _apply(similarity_transform(s3[_ALIGN], t3[_ALIGN]), s3)


def _jaw_drop(s: Vectors, out: Vectors) -> Vectors:
    """Lower-face points moved as the lower lip was (the jaw opens with the target's mouth,
    the chin keeps the source's length below the lip), fully at the chin, fading to nothing
    at the mouth corners' line."""
    gap = out[LOWER_LIP_INNER] - s[LOWER_LIP_INNER]
    corners = (s[MOUTH_RIGHT] + s[MOUTH_LEFT]) / 2
    down = s[152] - corners
    depth = (s - corners) @ down / max(float(down @ down), 1e-9)
    weight = np.clip(depth, 0.0, 1.0)
    weight[_LIPS] = 0.0  # the lips already carry the target's opening
    moved: Vectors = weight[:, None] * gap
    return moved


# every point an expression part moves, and of those the ones that pull the skin around them
_MOVED = sorted({i for part, *_ in _EXPRESSION_PARTS for i in part})
_PULLS = np.setdiff1d(_MOVED, _NO_PULL)


@lru_cache(maxsize=4)
def _free(count: int) -> NDArray[np.intp]:
    """The points of a `count`-point mesh that follow the moved parts: not a part, not the
    outline."""
    return np.setdiff1d(np.arange(count), _MOVED + FACE_OVAL)


def _spread(shift: Vectors, s: Vectors, radius: float) -> Vectors:
    """Let skin near moved parts follow them (Gaussian falloff), so no triangle folds."""
    free = _free(len(s))
    near, pulls = s[free], s[_PULLS]
    # per axis: a (free, pulls) difference, 10x quicker than one broadcast over (x, y) summed
    dx = near[:, 0, None] - pulls[None, :, 0]
    dy = near[:, 1, None] - pulls[None, :, 1]
    w = np.exp(-(dx * dx + dy * dy) / (2 * radius**2))
    # the 0.5 in the denominator fades the pull out where no part is near
    follow = (w @ shift[_PULLS]) / (w.sum(axis=1, keepdims=True) + 0.5)
    out = shift.copy()
    out[free] = follow
    return out


def transfer_shape(target: Points, source: Points, weight: float) -> Points:
    """Target landmarks moved `weight` of the way to the source's face shape, expression kept."""
    if weight <= 0:
        return target
    t = target[:, :2].astype(np.float64)
    posed = posed_source(target, source)
    s = posed[:, :2]
    shift = np.zeros_like(t)
    for part, corners, limit, at in _EXPRESSION_PARTS:
        anchor = (t[at], s[at]) if at is not None else (t[corners].mean(0), s[corners].mean(0))
        placed = _apply(_two_point(t[corners], s[corners], limit, anchor), t[part])
        shift[part] = placed - s[part]
    shift = _spread(shift, s, _SPREAD * float(np.linalg.norm(s[263] - s[33])))
    shape = s + shift
    shape += _jaw_drop(s, shape)
    morphed = target.copy()
    morphed[:, :2] = t + weight * (shape - t)
    # depth follows too: culling and draw order must see the face that is drawn
    morphed[:, 2] += weight * (posed[:, 2] - target[:, 2])
    return morphed
