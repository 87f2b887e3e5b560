"""The 478-point face mesh: its topology (triangles, contours, regions) and derived geometry.

Indices follow MediaPipe Face Mesh with refined irises (468-477). "Left" and "right" are the
person's own, as in MediaPipe: the person's right eye appears on the image's left.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from mediapipe.python.solutions import face_mesh_connections as _mesh
from numpy.typing import NDArray

Edges = frozenset[tuple[int, int]]

NUM_LANDMARKS = 478
NOSE_TIP = 4
CHIN = 152
FOREHEAD = 10
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
LEFT_EYE_OUTER, LEFT_EYE_INNER = 263, 362
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
MOUTH_CORNER_RIGHT, MOUTH_CORNER_LEFT = 78, 308  # where the lips meet


def _loop(edges: Edges) -> list[int]:
    """Order the vertices of a closed contour given as unordered edges."""
    graph: dict[int, list[int]] = defaultdict(list)
    for a, b in edges:
        graph[a].append(b)
        graph[b].append(a)
    start = min(graph)
    order, prev, cur = [start], -1, start
    while True:
        nxt = next((n for n in graph[cur] if n != prev and n not in order), None)
        if nxt is None:
            return order
        order.append(nxt)
        prev, cur = cur, nxt


def _split_lips(edges: Edges) -> tuple[list[int], list[int]]:
    """FACEMESH_LIPS holds two closed contours: outer lips and inner lips (the mouth opening)."""
    graph: dict[int, set[int]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
        graph[b].add(a)
    loops, seen = [], set()
    for start in sorted(graph):
        if start in seen:
            continue
        component, stack = set(), [start]
        while stack:
            v = stack.pop()
            if v not in component:
                component.add(v)
                stack.extend(graph[v] - component)
        seen |= component
        loops.append(_loop(frozenset(e for e in edges if e[0] in component)))
    outer, inner = sorted(loops, key=len, reverse=True)[:2]
    return outer, inner


FACE_OVAL = _loop(_mesh.FACEMESH_FACE_OVAL)
LIPS_OUTER, LIPS_INNER = _split_lips(_mesh.FACEMESH_LIPS)
RIGHT_EYE = _loop(_mesh.FACEMESH_RIGHT_EYE)
LEFT_EYE = _loop(_mesh.FACEMESH_LEFT_EYE)
RIGHT_BROW = sorted({i for e in _mesh.FACEMESH_RIGHT_EYEBROW for i in e})
LEFT_BROW = sorted({i for e in _mesh.FACEMESH_LEFT_EYEBROW for i in e})
NOSE = sorted({i for e in _mesh.FACEMESH_NOSE for i in e})
# each iris: its centre, then its four points (the refined mesh's last ten landmarks)
RIGHT_IRIS: list[int] = [468, *sorted({i for e in _mesh.FACEMESH_RIGHT_IRIS for i in e})]
LEFT_IRIS: list[int] = [473, *sorted({i for e in _mesh.FACEMESH_LEFT_IRIS for i in e})]


def _enclosed(inner: list[int], outer: list[int]) -> list[int]:
    """Every mesh vertex from the `inner` contour out to the `outer` one, both included: the
    tessellation flooded from the inner contour, stopped at the outer."""
    neighbours: dict[int, set[int]] = defaultdict(set)
    for a, b in _mesh.FACEMESH_TESSELATION:
        neighbours[a].add(b)
        neighbours[b].add(a)
    found, stack = set(outer), list(inner)
    while stack:
        v = stack.pop()
        if v not in found:
            found.add(v)
            stack.extend(neighbours[v] - found)
    return sorted(found)


# The whole of the lips: both contours and the two rings of points between them (80 points).
LIPS = _enclosed(LIPS_INNER, LIPS_OUTER)

REGIONS: dict[str, list[list[int]]] = {
    "eyes": [RIGHT_EYE, LEFT_EYE],
    "brows": [RIGHT_BROW, LEFT_BROW],
    "nose": [NOSE],
    "mouth": [LIPS_OUTER],
}


# Each landmark's mirror image across the face's midline (left <-> right). Found by matching
# the mesh of flipped photos to the mesh of the photos (the astronaut, carphone frames), it
# has a plain form: the mesh numbers the points of one half first (0-247, with the 28 on the
# midline among them) and their mirror images after, in the same order (248-467); the
# irises (468-472, 473-477) are a centre and four points each, two of them swapped.
_MIDLINE = (0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 94, 151, 152, 164,
            168, 175, 195, 197, 199, 200)  # fmt: skip


def _mirror() -> NDArray[np.intp]:
    index = np.arange(NUM_LANDMARKS)
    one_half = np.setdiff1d(np.arange(248), _MIDLINE)
    other_half = 248 + np.arange(len(one_half))
    index[one_half], index[other_half] = other_half, one_half
    irises = np.array([468, 469, 470, 471, 472]), np.array([473, 476, 475, 474, 477])
    index[irises[0]], index[irises[1]] = irises[1], irises[0]
    return index


MIRROR = _mirror()


@cache
def triangles() -> NDArray[np.int32]:
    """Triangles of the mesh: the tessellation's faces plus fans over the eyes and mouth,
    which the tessellation leaves open, so the source's eyes and lips are carried over."""
    adjacency: dict[int, set[int]] = defaultdict(set)
    for a, b in _mesh.FACEMESH_TESSELATION:
        adjacency[a].add(b)
        adjacency[b].add(a)
    faces = {
        tuple(sorted((a, b, c)))
        for a, b in _mesh.FACEMESH_TESSELATION
        for c in adjacency[a] & adjacency[b]
    }
    for hole in (RIGHT_EYE, LEFT_EYE, LIPS_INNER):
        faces |= {tuple(sorted((hole[0], u, v))) for u, v in itertools.pairwise(hole[1:])}
    return np.array(sorted(faces), dtype=np.int32)


