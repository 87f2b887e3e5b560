"""Dense piecewise-affine warp of a source face onto a target face's mesh.

Target triangles are rasterised into an index map, nearest last (painter's order by depth)
and those turned away from the camera are skipped, so a turned head shows only its visible
side. Each pixel then maps through its triangle's affine transform back into the source,
and one `cv2.remap` samples the source texture.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from vfxmocap.media.image import Frame
from vfxmocap.vision.landmarks import face_axes, triangles

Points = NDArray[np.float32]
_SUBPIXEL = 4  # fixed-point bits for cv2.fillConvexPoly
_MAX_WORK_SIDE = 256  # maps are computed at most at this size, then upscaled (they are smooth)


def _affines(
    target: Points, source: Points, tris: NDArray[np.int32]
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Per triangle, the 3x2 matrix M with [x, y, 1] @ M = source point of target (x, y)."""
    # inv([[x, y, 1] per vertex]) in closed form (adjugate / determinant): ~30x faster than
    # np.linalg.solve on hundreds of tiny systems.
    p: NDArray[np.float64] = target[tris].astype(np.float64)
    x, y = p[..., 0], p[..., 1]
    det: NDArray[np.float64] = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (
        y[:, 1] - y[:, 0]
    )
    ok = np.abs(det) > 1e-3
    safe = np.where(ok, det, 1.0)
    inv = np.empty((len(tris), 3, 3))
    inv[:, 0] = np.stack([y[:, 1] - y[:, 2], y[:, 2] - y[:, 0], y[:, 0] - y[:, 1]], axis=1)
    inv[:, 1] = np.stack([x[:, 2] - x[:, 1], x[:, 0] - x[:, 2], x[:, 1] - x[:, 0]], axis=1)
    inv[:, 2] = np.stack(
        [
            x[:, 1] * y[:, 2] - x[:, 2] * y[:, 1],
            x[:, 2] * y[:, 0] - x[:, 0] * y[:, 2],
            x[:, 0] * y[:, 1] - x[:, 1] * y[:, 0],
        ],
        axis=1,
    )
    inv /= safe[:, None, None]
    matrices = inv @ source[tris].astype(np.float64)
    return matrices, ok


def visible_triangles(
    landmarks: NDArray[np.float32],
) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """Triangles facing the camera, ordered far to near; returns (indices, triangles).

    Back-face culling by winding: a triangle faces the camera when it winds the same way in
    the image as on the face seen from the front (the mesh turned frontal by its own head
    pose). A triangle folded over by a turned head winds the other way.
    """
    tris = triangles()
    p = landmarks[:, :3].astype(np.float64) * np.array([1.0, -1.0, -1.0])  # y up, z to camera
    axes = face_axes(p)
    frontal = (p - p.mean(axis=0)) @ axes.T  # face frame: x across, y up
    image_area = _signed_areas(p[:, :2], tris)
    frontal_area = _signed_areas(frontal[:, :2], tris)
    facing = (image_area * np.sign(frontal_area) > 0) & (np.abs(frontal_area) > 1e-9)
    depth = landmarks[tris, 2].mean(axis=1)
    order = np.argsort(-depth)  # far (large MediaPipe z) first
    keep = order[facing[order]]
    return keep.astype(np.int32), tris[keep]


def _signed_areas(xy: NDArray[np.float64], tris: NDArray[np.int32]) -> NDArray[np.float64]:
    a, b, c = xy[tris[:, 0]], xy[tris[:, 1]], xy[tris[:, 2]]
    area: NDArray[np.float64] = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (
        b[:, 1] - a[:, 1]
    )
    return area


def warp_face(
    source_image: Frame,
    source_points: Points,
    target_landmarks: NDArray[np.float32],
    roi: tuple[int, int, int, int],
) -> tuple[Frame, NDArray[np.uint8]]:
    """Warp the source face into the target ROI (x0, y0, x1, y1).

    Returns the warped RGB patch and its coverage mask (255 where the mesh covers), both of
    the ROI's size.
    """
    x0, y0, x1, y1 = roi
    width, height = x1 - x0, y1 - y0
    scale = min(1.0, _MAX_WORK_SIDE / max(width, height))
    work_w, work_h = max(1, round(width * scale)), max(1, round(height * scale))

    keep, tris = visible_triangles(target_landmarks)
    target_xy = (target_landmarks[:, :2] - np.array([x0, y0], np.float32)) * scale
    matrices, ok = _affines(target_xy, source_points, tris)

    index = np.full((work_h, work_w), -1, np.int32)
    polygons = np.round(target_xy * (1 << _SUBPIXEL)).astype(np.int32)[tris]  # (n, 3, 2)
    fill = cv2.fillConvexPoly
    for i in np.flatnonzero(ok).tolist():
        fill(index, polygons[i], i, cv2.LINE_8, _SUBPIXEL)
    del keep

    covered = index >= 0
    coef = matrices.reshape(len(tris), 6).astype(np.float32)[np.maximum(index, 0)]  # (h, w, 6)
    ys, xs = np.mgrid[0:work_h, 0:work_w].astype(np.float32)
    map_x = coef[..., 0] * xs + coef[..., 2] * ys + coef[..., 4]
    map_y = coef[..., 1] * xs + coef[..., 3] * ys + coef[..., 5]
    mask: NDArray[np.uint8] = np.where(covered, 255, 0).astype(np.uint8)
    if scale < 1.0:
        # Interpolate maps at full size; pixel centres shift by half a work pixel.
        map_x = cv2.resize(map_x, (width, height), interpolation=cv2.INTER_LINEAR)
        map_y = cv2.resize(map_y, (width, height), interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
    warped: Frame = cv2.remap(
        source_image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    return warped, mask
