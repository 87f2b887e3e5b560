"""The built-in portrait engine: a dense mesh warp driven by MediaPipe's face mesh, no downloads.

The portrait is analysed once: each chosen face's 478 landmarks, its head frame (axes from the
mesh's 3-D shape, centre of its skull-fixed points), two rings past the face outline (over
hair, ears and neck) and fixed anchors on the border of the region warped. Per driving frame
the driver's face is tracked (one mesh pass) and smoothed (One Euro), and its motion measured
against the neutral frame: a similarity fit on skull-fixed points gives the head's rotation,
scale and shift; what remains once that is undone is the expression, in the head's own frame
and in face sizes, so a driver with another face shape moves the portrait without reshaping
it. The portrait's mesh is posed by both, the rings follow the outline (the outer one stays
put while stitching), and the face region is remapped from the full-resolution portrait.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy.spatial import Delaunay

from vfxmocap.portrait.engine import AnimateOptions, Driven, FaceEdits
from vfxmocap.portrait.faces import portrait_faces
from vfxmocap.processors.face_swap.warp import piecewise_maps, ring_strip, visible_triangles
from vfxmocap.vision.faces import Face, MediaPipeFaceAnalyzer
from vfxmocap.vision.landmarks import (
    FACE_OVAL,
    FLIP_YZ,
    LEFT_EYE,
    LEFT_IRIS,
    LIPS_INNER,
    NOSE_TIP,
    RIGHT_EYE,
    RIGHT_IRIS,
    face_axes,
    mouth_openness,
    triangles,
)
from vfxmocap.vision.tracking import FaceTracker, TrackerOptions

F64 = NDArray[np.float64]
Image = NDArray[np.uint8]

# Points that move with the skull, not with expressions: forehead, temples, the nose's
# bridge and tip, eye corners, the sides of the face at eye level.
_RIGID = np.array(
    [
        10,
        109,
        67,
        103,
        338,
        297,
        332,
        151,
        9,
        8,
        168,
        6,
        197,
        195,
        5,
        4,
        33,
        133,
        362,
        263,
        127,
        356,
        234,
        454,
        21,
        251,
    ]
)
# Eyelids, outer corner to inner corner, upper lid over the matching lower lid.
_RIGHT_UPPER = [246, 161, 160, 159, 158, 157, 173]
_RIGHT_LOWER = [7, 163, 144, 145, 153, 154, 155]
_LEFT_UPPER = [466, 388, 387, 386, 385, 384, 398]
_LEFT_LOWER = [249, 390, 373, 374, 380, 381, 382]
_RIGHT_BROW_LINE = [46, 53, 52, 65, 55, 70, 63, 105, 66, 107]
_LEFT_BROW_LINE = [276, 283, 282, 295, 285, 300, 293, 334, 296, 336]
_CORNERS = (61, 291, 78, 308)  # mouth corners, person's right then left (outer, inner)
_LOWER_LIP = [146, 91, 181, 84, 17, 314, 405, 321, 375, 95, 88, 178, 87, 14, 317, 402, 318, 324]
_UPPER_LIP = [185, 40, 39, 37, 0, 267, 269, 270, 409, 191, 80, 81, 82, 13, 312, 311, 310, 415]
_CHIN = [152, 148, 176, 149, 150, 136, 377, 400, 378, 379, 365, 175, 199, 200, 18]

# Rings past the face, and the fixed border of the region warped, in times the outline's
# distance from the face centre.
_RING_NEAR, _RING_FAR, _BORDER = 1.35, 2.0, 2.6
_FOLLOW_NEAR = 0.85  # how far the near ring (hair, ears, under the jaw) follows the outline
_FOLLOW_FAR = 0.3  # ...and the far ring above the face (hair); below it (neck base) stays
_THROAT_RGB = np.array([28.0, 9.0, 11.0])  # a shaded mouth interior: dark at the top,
_TONGUE_RGB = np.array([118.0, 48.0, 52.0])  # the tongue's colour toward the lower lip
# Warp maps are worked out at the region's own size up to this many pixels a side, then
# interpolated: smooth, but lids and lips need a few work pixels to close and open cleanly.
_MAP_SIDE = 384


def head_axes(points: F64) -> F64:
    """Rows: the face's x (across), y (up) and z (out of the face), in image coordinates."""
    axes: F64 = face_axes(points * FLIP_YZ) * FLIP_YZ
    return axes


