"""Temporal filters for landmark tracks.

`OneEuroFilter` (Casiez et al., CHI 2012) is the online filter: strong smoothing when a
point is still (no shimmer), little lag when it moves fast (the cutoff rises with speed).
It works on arrays of any shape, so a whole 478-point face is filtered in one call.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

Array = NDArray[np.float64]


class OneEuroParams(BaseModel):
    """Cutoffs in Hz. Positions are expected in face-size units (see FaceTracker), so the
    same defaults suit a face 80 px or 800 px wide."""

    min_cutoff: float = Field(
        1.0, gt=0, description="Smoothing of a still point (lower: smoother)."
    )
    beta: float = Field(3.0, ge=0, description="Speed coefficient (higher: less lag when moving).")
    d_cutoff: float = Field(1.0, gt=0, description="Cutoff of the speed estimate.")


def _alpha(cutoff: Array | float, dt: float) -> Array | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    def __init__(self, params: OneEuroParams | None = None) -> None:
        self.params = params or OneEuroParams()
        self._x: Array | None = None
        self._dx: Array | None = None
        self._t: float | None = None

    def reset(self) -> None:
        self._x = self._dx = None
        self._t = None

    def __call__(self, x: NDArray[np.floating[Any]], t: float) -> Array:
        """Filter sample `x` taken at time `t` (seconds, increasing)."""
        value = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or self._x.shape != value.shape or t <= self._t:
            self._x, self._dx, self._t = value.copy(), np.zeros_like(value), t
            return value.copy()
        dt = t - self._t
        p = self.params
        dx = (value - self._x) / dt
        assert self._dx is not None
        dx_hat = self._dx + _alpha(p.d_cutoff, dt) * (dx - self._dx)
        cutoff = p.min_cutoff + p.beta * np.abs(dx_hat)
        x_hat = self._x + _alpha(cutoff, dt) * (value - self._x)
        self._x, self._dx, self._t = x_hat, dx_hat, t
        return x_hat.copy()
