"""Masks that decide which target pixels receive the swapped face."""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from vfxmocap.vision.landmarks import (
    CHIN,
    FOREHEAD,
    LEFT_BROW,
    LEFT_EYE_OUTER,
    LIPS_INNER,
    REGIONS,
    RIGHT_BROW,
    RIGHT_EYE_OUTER,
    mouth_openness,
    outline,
)

Mask = NDArray[np.uint8]
Region = Literal["skin", "eyes", "brows", "nose", "mouth"]
# of the face width: how far an open mouth's hole grows. About 1 px where the source's lips
# are drawn up to it (an open source mouth: its lips end at its own opening); 3% where a
# closed source mouth is stretched open (its lip line, a dark crease, would ring the hole).
OPEN_GROW = 0.004
CLOSED_SOURCE_GROW = 0.03


class MaskOptions(BaseModel):
    kind: Literal["oval", "hull", "regions"] = Field(
        "oval",
        description="oval: face without hair and forehead fringe; hull: all landmarks; "
        "regions: only the listed regions.",
    )
    regions: list[Region] = Field(default_factory=list)
    blur: float = Field(0.08, ge=0, le=0.5, description="Feather width, in face widths.")
    padding: float = Field(0.0, ge=-0.3, le=0.3, description="Grow (+) or shrink (-) the mask.")
    mouth_mask: bool = Field(
        True, description="Keep the target's mouth opening, open or closed (speech, expression)."
    )
    mouth_open_threshold: float = Field(0.12, ge=0, le=1)
    forehead: float = Field(
        0.85, ge=0, le=1, description="Share of the forehead swapped (oval), brows up to hairline."
    )


def _poly(mask: Mask, points: NDArray[np.floating[Any]], value: int = 255) -> None:
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], value, cv2.LINE_8, 4)


def _hull(mask: Mask, points: NDArray[np.floating[Any]], value: int = 255) -> None:
    hull = cv2.convexHull(np.round(points * 16).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, value, cv2.LINE_8, 4)


def _oval(lm: NDArray[np.float32], forehead: float, reach: float = 1.0) -> NDArray[np.float32]:
    """The face contour, `reach` times as far from its centre as the landmarks', with its top
    lowered to `forehead` of the way from brows to hairline, so hair and a fringe stay the
    target's."""
    chin = lm[CHIN]
    up = lm[FOREHEAD] - chin
    up /= max(float(np.linalg.norm(up)), 1e-6)
    height = (lm[:, :2] - chin) @ up
    brows = float(height[RIGHT_BROW + LEFT_BROW].max())
    cut = brows + forehead * (float(height[FOREHEAD]) - brows)
    oval = outline(lm, reach)
    excess = np.maximum((oval - chin) @ up - cut, 0.0)
    lowered: NDArray[np.float32] = oval - excess[:, None] * up
    return lowered


def face_mask(
    shape: tuple[int, int], landmarks: NDArray[np.float32], opts: MaskOptions, reach: float = 1.0
) -> Mask:
    """Binary (0/255) mask of the face in an image of `shape`; landmarks in its pixels. An
    oval mask reaches `reach` times as far out as the landmarks' outline (below the forehead's
    cut), a hull takes that outline in too, for a face drawn past it."""
    lm = landmarks[:, :2].astype(np.float32)
    mask = np.zeros(shape, np.uint8)
    if opts.kind == "hull":
        _hull(mask, np.concatenate([lm[:468], outline(lm, reach)]))
    elif opts.kind == "oval":
        _poly(mask, _oval(lm, opts.forehead, reach))
    else:
        wanted = opts.regions or ["skin"]
        if "skin" in wanted:
            _poly(mask, _oval(lm, opts.forehead))
            for name in ("eyes", "brows", "mouth"):
                if name not in wanted:
                    for part in REGIONS[name]:
                        _hull(mask, lm[part], 0)
        for name in wanted:
            if name != "skin":
                for part in REGIONS[name]:
                    _hull(mask, lm[part])
    size = face_size(landmarks)
    if opts.padding:
        radius = max(1, int(abs(opts.padding) * size))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate(mask, kernel) if opts.padding > 0 else cv2.erode(mask, kernel)
    return mask


def mouth_hole(
    shape: tuple[int, int],
    landmarks: NDArray[np.float32],
    opts: MaskOptions,
    grow: float = CLOSED_SOURCE_GROW,
) -> Mask | None:
    """255 inside the mouth opening, which keeps the target's (teeth, tongue, a closed lip
    line): the inner lips, grown by `grow` face widths when the mouth is open; None with
    `mouth_mask` off (the source's mouth is drawn, teeth and all). Growing it more than the
    source needs shows the target's own lip edge as a ring inside the source's lips and costs
    identity (bench/swap_quality.py, astronaut -> carphone 720p, shape 1: dlib distance to
    the source 0.476 grown by 3% of the face, 0.446 by 1 px)."""
    if not opts.mouth_mask:
        return None
    lm = landmarks[:, :2].astype(np.float32)
    mouth = np.zeros(shape, np.uint8)
    _poly(mouth, lm[LIPS_INNER])
    if mouth_openness(landmarks) > opts.mouth_open_threshold:
        radius = max(1, int(grow * face_size(landmarks)))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mouth = cv2.dilate(mouth, kernel)
    return mouth


def face_size(landmarks: NDArray[np.floating[Any]]) -> float:
    """About the face's width: 2.2 outer-eye distances."""
    eyes = np.asarray(landmarks)[[RIGHT_EYE_OUTER, LEFT_EYE_OUTER], :2]
    return 2.2 * max(1.0, float(np.linalg.norm(eyes[1] - eyes[0])))


_STEPS = np.linspace(0.0, 1.0, 256, dtype=np.float32)
_SMOOTHSTEP = _STEPS * _STEPS * (np.float32(3.0) - np.float32(2.0) * _STEPS)


def soft_edge(mask: Mask, blur: float, size: float) -> NDArray[np.float32]:
    """Soft alpha in [0, 1] that rises from 0 at the mask's edge to 1 at `blur * size` inside
    it (a smoothstep of the distance to the edge), so the fade stays inside the face instead
    of bleeding onto hair and background. A distance transform costs the same for any width;
    the smoothstep is looked up in 256 steps (within 0.3% of it, a third of the time of
    working it out per pixel)."""
    width = blur * size
    if width < 1:
        hard: NDArray[np.float32] = (mask > 127).astype(np.float32)
        return hard
    _, inside = cv2.threshold(mask, 127, 1, cv2.THRESH_BINARY)
    distance = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    step = cv2.convertScaleAbs(distance, alpha=255.0 / width)  # rounds, saturates at 255
    alpha: NDArray[np.float32] = cv2.LUT(step, _SMOOTHSTEP)
    return alpha
