"""Presence you can trust: a frame counts as "present" only when a person is really there.

MediaPipe Pose always fits a skeleton once its detector fired, and in tracking mode it keeps
fitting one to whatever stays in its region (a bollard, a car's pillar) with visibilities
near 1. The legacy graph leaves the landmarks' `presence` at 0, so the checks are ours:

- the detector's own scores: the torso's mean landmark visibility;
- agreement with an independent person segmentation (selfie segmentation, not the pose
  model's own mask, which agrees with its phantoms): the share of the torso's sampled points
  that fall on the person mask;
- body proportions: torso, shoulder and hip widths against the take's running median;
- temporal continuity: a run of accepted frames shorter than `min_run` is dropped.

Rejected frames become NaN (absent): the gap rules then hold or interpolate them, the control
video draws nothing, and the JSON says `present: false` with the reason.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vfxmocap.media.image import Frame
from vfxmocap.vision.pose import P

Array = NDArray[np.float32]
Mask = NDArray[np.float32]

CORE = [P["left_shoulder"], P["right_shoulder"], P["left_hip"], P["right_hip"]]
# Torso sides, diagonals and the neck: they cover the body's middle, which a segmentation
# marks most surely; limbs are thin and blur.
TORSO_SEGMENTS = (
    ("left_shoulder", "right_shoulder"),
    ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"),
    ("left_shoulder", "right_hip"),
    ("right_shoulder", "left_hip"),
    ("nose", "left_shoulder"),
    ("nose", "right_shoulder"),
)
LIMB_SEGMENTS = (
    ("left_hip", "left_knee"),
    ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"),
    ("right_knee", "right_ankle"),
    ("left_shoulder", "left_elbow"),
    ("right_shoulder", "right_elbow"),
)
# World-space measures compared against the take's running median (metres).
PROPORTIONS = (
    ("left_shoulder", "right_shoulder"),
    ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"),
)


@dataclass(frozen=True)
class PresenceOptions:
    min_visibility: float = 0.4  # torso mean: the road seen from above scores 0.05-0.3
    min_agreement: float = 0.5  # phantoms score 0-0.4 on bikes.mp4, the cyclists 0.8-1
    proportion_tolerance: float = 0.45  # relative deviation from the running median
    median_window: int = 50  # accepted frames the running median looks back over
    min_run: int = 3  # frames: a shorter blip of "person" is noise


def mask_agreement(image: Array, mask: NDArray[np.float32] | None, size: tuple[int, int]) -> float:
    """Share of the torso's sampled points (the legs' when no torso is seen) on the person
    mask; NaN when there is no pose, 0 when nothing visible falls inside the frame. `image`
    is in the pixels of a frame of `size` (width, height); the mask may be smaller (a
    segmentation of the frame shrunk), and is sampled at the same places."""
    if mask is None or not np.isfinite(image[:, 0]).any():
        return float("nan")
    scale = np.array([mask.shape[1] / size[0], mask.shape[0] / size[1]])
    for segments in (TORSO_SEGMENTS, LIMB_SEGMENTS):
        hits = _samples(image, mask, segments, scale)
        if len(hits) >= 6:
            return float(np.mean(hits))
    return 0.0


_STEPS = np.linspace(0.0, 1.0, 5)[:, None]


def _samples(
    image: Array,
    mask: NDArray[np.float32],
    segments: tuple[tuple[str, str], ...],
    scale: NDArray[np.float64],
) -> NDArray[np.bool_]:
    """Whether each of 5 points along each segment seen (both ends visible) inside the
    frame falls on the mask."""
    h, w = mask.shape[:2]
    ends = [(image[P[a]], image[P[b]]) for a, b in segments]
    seen = [(pa[:2], pb[:2]) for pa, pb in ends if min(pa[2], pb[2]) >= 0.5]
    if not seen:
        return np.zeros(0, bool)
    starts, stops = (np.stack(side) for side in zip(*seen, strict=True))
    points = (starts[:, None] * (1 - _STEPS) + stops[:, None] * _STEPS).reshape(-1, 2) * scale
    x, y = points[:, 0], points[:, 1]
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    hits: NDArray[np.bool_] = mask[y[inside].astype(int), x[inside].astype(int)] > 0.5
    return hits


def judge(
    image: Array, world: Array, agreement: Array, options: PresenceOptions | None = None
) -> list[str]:
    """One reason per frame of one shot: "" where a person is present, else why not."""
    opts = options or PresenceOptions()
    reasons = [frame_reason(image[i], agreement[i], opts) for i in range(len(image))]
    _check_proportions(world, reasons, opts)
    _drop_short_runs(reasons, opts.min_run)
    return reasons


def frame_reason(image: Array, agreement: float, opts: PresenceOptions) -> str:
    """The checks one frame can pass on its own: "" for a person, else why not."""
    return pose_reason(image, opts) or _mask_reason(agreement, opts)


def _mask_reason(agreement: float, opts: PresenceOptions) -> str:
    if not agreement >= opts.min_agreement:  # NaN (no mask) fails too
        return "off_person_mask"
    return ""


def pose_reason(image: Array, opts: PresenceOptions) -> str:
    """The checks on the pose detector's own scores alone (no mask needed)."""
    if not np.isfinite(image[:, 0]).any():
        return "not_detected"
    if float(np.nanmean(image[CORE, 2])) < opts.min_visibility:
        return "low_visibility"
    return ""


