"""Dense piecewise-affine warps: a source face onto a target mesh, and the frame around it.

Target triangles are rasterised into an index map, nearest last (painter's order by depth);
those turned away from the camera are drawn first, under the rest, so a turned head shows
its visible side while thin folded triangles (the sides of the nose) leave no holes. Each
pixel then maps through its triangle's affine transform back into the source, and one
`cv2.remap` samples the source texture.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import cv2
import numpy as np
from numpy.typing import NDArray

from vfxmocap.media.image import Frame
from vfxmocap.processors.face_swap.blend import copy_where
from vfxmocap.vision.landmarks import FACE_OVAL, FLIP_YZ, face_frame, outline, triangles

Points = NDArray[np.float32]
_SUBPIXEL = 4  # fixed-point bits for cv2.fillConvexPoly
_MAX_WORK_SIDE = 256  # maps are computed at most at this size, then upscaled (they are smooth)
# The frame is warped out to a ring at least this many times the face outline (further where
# the face grows: `_GAP`), then left alone.
_RING = 1.45
# Between the band and the ring the frame's displacement falls off smoothly (a smoothstep
# over this many loops), not linearly: a straight line behind the face (a stripe, a door
# edge) bends in an S instead of kinking at the band and at the ring.
_LOOPS = 4
# Where the band moves out by d, the ring is widened to this many times d past the band's
# place before the move, as far as the ROI allows: the smoothstep falls 1.375 d per gap at
# its steepest (1.5 d without the loops' sampling), and a narrower gap would fold the frame
# over itself. Where the ROI stops the ring short, the fall is made more linear (1 d per
# gap), so it folds no sooner than a linear fall would.
_GAP = 2.0
_STEEPEST = 1.375
# The face is drawn past its landmark outline to this many times it (from the outline's
# centre): MediaPipe's oval runs just inside the silhouette, and the cheeks' and jaw's own
# edge, the way they turn away into shadow, is the face's shape as much as the outline is.
BAND = 1.2


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
    landmarks: NDArray[np.float32], tris: NDArray[np.int32] | None = None
) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """Triangles in drawing order: those turned away first, then those facing the camera far
    to near; returns (indices, triangles).

    Back-face culling by winding: a triangle faces the camera when it winds the same way in
    the image as on the face seen from the front (the mesh turned frontal by its own head
    pose). A triangle folded over by a turned head winds the other way. `tris` replaces the
    mesh's own triangles (e.g. other fans over the eyes).
    """
    tris = triangles() if tris is None else tris
    p = landmarks[:, :3].astype(np.float64) * FLIP_YZ  # y up, z to camera
    frontal = face_frame(landmarks)
    image_area = signed_areas(p[:, :2], tris)
    frontal_area = signed_areas(frontal[:, :2], tris)
    facing = (image_area * np.sign(frontal_area) > 0) & (np.abs(frontal_area) > 1e-9)
    depth = landmarks[tris, 2].mean(axis=1)
    order = np.argsort(-depth)  # far (large MediaPipe z) first
    keep = np.concatenate([order[~facing[order]], order[facing[order]]])  # hidden ones under
    return keep.astype(np.int32), tris[keep]


def signed_areas(xy: NDArray[np.float64], tris: NDArray[np.int32]) -> NDArray[np.float64]:
    a, b, c = xy[tris[:, 0]], xy[tris[:, 1]], xy[tris[:, 2]]
    area: NDArray[np.float64] = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (
        b[:, 1] - a[:, 1]
    )
    return area


@dataclass
class Raster:
    """Target triangles rasterised once, at most `max_side` pixels across: per work pixel,
    the index of the triangle drawn there (len(tris) where none is). Any number of warps
    that share the target mesh (the face, the frame behind it) reuse it."""

    index: NDArray[np.int32]
    target_xy: Points  # target points in work pixels
    tris: NDArray[np.int32]
    roi: tuple[int, int, int, int]
    scale: tuple[float, float]  # work pixels per ROI pixel, per axis


def rasterise(
    target_points: Points,
    tris: NDArray[np.int32],
    roi: tuple[int, int, int, int],
    max_side: int = _MAX_WORK_SIDE,
) -> Raster:
    x0, y0, x1, y1 = roi
    width, height = x1 - x0, y1 - y0
    scale = min(1.0, max_side / max(width, height))
    work_w, work_h = max(1, round(width * scale)), max(1, round(height * scale))
    # per axis, the scale cv2.resize will use; work pixel centres as it places them:
    # w = (u + 0.5) * s - 0.5
    sx, sy = work_w / width, work_h / height
    factor = np.array([sx, sy], np.float32)
    target_xy = (target_points[:, :2] - np.array([x0, y0], np.float32) + 0.5) * factor - 0.5
    index = np.full((work_h, work_w), len(tris), np.int32)
    polygons = np.round(target_xy * (1 << _SUBPIXEL)).astype(np.int32)[tris]  # (n, 3, 2)
    area = signed_areas(target_xy.astype(np.float64), tris)  # degenerate ones are skipped
    fill = cv2.fillConvexPoly
    for i in np.flatnonzero(np.abs(area) > 1e-3).tolist():
        fill(index, polygons[i], i, cv2.LINE_8, _SUBPIXEL)
    return Raster(index, target_xy, tris, roi, (sx, sy))


@lru_cache(maxsize=8)  # ROI sizes change from frame to frame: a few, not all of them
def _grid(width: int, height: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """x and y of every pixel of a width x height image (read only: shared)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