@dataclass(frozen=True)
class HeadPose:
    """Degrees. yaw > 0: the face turns to the image's right; pitch > 0: it looks up;
    roll > 0: the head tilts counter-clockwise in the image."""

    yaw: float
    pitch: float
    roll: float


# MediaPipe's axes (y down, z away from the camera) <-> y up, z toward the camera, the frame
# face_axes works in; its own inverse
FLIP_YZ = np.array([1.0, -1.0, -1.0])
FLIP_YZ.flags.writeable = False


def outline(landmarks: NDArray[np.floating[Any]], scale: float = 1.0) -> NDArray[np.float32]:
    """The face oval (x, y), `scale` times as far from its centre as the landmarks' own."""
    oval = np.asarray(landmarks, dtype=np.float32)[FACE_OVAL, :2]
    centre = oval.mean(axis=0)
    scaled: NDArray[np.float32] = centre + np.float32(scale) * (oval - centre)
    return scaled


def face_axes(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rows: the face's own x (across, to the image's right when frontal), y (up) and z (out
    of the face, toward the camera when frontal), from mesh points given with y up and z
    toward the camera."""
    across = points[LEFT_EYE_OUTER] - points[RIGHT_EYE_OUTER]
    up = points[FOREHEAD] - points[CHIN]
    x = across / max(float(np.linalg.norm(across)), 1e-9)
    y = up - np.dot(up, x) * x
    y /= max(float(np.linalg.norm(y)), 1e-9)
    axes: NDArray[np.float64] = np.stack([x, y, np.cross(x, y)])
    return axes


def face_frame(landmarks: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    """The mesh's points in the face's own frame, about their mean: x across (to the image's
    right when frontal), y up, z out of the face; the face turned to look at the camera."""
    p = np.asarray(landmarks, dtype=np.float64)[:, :3] * FLIP_YZ
    frame: NDArray[np.float64] = (p - p.mean(axis=0)) @ face_axes(p).T
    return frame


def head_pose(landmarks: NDArray[np.floating[Any]]) -> HeadPose:
    """Head orientation from the mesh's own 3D shape (eye line and chin-forehead line)."""
    p = np.asarray(landmarks, dtype=np.float64)[:, :3] * FLIP_YZ
    x, _, forward = face_axes(p)
    yaw = math.degrees(math.atan2(forward[0], forward[2]))
    pitch = math.degrees(math.asin(float(np.clip(forward[1], -1.0, 1.0))))
    roll = math.degrees(math.atan2(x[1], x[0]))
    return HeadPose(yaw, pitch, roll)


def five_points(landmarks: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    """The 5 keypoints insightface aligns on, in its order: eye, eye, nose, mouth, mouth
    (image-left first). The mesh points were chosen as those that fit the ArcFace template
    best on frontal faces (eye-corner midpoints, pronasale 4, lip commissures 78/308)."""
    lm = np.asarray(landmarks, dtype=np.float32)[:, :2]
    right_eye = (lm[RIGHT_EYE_OUTER] + lm[RIGHT_EYE_INNER]) / 2
    left_eye = (lm[LEFT_EYE_OUTER] + lm[LEFT_EYE_INNER]) / 2
    return np.stack(
        [right_eye, left_eye, lm[NOSE_TIP], lm[MOUTH_CORNER_RIGHT], lm[MOUTH_CORNER_LEFT]]
    )


def mouth_openness(landmarks: NDArray[np.floating[Any]]) -> float:
    """Inner-lip gap over mouth width: about 0 closed, > 0.15 clearly open."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    gap = np.linalg.norm(lm[UPPER_LIP_INNER] - lm[LOWER_LIP_INNER])
    width = np.linalg.norm(lm[MOUTH_RIGHT] - lm[MOUTH_LEFT])
    return float(gap / width) if width > 0 else 0.0
