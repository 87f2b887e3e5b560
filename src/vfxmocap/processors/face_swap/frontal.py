"""A turned source photo made frontal once, the side it turns away drawn from its mirror image.

A source face turned from the camera shows its far cheek foreshortened to a few pixels
across, and what lies past its silhouette (hair, a shoulder) close beside them. Drawn onto a
target that faces the camera, or turns the other way, those pixels are stretched several
times over, into streaks. So once per source the photo is turned to face the camera by the
engine's own mesh warp, and wherever the mirror image of the face shows a part larger than
the photo does (the far cheek and brow; its eyes, nose and lips are always the photo's), the
mirror image is drawn there instead, fading in with the difference (the "soft symmetry" of
Hassner et al., Effective Face Frontalization in Unconstrained Images, CVPR 2015). Every
frame then draws from a frontal face: the cheek a target shows wide was a wide one in the
source.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from vfxmocap.media.image import Frame
from vfxmocap.processors.face_swap.blend import alpha_blend, fill_in
from vfxmocap.processors.face_swap.warp import (
    BAND,
    backdrop_mesh,
    raster_maps,
    signed_areas,
    warp_face,
)
from vfxmocap.vision.landmarks import (
    FACE_OVAL,
    FLIP_YZ,
    LEFT_EYE,
    LEFT_IRIS,
    LIPS,
    MIRROR,
    NOSE,
    RIGHT_EYE,
    RIGHT_IRIS,
    face_frame,
    head_pose,
    outline,
    triangles,
)

Landmarks = NDArray[np.float32]

_MIN_YAW = 8.0  # degrees: a face turned less is drawn as it is
# log2 of how many times larger the mirror image shows a part of the face than the photo
# does, over which the mirror image fades in (1.15x to 1.74x). Chosen by size, not by side:
# the far half mirrored from a fixed line whatever its size there came out further from the
# source (Tom Hanks -> carphone, 10 frames: 0.500 so, 0.524 from halfway across the cheek).
_GAIN = (0.2, 0.8)
# Drawn from the photo whatever their size in it: the eyes (irises too), the nose and the
# lips. Their light is one-sided (the shadow beside the nose, mirrored, made a dark blot
# on both sides) and the eyes and lips are drawn to the target's expression. Tom Hanks ->
# carphone 720p, 120 frames: dlib distance to the source 0.506 without a mirror image,
# 0.493 mirroring every foreshortened part, 0.467 keeping these (eye opening off by 0.016,
# 0.042, 0.025; mouth 0.048, 0.083, 0.051).
_OWN = sorted(set(LEFT_EYE + RIGHT_EYE + RIGHT_IRIS + LEFT_IRIS + NOSE + LIPS))
_SMOOTHING = 4  # rounds of averaging over neighbouring points: per triangle, areas are noisy
_SMALL_FACE = 300  # px: a narrower face is drawn twice as large, as it is resampled twice
_MARGIN = 0.05  # of the face width: room kept on the canvas around the drawn band


def _mirror_weight(landmarks: Landmarks) -> NDArray[np.float64]:
    """Per landmark, 0 to 1: how much the mirror image is drawn there, by how much larger
    it shows the triangles around it than the photo itself does (the far cheek's are
    foreshortened, the near cheek's mirrored onto them are not)."""
    tris = triangles()
    n = len(landmarks)

    def areas(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        area: NDArray[np.float64] = np.abs(signed_areas(xy, tris)) + 1e-3
        return area

    xy = landmarks[:, :2].astype(np.float64)
    gain = np.log2(areas(xy[MIRROR]) / areas(xy))
    count = np.bincount(tris.ravel(), minlength=n).astype(np.float64)
    count[count == 0] = 1.0

    def to_points(per_triangle: NDArray[np.float64]) -> NDArray[np.float64]:
        summed = np.bincount(tris.ravel(), np.repeat(per_triangle, 3), n).astype(np.float64)
        return summed / count

    per_point = to_points(gain)
    for _ in range(_SMOOTHING):
        per_point = to_points(per_point[tris].mean(axis=1))
    per_point[_OWN] = -np.inf  # the photo's own eyes, nose and lips, whichever side
    t = np.clip((per_point - _GAIN[0]) / (_GAIN[1] - _GAIN[0]), 0.0, 1.0)
    weight: NDArray[np.float64] = t * t * (3 - 2 * t)
    return weight


def frontal_view(image: Frame, landmarks: Landmarks) -> tuple[Frame, Landmarks] | None:
    """The source turned to face the camera (a new image and its landmarks, x, y and depth),
    its far cheek from its mirror image; None for a face already turned less than 8°."""
    yaw = head_pose(landmarks).yaw
    if abs(yaw) < _MIN_YAW:
        return None
    face = face_frame(landmarks)
    half = float(np.abs(face[FACE_OVAL, 0]).max())
    scale = 2.0 if 2 * half < _SMALL_FACE else 1.0
    frontal = (face * FLIP_YZ * scale).astype(np.float32)
    band = outline(frontal, BAND)
    margin = _MARGIN * 2 * half * scale
    frontal[:, :2] -= band.min(axis=0) - margin
    size = np.ceil(band.max(axis=0) - band.min(axis=0) + 2 * margin).astype(int)
    roi = (0, 0, int(size[0]), int(size[1]))
    mesh = backdrop_mesh(frontal, frontal, roi)  # the face and its band on the canvas

    def drawn(photo: Frame, at: Landmarks) -> tuple[Frame, NDArray[np.uint8]]:
        return warp_face(photo, mesh.sampled(at), frontal, roi, mesh.raster, mesh.face)

    canvas, cover = drawn(image, landmarks)
    # the mirror image: landmark i of the flipped photo is where the photo's i's mirror is
    mirrored = landmarks[MIRROR].copy()
    mirrored[:, 0] = image.shape[1] - 1 - mirrored[:, 0]
    mirror, mirror_cover = drawn(np.ascontiguousarray(image[:, ::-1]), mirrored)
    weight = _mirror_weight(landmarks)
    # per pixel, the vertices' weights interpolated over the triangles (as a "map")
    vertex = np.zeros((len(mesh.raster.target_xy), 2), np.float32)
    vertex[: len(weight), 0] = weight
    vertex[len(weight) : len(weight) + len(FACE_OVAL), 0] = weight[FACE_OVAL]  # the band
    per_pixel, _, inside = raster_maps(mesh.raster, vertex, mesh.face)
    alpha = np.where((inside > 127) & (mirror_cover > 127), per_pixel, 0.0).astype(np.float32)
    out = alpha_blend(mirror, canvas, alpha)
    fill_in(out, np.where(cover > 127, 0, 255).astype(np.uint8))  # past the band: smooth
    return out, frontal