def raster_maps(
    raster: Raster, source_points: Points, drawn: NDArray[np.bool_] | None = None
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.uint8]]:
    """Per ROI pixel, where to sample the source (x and y maps), and 255 where a triangle
    (of those `drawn`, all by default) covers it; elsewhere the maps are the identity (of
    target pixels, shifted by the ROI). Worked out at the raster's size, then interpolated."""
    x0, y0, x1, y1 = raster.roi
    width, height = x1 - x0, y1 - y0
    sx, sy = raster.scale
    tris = raster.tris
    matrices, ok = _affines(raster.target_xy, source_points[:, :2], tris)
    if drawn is not None:
        ok &= drawn
    # the last row is the identity: a work pixel maps to its ROI pixel in frame coordinates
    identity = np.array(
        [[1 / sx, 0], [0, 1 / sy], [x0 + 0.5 / sx - 0.5, y0 + 0.5 / sy - 0.5]], np.float64
    )
    matrices[~ok] = identity
    # per coefficient, a contiguous column gathered by triangle index (one strided gather
    # of all six is several times slower)
    table = np.concatenate([matrices, identity[None]]).reshape(-1, 6).T.astype(np.float32)
    a, b, c, d, e, f = (np.take(column, raster.index) for column in table)
    work_h, work_w = raster.index.shape
    xs, ys = _grid(work_w, work_h)
    map_x = a * xs
    map_x += c * ys
    map_x += e
    map_y = b * xs
    map_y += d * ys
    map_y += f
    covered = np.where(np.append(ok, False), 255, 0).astype(np.uint8)
    mask: NDArray[np.uint8] = np.take(covered, raster.index)
    if (work_w, work_h) != (width, height):  # the maps are smooth: interpolate them
        map_x = cv2.resize(map_x, (width, height), interpolation=cv2.INTER_LINEAR)
        map_y = cv2.resize(map_y, (width, height), interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
    return map_x, map_y, mask


def piecewise_maps(
    source_points: Points,
    target_points: Points,
    tris: NDArray[np.int32],
    roi: tuple[int, int, int, int],
    max_side: int = _MAX_WORK_SIDE,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.uint8]]:
    """`raster_maps` of the target triangles rasterised for this one warp."""
    return raster_maps(rasterise(target_points, tris, roi, max_side), source_points)


def _area_filtered(image: Frame, points: Points, shrink: float) -> tuple[Frame, Points]:
    """The source shrunk with area filtering when the target face is much smaller, so the
    remap samples it near 1:1 instead of aliasing its detail into noise."""
    if shrink > 0.8:
        return image, points
    h, w = image.shape[:2]
    size = (max(1, round(w * shrink)), max(1, round(h * shrink)))
    small: Frame = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    factor = np.array([size[0] / w, size[1] / h], np.float32)
    return small, (points[:, :2] * factor).astype(np.float32)