class LazyMask:
    """One frame's person mask, segmented the first time it is asked for: a frame whose
    skeleton already fails on the pose's own scores (nobody, the road seen from above) is
    never segmented. `segment` runs on `small`, the frame shrunk; `size` is the frame's
    (width, height), the pixels the skeletons are in."""

    def __init__(
        self, segment: Callable[[Frame], Mask], small: Frame, size: tuple[int, int]
    ) -> None:
        self._segment = segment
        self._small = small
        self.size = size
        self.mask: Mask | None = None
        # the last skeleton checked and its verdict: the follower checks the pose it picks,
        # then the take records that same pose's agreement
        self._checked: tuple[Array, PresenceOptions, tuple[str, float]] | None = None

    def get(self) -> Mask:
        if self.mask is None:
            self.mask = self._segment(self._small)
        return self.mask

    def check(self, image: Array, opts: PresenceOptions) -> tuple[str, float]:
        """`frame_reason` for a skeleton in this frame, with its agreement (NaN when the
        pose's own scores fail it and no mask was needed)."""
        if self._checked is not None and self._checked[0] is image and self._checked[1] is opts:
            return self._checked[2]
        reason = pose_reason(image, opts)
        if reason:
            verdict = reason, float("nan")
        else:
            agreement = mask_agreement(image, self.get(), self.size)
            verdict = _mask_reason(agreement, opts), agreement
        self._checked = (image, opts, verdict)
        return verdict


def _measures(world: Array) -> NDArray[np.float64]:
    lengths = [np.linalg.norm(world[:, P[a]] - world[:, P[b]], axis=1) for a, b in PROPORTIONS]
    result: NDArray[np.float64] = np.stack(lengths, axis=1).astype(np.float64)
    return result


def _check_proportions(world: Array, reasons: list[str], opts: PresenceOptions) -> None:
    """Against the running median of frames accepted so far in this shot (causal, so one
    long run of phantoms cannot become the reference before the person does)."""
    measures = _measures(world)
    history: deque[NDArray[np.float64]] = deque(maxlen=opts.median_window)
    for i, reason in enumerate(reasons):
        if reason:
            continue
        if len(history) >= 5:
            reference = np.median(np.stack(history), axis=0)
            deviation = np.abs(measures[i] - reference) / np.maximum(reference, 1e-6)
            if deviation.max() > opts.proportion_tolerance:
                reasons[i] = "implausible_proportions"
                continue
        history.append(measures[i])


def _drop_short_runs(reasons: list[str], min_run: int) -> None:
    i = 0
    while i < len(reasons):
        if reasons[i]:
            i += 1
            continue
        end = i
        while end < len(reasons) and not reasons[end]:
            end += 1
        if end - i < min(min_run, len(reasons)):  # a still or a shorter shot is all it has
            reasons[i:end] = ["too_brief"] * (end - i)
        i = end
