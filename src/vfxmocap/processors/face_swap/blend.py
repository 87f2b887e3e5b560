"""Colour matching and blending of a warped face into the target frame."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from vfxmocap.media.image import Frame

BlendMode = Literal["multiband", "poisson", "feather"]
Mask = NDArray[np.uint8]


def match_color(patch: Frame, target: Frame, mask: Mask) -> Frame:
    """Reinhard transfer in LAB: give the warped face the target skin's mean and contrast,
    so lighting and white balance match. Statistics come from the masked pixels only."""
    ys, xs = np.nonzero(mask > 127)
    if len(xs) < 16:
        return patch
    step = max(1, len(xs) // 4000)  # statistics from a few thousand pixels are plenty
    ys, xs = ys[::step], xs[::step]
    d_mean, d_std = _lab_stats(target[ys, xs])
    src = cv2.cvtColor(patch, cv2.COLOR_RGB2LAB)
    s_mean, s_std = _lab_stats(src[ys, xs], lab=True)
    gain = np.clip(d_std / s_std, 0.5, 2.0)  # a bounded gain keeps noise from exploding
    # out = src * gain + offset, per channel, in one saturating OpenCV pass
    out = cv2.addWeighted(
        src.astype(np.float32) * gain, 1.0, np.zeros_like(src, np.float32), 0.0, 0.0
    ) + (d_mean - s_mean * gain)
    result: Frame = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return result


def _lab_stats(
    pixels: NDArray[np.uint8], lab: bool = False
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    values = pixels if lab else cv2.cvtColor(pixels[:, None, :], cv2.COLOR_RGB2LAB)[:, 0]
    values = values.astype(np.float32)
    return values.mean(axis=0), values.std(axis=0) + 1e-3


def feather(patch: Frame, target: Frame, alpha: NDArray[np.float32]) -> Frame:
    a = alpha[..., None]
    return (patch.astype(np.float32) * a + target.astype(np.float32) * (1.0 - a) + 0.5).astype(
        np.uint8
    )


def multiband(patch: Frame, target: Frame, alpha: NDArray[np.float32], levels: int = 4) -> Frame:
    """Burt-Adelson blending: low frequencies blend over a wide seam, fine detail over a
    narrow one, so there is neither a visible edge nor a ghosted double contour."""
    h, w = alpha.shape
    levels = max(1, min(levels, int(np.log2(max(1, min(h, w)) / 8))))
    gp_a, gp_b, gp_m = [patch.astype(np.float32)], [target.astype(np.float32)], [alpha]
    for _ in range(levels):
        gp_a.append(cv2.pyrDown(gp_a[-1]))
        gp_b.append(cv2.pyrDown(gp_b[-1]))
        gp_m.append(cv2.pyrDown(gp_m[-1]))
    blended = gp_a[-1] * gp_m[-1][..., None] + gp_b[-1] * (1 - gp_m[-1][..., None])
    for level in range(levels - 1, -1, -1):
        size = (gp_a[level].shape[1], gp_a[level].shape[0])
        lap_a = gp_a[level] - cv2.pyrUp(gp_a[level + 1], dstsize=size)
        lap_b = gp_b[level] - cv2.pyrUp(gp_b[level + 1], dstsize=size)
        m = gp_m[level][..., None]
        blended = cv2.pyrUp(blended, dstsize=size) + lap_a * m + lap_b * (1 - m)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def poisson(patch: Frame, target: Frame, mask: Mask) -> Frame:
    """Gradient-domain (Poisson) cloning: seamless, slower; for stills and offline renders."""
    ys, xs = np.nonzero(mask > 127)
    if len(xs) < 16:
        return target
    # seamlessClone rejects masks touching the border; keep a 1 px frame clear
    inner = mask.copy()
    inner[[0, -1], :] = 0
    inner[:, [0, -1]] = 0
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    center = (int((x0 + x1 + 1) // 2), int((y0 + y1 + 1) // 2))
    out: Frame = cv2.seamlessClone(patch, target, inner, center, cv2.NORMAL_CLONE)
    return out


def blend(patch: Frame, target: Frame, alpha: NDArray[np.float32], mode: BlendMode) -> Frame:
    if mode == "multiband":
        return multiband(patch, target, alpha)
    if mode == "poisson":
        cloned = poisson(patch, target, np.where(alpha > 0.5, 255, 0).astype(np.uint8))
        return feather(cloned, target, alpha)  # the feathered edge still fades it in
    return feather(patch, target, alpha)