def _span(points: Points) -> float:
    return float(np.ptp(points[:, 0]) + np.ptp(points[:, 1]))


def warp_face(
    source_image: Frame,
    source_points: Points,
    target_landmarks: NDArray[np.float32],
    roi: tuple[int, int, int, int],
    raster: Raster | None = None,
    drawn: NDArray[np.bool_] | None = None,
) -> tuple[Frame, NDArray[np.uint8]]:
    """Warp the source face into the target ROI (x0, y0, x1, y1).

    Returns the warped RGB patch and its coverage mask (255 where the mesh covers), both of
    the ROI's size; the patch is black outside the box of the coverage. `raster` (with the
    `drawn` triangles that are the face's) reuses a rasterisation of the target mesh made
    for another warp; its first points are the target landmarks.
    """
    if raster is None:
        _, tris = visible_triangles(target_landmarks)
        raster = rasterise(target_landmarks, tris, roi)
    n = len(target_landmarks)  # the landmarks: the band (and any ring) aside
    shrink = _span(target_landmarks) / max(_span(source_points[:n]), 1.0)
    image, points = _area_filtered(source_image, source_points, shrink)
    extra = len(raster.target_xy) - len(points)  # points of the raster no source point has
    padded = np.concatenate([points[:, :2], np.zeros((extra, 2), np.float32)]) if extra else points
    map_x, map_y, mask = raster_maps(raster, padded, drawn)
    warped = np.zeros((*mask.shape, 3), np.uint8)
    # only the pixels the face covers are worth sampling (the ROI has a wide margin)
    x, y, bw, bh = cv2.boundingRect(mask)
    box = (slice(y, y + bh), slice(x, x + bw))
    if bw and bh:
        sx, sy = map_x[box], map_y[box]
        warped[box] = cv2.remap(image, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        h, w = image.shape[:2]
        # a mesh reaching past the source image's edge (a tight crop) would draw reflected junk
        outside = (sx < 0) | (sy < 0) | (sx > w - 1) | (sy > h - 1)
        mask[box][outside] = 0
    return warped, mask


def _within(points: Points, roi: tuple[int, int, int, int]) -> Points:
    x0, y0, x1, y1 = roi
    clipped: Points = np.clip(points, [x0, y0], [x1 - 1, y1 - 1]).astype(np.float32)
    return clipped


@cache
def ring_strip(n: int, offset: int) -> NDArray[np.int32]:
    """Triangles between a closed loop of n points (0..n-1) and its ring (offset..offset+n-1)."""
    i = np.arange(n)
    j = (i + 1) % n
    inner = np.stack([i, j, offset + i], axis=1)
    outer = np.stack([j, offset + j, offset + i], axis=1)
    strip: NDArray[np.int32] = np.concatenate([inner, outer]).astype(np.int32)
    return strip


@dataclass
class Backdrop:
    """The moved face mesh, a band past its outline and loops around it out to a ring,
    rasterised once: `raster` draws the strips from the band out to the ring first, then the
    band and the face's triangles (`face` marks those two: what a face warp draws);
    `original` are the same points before the move (where the frame is sampled)."""

    raster: Raster
    original: Points
    face: NDArray[np.bool_]

    def sampled(self, source_points: Points) -> Points:
        """A source face's points for this mesh's vertices: its landmarks, then its band
        (the loops' points are never sampled from a source: `warp_face` pads them)."""
        points: Points = np.concatenate([source_points[:, :2], outline(source_points, BAND)])
        return points


def _falloff(t: NDArray[np.float64]) -> NDArray[np.float64]:
    """1 at the band, 0 at the ring, flat at both ends (1 - smoothstep)."""
    eased: NDArray[np.float64] = 1.0 - t * t * (3.0 - 2.0 * t)
    return eased


def _room(
    start: Points, step: NDArray[np.float64], roi: tuple[int, int, int, int]
) -> NDArray[np.float64]:
    """Per point, how many `step`s it can go from `start` and stay inside the ROI."""
    x0, y0, x1, y1 = roi
    low = np.array([x0, y0], np.float64) - start
    high = np.array([x1 - 1, y1 - 1], np.float64) - start
    with np.errstate(divide="ignore", invalid="ignore"):
        reach = np.where(step > 0, high / step, np.where(step < 0, low / step, np.inf))
    room: NDArray[np.float64] = reach.min(axis=1)
    return room


def _loops(
    band_before: Points, band: Points, ring: Points, roi: tuple[int, int, int, int]
) -> tuple[Points, Points]:
    """The loops from the band out to the ring (`_LOOPS` of them, the ring last), before and
    after the move: evenly spaced before, each carried part of the band's move, by
    `_falloff` where the gap allows. The ring is widened where the band moves far, as far as
    the ROI allows (at its edge the frame must not move: past it the frame is left as it
    is)."""
    move = (band - band_before).astype(np.float64)
    gap = (ring - band_before).astype(np.float64)
    width = np.maximum(np.linalg.norm(gap, axis=1), 1e-6)
    wider = np.maximum(1.0, _GAP * np.linalg.norm(move, axis=1) / width)
    gap *= np.minimum(wider, np.maximum(1.0, _room(band_before, gap, roi)))[:, None]
    width = np.maximum(np.linalg.norm(gap, axis=1), 1e-6)
    # per point, the gap over the band's outward move (a move inward never folds). A fall of
    # steepest slope s folds where that is under s: linear (s = 1) at 1, fully smooth
    # (s = _STEEPEST) from 1 + 2 (_STEEPEST - 1) on, mixed in between, where the mix's
    # steepest slope stays half way between 1 and the ratio
    outward = np.einsum("ij,ij->i", move, gap) / width
    ratio = np.where(outward > 1e-6, width / np.maximum(outward, 1e-6), np.inf)
    smooth = np.clip((ratio - 1.0) / (2.0 * (_STEEPEST - 1.0)), 0.0, 1.0)
    t = np.arange(1, _LOOPS + 1, dtype=np.float64) / _LOOPS
    fall = (1.0 - smooth) * (1.0 - t)[:, None] + smooth * _falloff(t)[:, None]
    before = band_before[None] + t[:, None, None] * gap[None]
    after = before + fall[..., None] * move[None]
    return before.reshape(-1, 2).astype(np.float32), after.reshape(-1, 2).astype(np.float32)


def backdrop_mesh(
    original: NDArray[np.float32], moved: NDArray[np.float32], roi: tuple[int, int, int, int]
) -> Backdrop:
    n, k = len(original), len(FACE_OVAL)
    band_before = outline(original, BAND)
    band = outline(moved, BAND)
    loops_before, loops = _loops(band_before, band, outline(original, _RING), roi)
    _, face_tris = visible_triangles(moved)
    # band points are stacked after the landmarks, the loops' after them, loop by loop
    inner = np.concatenate([FACE_OVAL, n + np.arange(k)])[ring_strip(k, k)]
    outer = np.concatenate([n + j * k + ring_strip(k, k) for j in range(_LOOPS)])
    tris = np.concatenate([outer, inner, face_tris])
    dst = np.concatenate([moved[:, :2], _within(band, roi), _within(loops, roi)])
    src = np.concatenate([original[:, :2], _within(band_before, roi), _within(loops_before, roi)])
    face = np.arange(len(tris)) >= len(outer)
    return Backdrop(rasterise(dst, tris, roi), src, face)


def warp_backdrop(
    frame: Frame,
    original: NDArray[np.float32],
    moved: NDArray[np.float32],
    roi: tuple[int, int, int, int],
    mesh: Backdrop | None = None,
) -> Frame:
    """The frame's ROI warped so the face, hair and background edge follow the face mesh
    from `original` to `moved` landmarks (frame pixels), fading to no change at a ring
    around the face; what the swapped face does not cover still fits its new outline.
    `mesh` is `backdrop_mesh(original, moved, roi)` when the caller has made it."""
    mesh = backdrop_mesh(original, moved, roi) if mesh is None else mesh
    map_x, map_y, cover = raster_maps(mesh.raster, mesh.original)
    warped: Frame = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    x0, y0, x1, y1 = roi
    untouched = cover == 0  # outside the ring: exactly the frame, not a resampled copy
    copy_where(warped, frame[y0:y1, x0:x1], untouched)
    return warped
