"""Body, hands and face landmarks of one person per frame (MediaPipe Pose / Holistic).

BlazePose gives 33 body points in image pixels with a visibility, and the same 33 points
in metres in a hip-centred world frame. Holistic adds 21 points per hand and the 478-point
face mesh. The graphs track one person; smoothing is left to our own filters, which can
run offline (zero-phase) on files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vfxmocap.core.log import native_stderr_silenced
from vfxmocap.media.image import Frame

# BlazePose landmark names, in index order.
POSE_LANDMARKS = (
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
)
P = {name: i for i, name in enumerate(POSE_LANDMARKS)}
NUM_POSE = 33
NUM_HAND = 21
NUM_FACE = 478


@dataclass
class PoseFrame:
    """One frame. Arrays are NaN where nothing was found."""

    image: NDArray[np.float32]  # (33, 3): x, y pixels and visibility 0..1
    world: NDArray[np.float32]  # (33, 3): metres, hip-centred; x left->right of the image,
    # y up, z toward the camera (MediaPipe's y-down, z-away flipped to a right-handed Y-up)
    left_hand: NDArray[np.float32] | None = None  # (21, 3) pixels (x, y) and relative z
    right_hand: NDArray[np.float32] | None = None
    face: NDArray[np.float32] | None = None  # (478, 3) pixels
    person_mask: NDArray[np.float32] | None = None  # [0, 1], when one was computed (may be
    # smaller than the frame: a segmentation of the frame shrunk)

    @property
    def present(self) -> bool:
        return bool(np.isfinite(self.image[:, 0]).any())


def empty_frame() -> PoseFrame:
    nan = np.full((NUM_POSE, 3), np.nan, np.float32)
    return PoseFrame(image=nan, world=nan.copy())


def _points(landmarks: Any, w: int, h: int, n: int) -> NDArray[np.float32] | None:
    if landmarks is None:
        return None
    return np.array([(p.x * w, p.y * h, p.z * w) for p in landmarks.landmark], np.float32)[:n]


class PoseTracker:
    """One person's landmarks per frame. `holistic` adds hands and face (slower)."""

    def __init__(
        self, *, holistic: bool = False, static: bool = False, segmentation: bool = False
    ) -> None:
        import mediapipe as mp

        self.holistic = holistic
        with native_stderr_silenced():
            if holistic:
                self._model: Any = mp.solutions.holistic.Holistic(
                    static_image_mode=static,
                    model_complexity=1,
                    smooth_landmarks=False,
                    refine_face_landmarks=True,
                    enable_segmentation=segmentation,
                )
            else:
                self._model = mp.solutions.pose.Pose(
                    static_image_mode=static,
                    model_complexity=1,
                    smooth_landmarks=False,
                    enable_segmentation=segmentation,
                )
        self.last_segmentation: NDArray[np.float32] | None = None
        self._static = static
        self._tracking = False  # whether the graph holds a region from the last frame
        self._quiet_runs = 16  # the graph logs set-up notes from worker threads at first

    def close(self) -> None:
        self._model.close()

    def reset(self) -> None:
        """Forget the tracked region (at a shot cut): the next frame runs the detector."""
        self._model.reset()
        self._tracking = False

    def lose(self) -> None:
        """Drop the tracked region without restarting the graph (a restart costs several
        frames): after a frame with nobody in it, the next frame runs the detector. When the
        last frame already found nobody the graph holds no region, and nothing is run (the
        blank frame costs a detector run, as much as a tracked frame)."""
        if self._tracking:
            self._model.process(np.zeros((64, 64, 3), np.uint8))
            self._tracking = False

    def __call__(self, frame: Frame) -> PoseFrame:
        h, w = frame.shape[:2]
        if self._quiet_runs > 0:
            self._quiet_runs -= 1
            with native_stderr_silenced():
                result = self._model.process(frame)
        else:
            result = self._model.process(frame)
        self.last_segmentation = getattr(result, "segmentation_mask", None)
        # landmarks found: the graph tracks their region into the next frame (a static
        # graph detects on every frame)
        self._tracking = result.pose_landmarks is not None and not self._static
        if result.pose_landmarks is None:
            return empty_frame()
        image = np.array(
            [(p.x * w, p.y * h, p.visibility) for p in result.pose_landmarks.landmark], np.float32
        )
        world = np.array(
            [(p.x, -p.y, -p.z) for p in result.pose_world_landmarks.landmark], np.float32
        )
        out = PoseFrame(image=image, world=world)
        if self.holistic:
            out.left_hand = _points(result.left_hand_landmarks, w, h, NUM_HAND)
            out.right_hand = _points(result.right_hand_landmarks, w, h, NUM_HAND)
            out.face = _points(result.face_landmarks, w, h, NUM_FACE)
        return out