def similarity(source: F64, target: F64) -> tuple[float, F64]:
    """Umeyama: scale s and rotation R with target - mean ~ s R (source - mean)."""
    a, b = source - source.mean(axis=0), target - target.mean(axis=0)
    u, sv, vt = np.linalg.svd(b.T @ a / len(a))
    d = np.diag([1.0, 1.0, float(np.sign(np.linalg.det(u @ vt)) or 1.0)])
    rotation: F64 = u @ d @ vt
    scale = float(np.sum(sv * np.diag(d)) / max(float(np.mean(np.sum(a * a, axis=1))), 1e-12))
    return scale, rotation


def scaled_rotation(rotation: F64, amount: float) -> F64:
    """The same rotation axis, `amount` times the angle."""
    vector, _ = cv2.Rodrigues(rotation)
    scaled, _ = cv2.Rodrigues(vector * amount)
    return np.asarray(scaled, np.float64)


def euler_rotation(yaw: float, pitch: float, roll: float) -> F64:
    """A rotation in the face's own frame (x across, y up, z out), from degrees."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), math.sin(r), 0], [-math.sin(r), math.cos(r), 0], [0, 0, 1]])
    rotation: F64 = rz @ rx @ ry
    return rotation


@dataclass(frozen=True)
class HeadFrame:
    """A face in its own frame: centre of the skull-fixed points, axes, size."""

    landmarks: F64  # (478, 3) pixels
    centre: F64  # (3,)
    axes: F64  # (3, 3) rows
    size: F64  # width, height, width (depth is measured like width)

    @classmethod
    def of(cls, landmarks: NDArray[np.floating]) -> HeadFrame:  # type: ignore[type-arg]
        points = np.asarray(landmarks, np.float64)[:, :3]
        centre = points[_RIGID].mean(axis=0)
        axes = head_axes(points)
        local = (points[FACE_OVAL] - centre) @ axes.T
        width, height = float(np.ptp(local[:, 0])), float(np.ptp(local[:, 1]))
        return cls(points, centre, axes, np.array([width, height, width]))

    @property
    def local(self) -> F64:
        local: F64 = (self.landmarks - self.centre) @ self.axes.T
        return local


@dataclass(frozen=True)
class Motion:
    """How a driver moved from its neutral frame."""

    expression: F64  # (478, 3) offsets in the head's frame, in face sizes
    rotation: F64  # (3, 3) in the head's own frame
    scale: float
    shift: F64  # (2,) image-plane shift, in face widths


def measure(neutral: HeadFrame, landmarks: NDArray[np.floating]) -> Motion:  # type: ignore[type-arg]
    """The head motion (similarity on skull-fixed points) and the expression that remains."""
    points = np.asarray(landmarks, np.float64)[:, :3]
    scale, rotation = similarity(neutral.landmarks[_RIGID], points[_RIGID])
    centre = points[_RIGID].mean(axis=0)
    # undo the head motion: the driver's face as if still in the neutral pose
    back = (points - centre) @ rotation / scale + neutral.centre
    expression = (back - neutral.landmarks) @ neutral.axes.T / neutral.size
    in_head = neutral.axes @ rotation @ neutral.axes.T
    shift = (centre - neutral.centre)[:2] / neutral.size[0]
    return Motion(expression, in_head, scale, shift)


def _sigmoid(x: F64) -> F64:
    out: F64 = 1.0 / (1.0 + np.exp(-x))
    return out


@cache
def face_triangles() -> NDArray[np.int32]:
    """The mesh's triangles with the eyes fanned from the iris centres instead of an eye
    corner, so moving an iris moves what is inside the eye (gaze)."""
    tris = triangles()
    fans = set()
    for loop in (RIGHT_EYE, LEFT_EYE):
        fans |= {tuple(sorted((loop[0], u, v))) for u, v in itertools.pairwise(loop[1:])}
    kept = [t for t in tris.tolist() if tuple(t) not in fans]
    return np.array(kept, np.int32)


def _iris_fans(landmarks: F64) -> NDArray[np.int32]:
    """Per eye, triangles from its iris centre to the eye's outline."""
    out = []
    for loop in (RIGHT_EYE, LEFT_EYE):
        eye = landmarks[loop, :2].mean(axis=0)
        iris = min(
            (RIGHT_IRIS[0], LEFT_IRIS[0]), key=lambda i: np.linalg.norm(landmarks[i, :2] - eye)
        )
        n = len(loop)
        out += [(iris, loop[k], loop[(k + 1) % n]) for k in range(n)]
    return np.array(out, np.int32)


