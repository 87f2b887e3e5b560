"""Face analysis: detection (full range, faces from ~40 px), 478 landmarks, head pose.

The built-in backend is MediaPipe: BlazeFace full-range finds faces, on the whole frame and
on overlapping tiles (so small faces in a group photo are found too); Face Mesh with
refined irises then places 478 landmarks on a crop around each face. Crops also verify
detections: a box where no mesh fits is dropped.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from vfxmocap.core.log import native_stderr_silenced
from vfxmocap.media.image import Frame
from vfxmocap.vision.landmarks import HeadPose, five_points, head_pose

Box = NDArray[np.float32]  # x0, y0, x1, y1 in pixels

# Landmarks are placed on a square crop of this many pixels around each face.
_CROP = 256
_CROP_MARGIN = 1.7  # crop side / face box side
_TILE_OVERLAP = 0.3
# A photo whose face reaches its edge (an aligned crop) is analysed again with this share of
# its side reflected around it, enlarged to at least _ROOM_SIDE pixels.
_ROOM = 0.5
_ROOM_SIDE = 448


@dataclass
class Face:
    """One face in one frame. Landmarks are (478, 3) pixels: x, y and a relative depth z
    (smaller is nearer the camera) on the same scale as x."""

    box: Box
    landmarks: NDArray[np.float32]
    score: float
    track_id: int = -1
    embedding: NDArray[np.float32] | None = field(default=None, repr=False)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))

    @property
    def center(self) -> NDArray[np.float32]:
        return np.array(
            [(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2], np.float32
        )

    @cached_property
    def pose(self) -> HeadPose:
        return head_pose(self.landmarks)

    @property
    def kps5(self) -> NDArray[np.float32]:
        return five_points(self.landmarks)


class FaceAnalyzer(Protocol):
    """What every face backend offers; trackers and swappers use only this."""

    def detect(self, frame: Frame, tiles: bool | None = None) -> list[tuple[Box, float]]: ...

    def landmarks(self, frame: Frame, box: Box) -> Face | None: ...

    def analyze(self, frame: Frame, tiles: bool | None = None) -> list[Face]: ...


def box_from_landmarks(landmarks: NDArray[np.floating[Any]]) -> Box:
    xy = np.asarray(landmarks)[:, :2]
    return np.array([*xy.min(axis=0), *xy.max(axis=0)], dtype=np.float32)


def iou(a: Box, b: Box) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, float(x1 - x0)) * max(0.0, float(y1 - y0))
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def nms(candidates: list[tuple[Box, float]], threshold: float = 0.3) -> list[tuple[Box, float]]:
    kept: list[tuple[Box, float]] = []
    for box, score in sorted(candidates, key=lambda c: -c[1]):
        if all(iou(box, k[0]) < threshold for k in kept):
            kept.append((box, score))
    return kept


class MediaPipeFaceAnalyzer:
    """The zero-download face backend. Its graphs keep tracking state and run one call at a
    time: calls from several threads are serialised by a lock (one analyser per stream keeps
    streams from waiting on each other)."""

    def __init__(
        self,
        *,
        min_score: float = 0.5,
        max_faces: int = 16,
        analysis_max_side: int = 1920,
        tiles: bool = True,
    ) -> None:
        import mediapipe as mp

        # MediaPipe's graphs log set-up notes from worker threads during their first runs.
        self._quiet_runs = 32
        self.min_score = min_score
        self.max_faces = max_faces
        self.analysis_max_side = analysis_max_side
        self.tiles = tiles
        with native_stderr_silenced():
            self._detector: Any = mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=min_score
            )
            self._mesh: Any = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=0.3,
            )
        self._lock = threading.Lock()

    def _silence(self) -> AbstractContextManager[None]:
        if self._quiet_runs <= 0:
            return nullcontext()
        self._quiet_runs -= 1
        return native_stderr_silenced()

    def close(self) -> None:
        self._detector.close()
        self._mesh.close()

    # --- detection --------------------------------------------------------------------

    def detect(self, frame: Frame, tiles: bool | None = None) -> list[tuple[Box, float]]:
        """Face boxes with scores, on the whole frame and (`tiles`, default from the
        constructor) on overlapping 2x2 tiles, which find faces under ~60 px."""
        scale = min(1.0, self.analysis_max_side / max(frame.shape[:2]))
        image = (
            frame
            if scale == 1.0
            else cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        )
        found = self._detect_in(image, 0, 0)
        h, w = image.shape[:2]
        if (self.tiles if tiles is None else tiles) and max(h, w) >= 480:
            th, tw = int(h / 2 * (1 + _TILE_OVERLAP)), int(w / 2 * (1 + _TILE_OVERLAP))
            for y0 in (0, h - th):
                for x0 in (0, w - tw):
                    tile = np.ascontiguousarray(image[y0 : y0 + th, x0 : x0 + tw])
                    found += self._detect_in(tile, x0, y0)
        return [(box / scale, s) for box, s in nms(found)][: self.max_faces]

    def _detect_in(self, image: Frame, x0: int, y0: int) -> list[tuple[Box, float]]:
        h, w = image.shape[:2]
        with self._lock, self._silence():
            result = self._detector.process(image)
        boxes = []
        for det in result.detections or []:
            rb = det.location_data.relative_bounding_box
            box = np.array(
                [
                    rb.xmin * w + x0,
                    rb.ymin * h + y0,
                    (rb.xmin + rb.width) * w + x0,
                    (rb.ymin + rb.height) * h + y0,
                ],
                np.float32,
            )
            boxes.append((box, float(det.score[0])))
        return boxes

    # --- landmarks --------------------------------------------------------------------

    def landmarks(self, frame: Frame, box: Box) -> Face | None:
        """478 landmarks of the face in `box` (from a detector or a previous frame)."""
        h, w = frame.shape[:2]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = max(float(box[2] - box[0]), float(box[3] - box[1])) * _CROP_MARGIN
        if side < 8:
            return None
        scale = _CROP / side
        # crop = scale * (p - origin): an affine warp handles crops that leave the frame.
        origin = np.array([cx - side / 2, cy - side / 2])
        matrix = np.array([[scale, 0, -scale * origin[0]], [0, scale, -scale * origin[1]]])
        crop = cv2.warpAffine(
            frame, matrix, (_CROP, _CROP), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        with self._lock, self._silence():
            result = self._mesh.process(crop)
        if not result.multi_face_landmarks:
            return None
        points = result.multi_face_landmarks[0].landmark
        lm = np.array([(p.x, p.y, p.z) for p in points], dtype=np.float32) * _CROP
        lm[:, :2] = lm[:, :2] / scale + origin
        lm[:, 2] /= scale
        del h, w
        return Face(box=box_from_landmarks(lm), landmarks=lm, score=1.0)

    def analyze(self, frame: Frame, tiles: bool | None = None) -> list[Face]:
        """Every face in a still frame, largest first."""
        faces = []
        for box, score in self.detect(frame, tiles):
            face = self.landmarks(frame, box)
            if face is not None:
                face.score = score
                faces.append(face)
        return _one_per_face(faces)

    def analyze_photo(self, image: Frame, tiles: bool | None = None) -> list[Face]:
        """Every face of a photo, largest first, a tight crop too. An aligned face crop (the
        face fills the image, as insightface's 112 px samples) leaves the detector and the
        mesh no room: the mesh sees black past the image's edge and fits the face's outline
        and depth worse. When a face reaches the edge, or none is found, the photo is
        analysed again with reflected room around it, enlarged, and the faces found inside
        the photo are mapped back (the mirrored copies in the room are not faces of it)."""
        faces = self.analyze(image, tiles)
        h, w = image.shape[:2]
        edge = 0.02 * max(h, w)

        def reaches_edge(box: Box) -> bool:
            return bool(box[0] < edge or box[1] < edge or box[2] > w - edge or box[3] > h - edge)

        if faces and not any(reaches_edge(f.box) for f in faces):
            return faces
        pad = int(_ROOM * max(h, w))
        room = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT)
        scale = max(1.0, _ROOM_SIDE / max(room.shape[:2]))
        if scale > 1.0:
            room = cv2.resize(room, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        found = []
        for face in self.analyze(room, tiles):
            landmarks = face.landmarks.copy()
            landmarks[:, :2] = landmarks[:, :2] / scale - pad
            landmarks[:, 2] /= scale
            box = box_from_landmarks(landmarks)
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            if 0 <= cx < w and 0 <= cy < h:
                found.append(Face(box=box, landmarks=landmarks, score=face.score))
        return _one_per_face(found) or faces


def _one_per_face(faces: list[Face]) -> list[Face]:
    """Largest first; two detections can land on one face: one mesh per face."""
    unique: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.area):
        if all(iou(face.box, u.box) < 0.5 for u in unique):
            unique.append(face)
    return unique
