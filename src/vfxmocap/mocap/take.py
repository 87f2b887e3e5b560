"""A take: one person's landmarks over a clip, held as arrays (small: 33 points a frame),
captured by streaming frames through the pose tracker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.media.image import Frame, thumbnail_jpeg
from vfxmocap.media.pipeline import run_pipeline
from vfxmocap.media.sources import FrameSource
from vfxmocap.mocap import openpose
from vfxmocap.vision.pose import NUM_FACE, NUM_HAND, NUM_POSE, PoseFrame, PoseTracker

Array = NDArray[np.float32]


@dataclass
class Take:
    times: NDArray[np.float64]  # seconds from the first frame (container timestamps)
    image: Array  # (N, 33, 3) pixels x, y and visibility; NaN where not found
    world: Array  # (N, 33, 3) metres, hip-centred, Y up, person facing +Z
    size: tuple[int, int]  # width, height
    fps: float
    source: str
    left_hand: Array | None = None  # (N, 21, 3)
    right_hand: Array | None = None
    face: Array | None = None  # (N, 478, 3)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return len(self.times)

    @property
    def present(self) -> NDArray[np.bool_]:
        """Frames where the person was found."""
        result: NDArray[np.bool_] = np.isfinite(self.image[:, :, 0]).any(axis=1)
        return result


def capture(
    source: FrameSource,
    tracker: PoseTracker,
    *,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    on_frame: Callable[[Frame, PoseFrame], None] | None = None,
) -> Take:
    """Track every frame of `source`, decoding in a thread ahead of the tracker.
    `on_frame(frame, pose)` runs in the writer thread, for per-frame outputs (a matte)."""
    times: list[float] = []
    frames: list[PoseFrame] = []
    size = [0, 0]

    def track(item: tuple[float, Frame]) -> tuple[float, Frame, PoseFrame]:
        t, frame = item
        return t, frame, tracker(frame)

    def collect(item: tuple[float, Frame, PoseFrame]) -> None:
        t, frame, pose = item
        size[:] = [frame.shape[1], frame.shape[0]]
        if on_frame is not None:
            on_frame(frame, pose)
        if progress is not None and progress.wants_preview():
            progress.preview(thumbnail_jpeg(openpose.skeleton_over(frame, pose.image)))
        times.append(t)
        frames.append(_compact(pose, tracker.holistic))

    if progress is not None:
        progress.stage("track", source.frame_count)
    run_pipeline(source.timed(), track, collect, progress=progress, cancel=cancel)
    return _stack(times, frames, (size[0], size[1]), source, tracker.holistic)


def _compact(pose: PoseFrame, holistic: bool) -> PoseFrame:
    """Keep only arrays (no references to the frame) and fill absent parts with NaN."""
    if not holistic:
        return PoseFrame(pose.image, pose.world)
    nan_hand = np.full((NUM_HAND, 3), np.nan, np.float32)
    return PoseFrame(
        pose.image,
        pose.world,
        pose.left_hand if pose.left_hand is not None else nan_hand,
        pose.right_hand if pose.right_hand is not None else nan_hand,
        pose.face if pose.face is not None else np.full((NUM_FACE, 3), np.nan, np.float32),
    )


def _stack(
    times: list[float],
    frames: list[PoseFrame],
    size: tuple[int, int],
    source: FrameSource,
    holistic: bool,
) -> Take:
    n = len(frames)
    take = Take(
        times=np.array(times, np.float64),
        image=np.stack([f.image for f in frames]) if n else np.zeros((0, NUM_POSE, 3), np.float32),
        world=np.stack([f.world for f in frames]) if n else np.zeros((0, NUM_POSE, 3), np.float32),
        size=size,
        fps=source.fps,
        source=source.name,
    )
    if holistic and n:
        take.left_hand = np.stack([f.left_hand for f in frames])  # type: ignore[misc]
        take.right_hand = np.stack([f.right_hand for f in frames])  # type: ignore[misc]
        take.face = np.stack([f.face for f in frames])  # type: ignore[misc]
    return take