class _Portrait:
    """One face of the portrait, analysed once: rest mesh, rings, anchors, region weights."""

    def __init__(self, image: Image, face: Face) -> None:
        self.head = HeadFrame.of(face.landmarks)
        self.opening = mouth_openness(face.landmarks)
        self.tris = np.concatenate([face_triangles(), _iris_fans(self.head.landmarks)])
        oval = self.head.landmarks[FACE_OVAL, :2]
        centre = oval.mean(axis=0)
        height, width = image.shape[:2]
        far = centre + _RING_FAR * (oval - centre)
        edge = centre + _BORDER * (oval - centre)
        x0, y0 = np.floor(np.maximum(edge.min(axis=0), 0)).astype(int)
        x1, y1 = np.ceil(np.minimum(edge.max(axis=0) + 1, [width, height])).astype(int)
        self.roi = (int(x0), int(y0), int(x1), int(y1))
        near = centre + _RING_NEAR * (oval - centre)
        # the far ring follows above the face (hair) and not below it (neck base)
        up = (centre[1] - far[:, 1]) / np.maximum(np.linalg.norm(far - centre, axis=1), 1e-6)
        self.far_follow = _FOLLOW_FAR * np.clip(0.5 + up, 0.0, 1.0)[:, None]
        far = np.clip(far, [x0, y0], [x1 - 1, y1 - 1])
        near = np.clip(near, [x0, y0], [x1 - 1, y1 - 1])
        anchors = _border((x0, y0, x1 - 1, y1 - 1))
        self.rest = np.concatenate([self.head.landmarks[:, :2], near, far, anchors]).astype(
            np.float32
        )
        self.outer = self._outer_triangles(far, anchors)
        self.weights = _region_weights(self.head)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self.grid = (xs, ys)  # each ROI pixel's own coordinates

    def _outer_triangles(self, far: F64, anchors: F64) -> NDArray[np.int32]:
        n, m = len(self.head.landmarks), len(FACE_OVAL)
        oval = np.array(FACE_OVAL)
        near_i = n + np.arange(m)
        far_i = n + m + np.arange(m)
        strip = ring_strip(m, m)
        inner = np.concatenate([oval, near_i])[strip]
        middle = np.concatenate([near_i, far_i])[strip]
        points = np.concatenate([far, anchors])
        simplices = Delaunay(points).simplices
        border = simplices[(simplices >= m).any(axis=1)]  # not inside the far ring
        outside = np.where(border < m, n + m + border, n + 2 * m + (border - m))
        tris: NDArray[np.int32] = np.concatenate([outside, middle, inner]).astype(np.int32)
        return tris

    def posed(self, offsets: F64, rotation: F64, scale: float, shift: F64) -> F64:
        """The landmarks with these expression offsets (head frame, pixels), then turned,
        scaled and shifted about the head's centre."""
        head = self.head
        local = (head.local + offsets) @ rotation.T
        points: F64 = local @ head.axes * scale + head.centre
        points[:, :2] += shift
        return points

    def targets(self, posed: F64, stitching: bool) -> NDArray[np.float32]:
        """Where every mesh vertex goes: landmarks as posed, rings after the outline."""
        n, m = len(posed), len(FACE_OVAL)
        moved: NDArray[np.float32] = self.rest.copy()
        moved[:n] = posed[:, :2]
        outline = posed[FACE_OVAL, :2] - self.rest[FACE_OVAL]
        moved[n : n + m] += (_FOLLOW_NEAR if stitching else 1.0) * outline
        # without stitching the head region moves as a whole; only the border stays
        moved[n + m : n + 2 * m] += (self.far_follow if stitching else 1.0) * outline
        return moved


