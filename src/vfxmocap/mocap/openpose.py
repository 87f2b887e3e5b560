"""OpenPose control images, drawn exactly as ControlNet's OpenPose annotator draws them.

BlazePose's 33 points map to OpenPose's COCO-18 (neck = mid-shoulders). The drawing follows
`draw_bodypose` / `draw_handpose` of lllyasviel/ControlNet (annotator/openpose/util.py):
a black canvas; joints as filled circles of radius 4 in the 18 part colours; then 17 limbs,
each an ellipse of half-width 4 (stickwidth) in its colour, blended onto the canvas with
weights 0.4 (canvas) and 0.6 (limb). Colours are RGB, as the control image is fed.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from vfxmocap.media.image import Frame
from vfxmocap.vision.pose import P

STICK_WIDTH = 4
JOINT_RADIUS = 4
# COCO-18: nose, neck, r_shoulder, r_elbow, r_wrist, l_shoulder, l_elbow, l_wrist, r_hip,
# r_knee, r_ankle, l_hip, l_knee, l_ankle, r_eye, l_eye, r_ear, l_ear
COCO18 = (
    "nose",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_eye",
    "left_eye",
    "right_ear",
    "left_ear",
)
# 1-based pairs, as in ControlNet's limbSeq; the last two (ear-shoulder) are not drawn.
LIMB_SEQ = (
    (2, 3),
    (2, 6),
    (3, 4),
    (4, 5),
    (6, 7),
    (7, 8),
    (2, 9),
    (9, 10),
    (10, 11),
    (2, 12),
    (12, 13),
    (13, 14),
    (2, 1),
    (1, 15),
    (15, 17),
    (1, 16),
    (16, 18),
    (3, 17),
    (6, 18),
)
COLORS = (
    (255, 0, 0),
    (255, 85, 0),
    (255, 170, 0),
    (255, 255, 0),
    (170, 255, 0),
    (85, 255, 0),
    (0, 255, 0),
    (0, 255, 85),
    (0, 255, 170),
    (0, 255, 255),
    (0, 170, 255),
    (0, 85, 255),
    (0, 0, 255),
    (85, 0, 255),
    (170, 0, 255),
    (255, 0, 255),
    (255, 0, 170),
    (255, 0, 85),
)
HAND_EDGES = (
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 4),
    (0, 5),
    (5, 6),
    (6, 7),
    (7, 8),
    (0, 9),
    (9, 10),
    (10, 11),
    (11, 12),
    (0, 13),
    (13, 14),
    (14, 15),
    (15, 16),
    (0, 17),
    (17, 18),
    (18, 19),
    (19, 20),
)


def to_coco18(
    image_points: NDArray[np.floating[Any]],
    visibility: NDArray[np.floating[Any]],
    min_visibility: float = 0.5,
) -> NDArray[np.float64]:
    """(18, 2) pixel coordinates from BlazePose (33, 2); NaN where not visible enough."""
    out = np.full((18, 2), np.nan)
    for k, name in enumerate(COCO18):
        ids = [P["left_shoulder"], P["right_shoulder"]] if name == "neck" else [P[name]]
        if all(visibility[i] >= min_visibility for i in ids):
            out[k] = np.mean([image_points[i] for i in ids], axis=0)
    return out


def draw_body(canvas: Frame, points: NDArray[np.float64]) -> Frame:
    """Draw COCO-18 points (NaN = missing) in ControlNet's style, in place; returns the canvas."""
    for i in range(18):
        if np.isfinite(points[i]).all():
            x, y = points[i]
            cv2.circle(canvas, (int(x), int(y)), JOINT_RADIUS, COLORS[i], thickness=-1)
    for i in range(17):
        a, b = LIMB_SEQ[i][0] - 1, LIMB_SEQ[i][1] - 1
        if not (np.isfinite(points[a]).all() and np.isfinite(points[b]).all()):
            continue
        ys, xs = points[[a, b], 0], points[[a, b], 1]  # ControlNet's naming: Y is x, X is y
        mx, my = float(np.mean(xs)), float(np.mean(ys))
        length = math.hypot(xs[0] - xs[1], ys[0] - ys[1])
        angle = math.degrees(math.atan2(xs[0] - xs[1], ys[0] - ys[1]))
        polygon = cv2.ellipse2Poly(
            (int(my), int(mx)), (int(length / 2), STICK_WIDTH), int(angle), 0, 360, 1
        )
        _blend_limb(canvas, polygon, COLORS[i])
    return canvas


