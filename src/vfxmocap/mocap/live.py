"""Live pose: the stateful frame-in / frame-out processor for webcams and the API's stream.

Each frame is tracked, its landmarks smoothed by the online One Euro filter (files use the
zero-phase filter instead), and the skeleton drawn: over the frame (preview) or on black (an
OpenPose control frame). Only the filter state is kept between frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from vfxmocap.media.image import Frame
from vfxmocap.mocap import openpose
from vfxmocap.vision.filters import OneEuroFilter, OneEuroParams
from vfxmocap.vision.pose import PoseFrame, PoseTracker


class PoseOptions(BaseModel):
    draw: Literal["preview", "control"] = Field(
        "preview", description="The skeleton over the frame, or on black (OpenPose control)."
    )
    # Positions are filtered in frame heights here, not face sizes: hence other defaults.
    filter: OneEuroParams = Field(default_factory=lambda: OneEuroParams(min_cutoff=1.5, beta=0.5))


@dataclass
class PoseState:
    options: PoseOptions
    tracker: PoseTracker
    filter: OneEuroFilter
    last: PoseFrame | None = None


class LivePose:
    name = "pose"
    options_model = PoseOptions

    def models(self, options: PoseOptions) -> tuple[str, ...]:
        return ("mediapipe-pose",)

    def prepare(self, options: PoseOptions) -> PoseState:
        return PoseState(options, PoseTracker(), OneEuroFilter(options.filter))

    def process(self, frame: Frame, state: PoseState, t: float) -> Frame:
        """The tracked, smoothed skeleton of one frame, drawn as the options ask."""
        pose = state.tracker(frame)
        state.last = pose
        preview = state.options.draw == "preview"
        if not pose.present:
            state.filter.reset()
            return frame if preview else np.zeros_like(frame)
        height = max(1.0, float(frame.shape[0]))
        points = state.filter(pose.image[:, :2] / height, t) * height
        coco = openpose.to_coco18(points, pose.image[:, 2])
        return openpose.draw_body(frame.copy() if preview else np.zeros_like(frame), coco)

    def close(self, state: PoseState) -> None:
        state.tracker.close()