def _border(box: tuple[int, int, int, int], per_side: int = 4) -> F64:
    x0, y0, x1, y1 = box
    t = np.linspace(0.0, 1.0, per_side + 1)[:-1]
    top = np.stack([x0 + t * (x1 - x0), np.full_like(t, y0)], axis=1)
    right = np.stack([np.full_like(t, x1), y0 + t * (y1 - y0)], axis=1)
    bottom = np.stack([x1 - t * (x1 - x0), np.full_like(t, y1)], axis=1)
    left = np.stack([np.full_like(t, x0), y1 - t * (y1 - y0)], axis=1)
    return np.concatenate([top, right, bottom, left])


@dataclass(frozen=True)
class _Weights:
    lips: F64  # (478,) 1 on the mouth and jaw, 0 above the nose
    eyes: F64  # (478,) 1 on eyes, lids, brows and irises, 0 below the cheekbones


def _region_weights(head: HeadFrame) -> _Weights:
    local = head.local
    height = head.size[1]
    nose = local[NOSE_TIP, 1]
    eyes_low = local[RIGHT_EYE + LEFT_EYE, 1].min()
    lips = _sigmoid((nose - 0.08 * height - local[:, 1]) / (0.03 * height))
    eyes = _sigmoid((local[:, 1] - (eyes_low - 0.06 * height)) / (0.03 * height))
    return _Weights(lips, eyes)


def _handles(
    local: F64,
    indices: Sequence[int],
    deltas: F64,
    radius: float,
    fixed: Sequence[int] = (),
) -> F64:
    """Offsets for every vertex: handles move by `deltas`, `fixed` ones by nothing, and the
    rest by a Gaussian-weighted blend of nearby handles that fades out over `radius`."""
    where = np.array(list(indices) + list(fixed))
    moves = np.concatenate([deltas, np.zeros((len(fixed), 3))])
    d2 = ((local[:, None, :2] - local[where][None, :, :2]) ** 2).sum(axis=2)
    g = np.exp(-d2 / (radius * radius))
    blended = (g @ moves) / np.maximum(g.sum(axis=1, keepdims=True), 1e-9)
    offsets: F64 = blended * g.max(axis=1, keepdims=True)
    offsets[where] = moves  # handles exactly where they were sent
    return offsets


def edit_offsets(head: HeadFrame, edits: FaceEdits) -> F64:
    """The sliders as expression offsets (head frame, pixels; x across, y up)."""
    local = head.local
    w, h = head.size[0], head.size[1]
    offsets = np.zeros_like(local)

    def add(indices: list[int], deltas: F64, radius: float, fixed: list[int]) -> None:
        nonlocal offsets
        if np.any(deltas):
            offsets = offsets + _handles(local, indices, deltas, radius, fixed)

    corners = list(_CORNERS)
    out_x = np.array([-1.0, 1.0, -1.0, 1.0])  # outward: the person's right is image left
    smile = edits.smile
    lift = np.stack([out_x * 0.05 * w * max(smile, 0.0), np.full(4, 0.035 * h * smile)], axis=1)
    add(corners, np.pad(lift, ((0, 0), (0, 1))), 0.12 * w, [NOSE_TIP, 13, 14])
    aaa, eee, woo = (max(v, 0.0) for v in (edits.aaa, edits.eee, edits.woo))
    lower = _LOWER_LIP + _CHIN
    jaw = np.tile([0.0, -0.13 * h * aaa - 0.03 * h * eee - 0.05 * h * woo, 0.0], (len(lower), 1))
    mouth_x = out_x * (0.06 * w * eee - 0.07 * w * woo)
    shape = np.stack([mouth_x, np.zeros(4), np.full(4, 0.03 * w * woo)], axis=1)
    add(lower + corners, np.concatenate([jaw, shape]), 0.2 * w, [*_UPPER_LIP, NOSE_TIP])
    for upper, lower_lid, closed in (
        (_RIGHT_UPPER, _RIGHT_LOWER, edits.blink + edits.wink_right),
        (_LEFT_UPPER, _LEFT_LOWER, edits.blink + edits.wink_left),
    ):
        shut = float(np.clip(closed, 0.0, 1.0))
        iris = _eye_iris(local, upper)
        drop = 0.95 * shut * (local[lower_lid] - local[upper])
        iris_drop = shut * (local[lower_lid].mean(axis=0) - local[iris])
        add([*upper, iris], np.concatenate([drop, iris_drop[None]]), 0.05 * w, lower_lid)
    brows = _RIGHT_BROW_LINE + _LEFT_BROW_LINE
    raise_ = np.tile([0.0, 0.05 * h * edits.eyebrow, 0.0], (len(brows), 1))
    add(brows, raise_, 0.1 * w, RIGHT_EYE + LEFT_EYE)
    gaze = np.array([edits.gaze_x, -edits.gaze_y, 0.0])
    if np.any(gaze):
        for upper, loop in ((_RIGHT_UPPER, RIGHT_EYE), (_LEFT_UPPER, LEFT_EYE)):
            iris = _eye_iris(local, upper)
            ring = RIGHT_IRIS if iris == RIGHT_IRIS[0] else LEFT_IRIS
            half = np.ptp(local[loop], axis=0) / 2
            reach = np.maximum(half - np.ptp(local[ring], axis=0) / 2, 0.0) * [1.0, 1.0, 0.0]
            add(ring, np.tile(gaze * reach, (len(ring), 1)), 0.03 * w, loop)
    return offsets