def _blend_limb(canvas: Frame, polygon: NDArray[np.int32], color: tuple[int, int, int]) -> None:
    """ControlNet's limb: the filled polygon blended 60 % over the canvas. Blending a copy
    of the whole canvas leaves every pixel off the polygon as it was, so only the polygon's
    bounding box is blended, in place (the same pixels, for a fraction of the work)."""
    h, w = canvas.shape[:2]
    x, y, bw, bh = cv2.boundingRect(polygon)
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + bw), min(h, y + bh)
    if x1 <= x0 or y1 <= y0:
        return
    region = canvas[y0:y1, x0:x1]
    limb = region.copy()
    cv2.fillConvexPoly(limb, polygon - np.array([x0, y0], np.int32), color)
    canvas[y0:y1, x0:x1] = cv2.addWeighted(region, 0.4, limb, 0.6, 0)


def _hsv_rgb(h: float) -> tuple[int, int, int]:
    """matplotlib.colors.hsv_to_rgb([h, 1, 1]) * 255, truncated as ControlNet's int cast."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    q, t = 1.0 - f, f
    rgb = [(1, t, 0), (q, 1, 0), (0, 1, t), (0, q, 1), (t, 0, 1), (1, 0, q)][i]
    return int(rgb[0] * 255), int(rgb[1] * 255), int(rgb[2] * 255)


def draw_hand(canvas: Frame, points: NDArray[np.floating[Any]]) -> None:
    """ControlNet's draw_handpose: HSV-coloured bones (thickness 2), points of radius 4 in
    (0, 0, 255), which its RGB canvas shows blue."""
    if not np.isfinite(points[:, :2]).all():
        return
    pts = points[:, :2].astype(int)
    for k, (a, b) in enumerate(HAND_EDGES):
        color = _hsv_rgb(k / len(HAND_EDGES))
        cv2.line(canvas, tuple(pts[a]), tuple(pts[b]), color, thickness=2)
    for x, y in pts:
        cv2.circle(canvas, (int(x), int(y)), 4, (0, 0, 255), thickness=-1)


def draw_face(canvas: Frame, points: NDArray[np.floating[Any]]) -> None:
    """ControlNet's draw_facepose: white dots of radius 3."""
    if not np.isfinite(points[:, :2]).all():
        return
    for x, y in points[:, :2].astype(int):
        cv2.circle(canvas, (int(x), int(y)), 3, (255, 255, 255), thickness=-1)


def control_image(
    size: tuple[int, int],
    coco: NDArray[np.float64],
    hands: tuple[NDArray[np.floating[Any]] | None, ...] = (),
    face: NDArray[np.floating[Any]] | None = None,
) -> Frame:
    w, h = size
    canvas = draw_body(np.zeros((h, w, 3), np.uint8), coco)
    for hand in hands:
        if hand is not None:
            draw_hand(canvas, hand)
    if face is not None:
        draw_face(canvas, face)
    return canvas


def skeleton_over(frame: Frame, points: NDArray[np.floating[Any]]) -> Frame:
    """A copy of `frame` with BlazePose `points` (33, x y visibility) drawn as ControlNet's
    body skeleton: the live preview of a capture."""
    coco = to_coco18(points[:, :2], np.nan_to_num(points[:, 2]))
    return draw_body(frame.copy(), coco)
