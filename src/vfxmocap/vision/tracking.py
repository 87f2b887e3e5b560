"""Face tracking across frames with stable IDs and One Euro landmark smoothing.

Detection runs on key frames (every `detect_every` frames, and whenever no face is
tracked); in between, each track's landmarks are re-fitted in a box predicted from the
previous frame, which is faster and steadier. Faces are associated to tracks by box overlap
and landmark distance; a lost track keeps its ID for `max_missed` frames, so a face that
turns away or is covered for a moment comes back as the same person.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field

from vfxmocap.media.image import Frame
from vfxmocap.vision.faces import Face, FaceAnalyzer, iou
from vfxmocap.vision.filters import OneEuroFilter, OneEuroParams
from vfxmocap.vision.landmarks import LEFT_EYE_OUTER, RIGHT_EYE_OUTER


class TrackerOptions(BaseModel):
    detect_every: int = Field(10, ge=1, description="Run the detector every N frames.")
    max_missed: int = Field(15, ge=0, description="Frames a lost face keeps its ID.")
    min_iou: float = Field(0.2, ge=0, le=1, description="Least box overlap to continue a track.")
    smooth: bool = True
    filter: OneEuroParams = Field(default_factory=OneEuroParams)


@dataclass
class _Track:
    id: int
    face: Face
    filter: OneEuroFilter
    scale: float = 0.0  # face size fixed at the track's start: units of the filter
    missed: int = 0


def _face_scale(face: Face) -> float:
    """Outer-eye distance: a size that does not change when the mouth opens."""
    lm = face.landmarks
    return max(1.0, float(np.linalg.norm(lm[LEFT_EYE_OUTER, :2] - lm[RIGHT_EYE_OUTER, :2])))


def _match_cost(track: _Track, face: Face) -> float:
    """Lower is a better match; inf when the face cannot be this track."""
    overlap = iou(track.face.box, face.box)
    shift = float(np.linalg.norm(track.face.center - face.center)) / max(track.face.width, 1.0)
    if overlap < 0.05 and shift > 1.0:
        return float("inf")
    return (1.0 - overlap) + 0.5 * shift


class FaceTracker:
    """Stateful: feed frames in order with `update(frame, t)`; one tracker per video/stream."""

    def __init__(self, analyzer: FaceAnalyzer, options: TrackerOptions | None = None) -> None:
        self.analyzer = analyzer
        self.options = options or TrackerOptions()
        self._tracks: list[_Track] = []
        self._ids = itertools.count()
        self._frame = 0

    @property
    def ids(self) -> set[int]:
        """Track IDs still held, seen or briefly lost: a face with one is no new face."""
        return {track.id for track in self._tracks}

    def reset(self) -> None:
        self._tracks.clear()
        self._frame = 0

    def update(self, frame: Frame, t: float | None = None) -> list[Face]:
        """Faces in this frame, each with a stable `track_id`, largest first."""
        t = self._frame / 30.0 if t is None else t
        opts = self.options
        active = [tr for tr in self._tracks if tr.missed == 0]
        keyframe = self._frame % opts.detect_every == 0 or not active
        self._frame += 1

        faces: list[Face] = []
        for track in active:  # re-fit each visible face where it was
            face = self.analyzer.landmarks(frame, track.face.box)
            if face is not None:
                faces.append(face)
        if keyframe:
            for box, score in self.analyzer.detect(frame):
                if all(iou(box, f.box) < 0.3 for f in faces):
                    face = self.analyzer.landmarks(frame, box)
                    if face is not None and all(iou(face.box, f.box) < 0.5 for f in faces):
                        face.score = score
                        faces.append(face)

        self._associate(faces, t)
        return sorted((f for f in faces if f.track_id >= 0), key=lambda f: -f.area)

    def _associate(self, faces: list[Face], t: float) -> None:
        pairs = sorted(
            (
                (_match_cost(tr, f), ti, fi)
                for ti, tr in enumerate(self._tracks)
                for fi, f in enumerate(faces)
            ),
            key=lambda p: p[0],
        )
        used_tracks: set[int] = set()
        used_faces: set[int] = set()
        for cost, ti, fi in pairs:
            if cost == float("inf") or ti in used_tracks or fi in used_faces:
                continue
            if (
                iou(self._tracks[ti].face.box, faces[fi].box) < self.options.min_iou
                and self._tracks[ti].missed == 0
            ):
                continue
            used_tracks.add(ti)
            used_faces.add(fi)
            self._continue(self._tracks[ti], faces[fi], t)
        for ti, track in enumerate(self._tracks):
            if ti not in used_tracks:
                track.missed += 1
                track.filter.reset()
        self._tracks = [tr for tr in self._tracks if tr.missed <= self.options.max_missed]
        for fi, face in enumerate(faces):
            if fi not in used_faces:
                track = _Track(next(self._ids), face, OneEuroFilter(self.options.filter))
                self._continue(track, face, t)
                self._tracks.append(track)

    def _continue(self, track: _Track, face: Face, t: float) -> None:
        face.track_id = track.id
        if self.options.smooth:
            # Filter in face-size units so one set of cutoffs fits small and large faces. The
            # unit stays fixed per track: a per-frame scale would itself add jitter.
            if track.scale == 0.0 or track.missed:
                track.scale = _face_scale(face)
            smoothed = track.filter(face.landmarks / track.scale, t) * track.scale
            face.landmarks = smoothed.astype(np.float32)
        track.face, track.missed = face, 0