def _eye_iris(local: F64, upper: list[int]) -> int:
    eye = local[upper].mean(axis=0)
    return min((RIGHT_IRIS[0], LEFT_IRIS[0]), key=lambda i: float(np.linalg.norm(local[i] - eye)))


def _swap_channels(image: Image) -> Image:
    """BGR to RGB, or back."""
    swapped: Image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return swapped


def _cavity(patch: Image, posed: F64, roi: tuple[int, int, int, int], strength: float) -> None:
    """Shade the mouth opening in place: dark inside, the lips' own texture at its rim (the
    source's teeth when it showed them)."""
    x0, y0 = roi[0], roi[1]
    poly = posed[LIPS_INNER, :2] - [x0, y0]
    bx0, by0 = np.floor(np.maximum(poly.min(axis=0) - 2, 0)).astype(int)
    bx1, by1 = np.ceil(poly.max(axis=0) + 3).astype(int)
    bx1, by1 = min(int(bx1), patch.shape[1]), min(int(by1), patch.shape[0])
    if bx1 - bx0 < 3 or by1 - by0 < 3:
        return
    mask = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
    cv2.fillPoly(mask, [np.round(poly - [bx0, by0]).astype(np.int32)], 255, cv2.LINE_AA)
    depth = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    gap = max(float(np.ptp(poly[:, 1])), 1.0)
    # below the upper lip first: the upper teeth (the source's, stretched) stay in view
    rows = np.arange(by0, by1, dtype=np.float32)[:, None] - float(poly[:, 1].min())
    alpha = np.clip(depth / (0.3 * gap), 0.0, 1.0) * np.clip(rows / (0.35 * gap), 0.3, 1.0)
    alpha = alpha[..., None] * strength
    region = patch[by0:by1, bx0:bx1].astype(np.float32)
    down = np.clip(rows / gap, 0.0, 1.0) ** 2
    shade = _THROAT_RGB + (_TONGUE_RGB - _THROAT_RGB) * down[..., None]
    patch[by0:by1, bx0:bx1] = np.clip(region * (1 - alpha) + shade * alpha, 0, 255).astype(np.uint8)


