"""Cleaning a take: untrusted points out, short gaps filled, then smoothing.

- Points below `min_visibility` are not trusted: they become gaps.
- Gaps up to `max_gap` frames are filled by linear interpolation in time.
- Longer gaps (a limb out of frame) hold the last good value and are flagged.
- Smoothing: zero-phase Butterworth (order 4, default 6 Hz) for files — no lag, because it
  runs forwards and backwards — or the online One Euro filter for live use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from vfxmocap.mocap.take import Take
from vfxmocap.vision.filters import OneEuroFilter, OneEuroParams

Array = NDArray[np.float64]


class FilterOptions(BaseModel):
    method: Literal["butterworth", "oneeuro", "none"] = "butterworth"
    cutoff_hz: float = Field(6.0, gt=0, description="Butterworth cutoff.")
    order: int = Field(4, ge=1, le=8)
    max_gap: int = Field(10, ge=0, description="Longest gap (frames) filled by interpolation.")
    min_visibility: float = Field(0.5, ge=0, le=1)
    one_euro: OneEuroParams = Field(default_factory=lambda: OneEuroParams(min_cutoff=1.5, beta=0.5))


@dataclass
class Motion:
    """A cleaned take: no NaN; `held` marks values that were not measured (filled or held)."""

    times: Array
    image: Array  # (N, 33, 2) pixels
    world: Array  # (N, 33, 3) metres
    visibility: Array  # (N, 33)
    held: NDArray[np.bool_]  # (N, 33): True where the value was not measured
    present: NDArray[np.bool_]  # (N,): the person was found in this frame
    frame_index: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    confidence: Array = field(default_factory=lambda: np.zeros(0))  # (N,) 0..1, 0 if absent
    reasons: list[str] = field(default_factory=list)  # "" where present, else why absent

    def __post_init__(self) -> None:
        n = len(self.times)
        if len(self.frame_index) != n:
            self.frame_index = np.arange(n, dtype=np.int64)
        if len(self.confidence) != n:
            self.confidence = np.where(self.present, 1.0, 0.0)
        if len(self.reasons) != n:
            self.reasons = ["" if p else "not_detected" for p in self.present]

    @property
    def joint_confidence(self) -> Array:
        """(N, 33): the landmark's visibility where measured, 0 where filled or held."""
        result: Array = np.where(self.held, 0.0, self.visibility)
        return result


def concat(motions: list[Motion]) -> Motion:
    """Takes one after another (each cleaned on its own: no filter runs across a cut)."""
    arrays = {
        name: np.concatenate([getattr(m, name) for m in motions])
        for name in ("times", "image", "world", "visibility", "held", "present", "frame_index")
    }
    return Motion(
        **arrays,
        confidence=np.concatenate([m.confidence for m in motions]),
        reasons=[r for m in motions for r in m.reasons],
    )


def fill_gaps(
    values: Array, valid: NDArray[np.bool_], times: Array, max_gap: int
) -> tuple[Array, NDArray[np.bool_]]:
    """Interpolate gaps of up to `max_gap` frames per point; hold beyond. Returns the filled
    values and a mask of what was filled or held. `values` is (N, J, C), `valid` (N, J)."""
    out = values.copy()
    held = ~valid
    joints = valid.shape[1]
    for j in range(joints):
        good = np.flatnonzero(valid[:, j])
        if len(good) == 0:
            # Never trusted (a limb out of frame all along): keep the tracker's own guess where
            # it made one, flagged, rather than inventing a pose.
            guessed = np.flatnonzero(np.isfinite(values[:, j, 0]))
            if len(guessed) == 0:
                out[:, j] = 0.0
                continue
            good = guessed
        # interpolation everywhere between good samples, then undo it in gaps that are long
        for c in range(values.shape[2]):
            out[:, j, c] = np.interp(times, times[good], values[good, j, c])
        if len(good) > 1:
            gaps = np.diff(good) - 1
            for start, length in zip(good[:-1], gaps, strict=True):
                if length > max_gap:
                    out[start + 1 : start + 1 + length, j] = values[start, j]  # hold last good
    return out, held


def butterworth(values: Array, fps: float, cutoff: float, order: int) -> Array:
    """Zero-phase low-pass along time (axis 0)."""
    from scipy.signal import butter, filtfilt

    nyquist = fps / 2.0
    if cutoff >= nyquist or len(values) < 3 * (order + 1) + 1:
        return values
    b, a = butter(order, cutoff / nyquist)
    pad = min(3 * max(len(a), len(b)), len(values) - 1)
    filtered: Array = filtfilt(b, a, values, axis=0, padlen=pad)
    return filtered


def one_euro(values: Array, times: Array, params: OneEuroParams, scale: float) -> Array:
    flt = OneEuroFilter(params)
    return np.stack([flt(v / scale, float(t)) * scale for v, t in zip(values, times, strict=True)])


def clean(take: Take, options: FilterOptions | None = None) -> Motion:
    opts = options or FilterOptions()
    times = take.times.astype(np.float64)
    vis = np.nan_to_num(take.image[:, :, 2].astype(np.float64), nan=0.0)
    valid = np.isfinite(take.image[:, :, 0]) & (vis >= opts.min_visibility)
    image, held = fill_gaps(take.image[:, :, :2].astype(np.float64), valid, times, opts.max_gap)
    world, _ = fill_gaps(take.world.astype(np.float64), valid, times, opts.max_gap)
    fps = 1.0 / float(np.median(np.diff(times))) if len(times) > 1 else take.fps
    if opts.method == "butterworth":
        image = butterworth(image, fps, opts.cutoff_hz, opts.order)
        world = butterworth(world, fps, opts.cutoff_hz, opts.order)
    elif opts.method == "oneeuro":
        height = max(1.0, float(np.nanmedian(np.ptp(image[:, :, 1], axis=1))))
        image = one_euro(image, times, opts.one_euro, height)
        world = one_euro(world, times, opts.one_euro, 1.7)
    present = take.present
    return Motion(
        times,
        image,
        world,
        vis,
        held,
        present,
        frame_index=take.frame_index if take.frame_index is not None else np.arange(len(times)),
        confidence=_frame_confidence(take, vis, valid),
        reasons=take.absent_reasons(),
    )


def _frame_confidence(take: Take, vis: Array, valid: NDArray[np.bool_]) -> Array:
    """Mean visibility of the trusted landmarks times the skeleton's agreement with the
    person mask (1 where no mask was computed); 0 where absent."""
    trusted = np.where(valid, vis, np.nan)
    with np.errstate(invalid="ignore"):
        mean = np.nan_to_num(np.nanmean(np.where(valid.any(axis=1)[:, None], trusted, 0.0), 1))
    agreement = take.agreement if take.agreement is not None else np.ones(take.frames)
    agree = np.nan_to_num(np.clip(agreement.astype(np.float64), 0.0, 1.0), nan=1.0)
    result: Array = np.where(take.present, mean * agree, 0.0)
    return result
