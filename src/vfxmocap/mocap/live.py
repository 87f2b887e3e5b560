"""Live pose: the stateful frame-in / frame-out processor for webcams and the API's stream.

Each frame is tracked, its landmarks smoothed by the online One Euro filter (files use the
zero-phase filter instead), and the skeleton drawn: over the frame (preview) or on black (an
OpenPose control frame). Only the filter state is kept between frames.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from vfxmocap.media.image import Frame
from vfxmocap.mocap import openpose
from vfxmocap.vision.filters import OneEuroFilter, OneEuroParams
from vfxmocap.vision.pose import PoseFrame, PoseTracker


class LivePose:
    def __init__(
        self, draw: Literal["preview", "control"] = "preview", params: OneEuroParams | None = None
    ) -> None:
        self.tracker = PoseTracker()
        self.filter = OneEuroFilter(params or OneEuroParams(min_cutoff=1.5, beta=0.5))
        self.draw = draw
        self.last: PoseFrame | None = None

    def close(self) -> None:
        self.tracker.close()

    def __call__(self, frame: Frame, t: float) -> Frame:
        pose = self.tracker(frame)
        self.last = pose
        if not pose.present:
            self.filter.reset()
            return frame if self.draw == "preview" else np.zeros_like(frame)
        height = max(1.0, float(frame.shape[0]))
        points = self.filter(pose.image[:, :2] / height, t) * height
        coco = openpose.to_coco18(points, pose.image[:, 2])
        canvas = frame.copy() if self.draw == "preview" else np.zeros_like(frame)
        return openpose.draw_body(canvas, coco)