class BuiltinEngine:
    """Zero-download portrait animation. Frames are BGR uint8, as the engine contract has
    them; `drive_rgb` takes and gives RGB (the media layer's frames) without converting, as
    it works in RGB inside (MediaPipe's order). `device` is unused: MediaPipe runs on the CPU."""

    name = "builtin"

    def __init__(
        self,
        source: Image,
        options: AnimateOptions,
        *,
        faces: str = "largest",
        device: str | None = None,
    ) -> None:
        del device
        self.source = _swap_channels(source)  # RGB from here on
        self.options = options
        self._analyzer = MediaPipeFaceAnalyzer(tiles=False)
        try:
            chosen = portrait_faces(self._analyzer, source, faces)  # it takes BGR
        except BaseException:
            self._analyzer.close()
            raise
        self.faces: list[Face] = chosen
        self._portraits = [_Portrait(self.source, face) for face in chosen]
        self._tracker = FaceTracker(
            self._analyzer, TrackerOptions(detect_every=60, smooth=options.smoothing)
        )
        self._neutral: HeadFrame | None = None
        self._driver_id: int | None = None
        self._last: Image = self.source  # RGB

    # --- driving ------------------------------------------------------------------------

    def set_neutral(self, driving: Image) -> bool:
        faces = self._analyzer.analyze(_swap_channels(driving))
        if not faces:
            return False
        self._neutral = HeadFrame.of(faces[0].landmarks)
        return True

    def drive(self, driving: Image, t: float) -> Driven:
        driven = self.drive_rgb(_swap_channels(driving), t)
        return Driven(_swap_channels(driven.frame), driven.had_face, driven.driver_faces)

    def drive_rgb(self, driving: Image, t: float) -> Driven:
        """`drive` for RGB frames in and out (no conversions on the per-frame path)."""
        faces = self._tracker.update(driving, t)
        face = self._driver(faces)
        if face is None:
            return Driven(self._last, had_face=False, driver_faces=len(faces))
        if self._neutral is None:
            self._neutral = HeadFrame.of(face.landmarks)
        motion = measure(self._neutral, face.landmarks)
        self._last = self._render_motion(motion)
        return Driven(self._last, had_face=True, driver_faces=len(faces))

    def _driver(self, faces: list[Face]) -> Face | None:
        """The face that drives: the one tracked so far, else the largest."""
        for face in faces:
            if face.track_id == self._driver_id:
                return face
        if not faces:
            return None
        self._driver_id = faces[0].track_id
        return faces[0]

    def _render_motion(self, motion: Motion) -> Image:
        opts = self.options
        pose = opts.head_scale if opts.region in ("all", "pose") else 0.0
        rotation = scaled_rotation(motion.rotation, pose)
        scale = motion.scale**pose
        out = self.source.copy()
        for portrait in self._portraits:
            w = portrait.weights
            gain = {
                "all": np.ones_like(w.lips),
                "expression": np.ones_like(w.lips),
                "pose": np.zeros_like(w.lips),
                "lips": w.lips,
                "eyes": w.eyes,
            }[opts.region]
            ratio = 1.0 + (opts.eye_ratio - 1.0) * w.eyes + (opts.lip_ratio - 1.0) * w.lips
            weight = opts.expression_scale * gain * ratio
            offsets = motion.expression * portrait.head.size * weight[:, None]
            shift = motion.shift * portrait.head.size[0] * pose
            self._paint(out, portrait, portrait.posed(offsets, rotation, scale, shift))
        return out

    # --- editing ------------------------------------------------------------------------

    def edit(self, edits: FaceEdits) -> Image:
        if edits.is_identity():
            return _swap_channels(self.source)
        rotation = euler_rotation(edits.yaw, edits.pitch, edits.roll)
        out = self.source.copy()
        for portrait in self._portraits:
            offsets = edit_offsets(portrait.head, edits)
            self._paint(out, portrait, portrait.posed(offsets, rotation, 1.0, np.zeros(2)))
        return _swap_channels(out)

    # --- rendering ----------------------------------------------------------------------

    def _paint(self, out: Image, portrait: _Portrait, posed: F64) -> None:
        """Warp the face region of `out` so the portrait's mesh lands on `posed`."""
        _, face_tris = visible_triangles(posed.astype(np.float32), portrait.tris)
        tris = np.concatenate([portrait.outer, face_tris])
        targets = portrait.targets(posed, self.options.stitching)
        x0, y0, x1, y1 = portrait.roi
        map_x, map_y, _ = piecewise_maps(portrait.rest, targets, tris, portrait.roi, _MAP_SIDE)
        patch: Image = cv2.remap(
            out, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        # where the mesh did not move, the portrait's own pixels (not a resampled copy)
        xs, ys = portrait.grid
        still = (np.abs(map_x - xs) < 0.02) & (np.abs(map_y - ys) < 0.02)
        patch[still] = out[y0:y1, x0:x1][still]
        opening = mouth_openness(posed)
        if opening > portrait.opening + 0.03:
            strength = min(0.92, 1.6 * (opening - portrait.opening) / opening)
            _cavity(patch, posed, portrait.roi, strength)
        out[y0:y1, x0:x1] = patch

    def close(self) -> None:
        self._analyzer.close()
