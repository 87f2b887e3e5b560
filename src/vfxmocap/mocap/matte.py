"""Person mattes: a mask video, transparent PNGs, or the background replaced (green screen,
blur, an image)."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from vfxmocap.media.image import Frame

MatteMode = Literal["mask", "alpha", "green", "blur", "image"]


def soft_mask(segmentation: NDArray[np.float32]) -> NDArray[np.float32]:
    """Segmentation probability to alpha: a narrow ramp around 0.5 keeps edges soft."""
    alpha: NDArray[np.float32] = np.clip((segmentation - 0.3) / 0.4, 0.0, 1.0).astype(np.float32)
    return alpha


def fitted(mask: NDArray[np.float32], frame: Frame) -> NDArray[np.float32]:
    """A person mask computed on a shrunk frame, at the frame's size (bilinear, as the
    segmentation graph itself upsamples its model's output)."""
    h, w = frame.shape[:2]
    if mask.shape[:2] == (h, w):
        return mask
    out: NDArray[np.float32] = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def composite(
    frame: Frame, alpha: NDArray[np.float32], mode: MatteMode, background: Frame | None = None
) -> Frame:
    """The matte output for one frame (RGBA for `alpha`, RGB otherwise)."""
    a = alpha[..., None]
    if mode == "mask":
        gray = (alpha * 255 + 0.5).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode == "alpha":
        return np.dstack([frame, (alpha * 255 + 0.5).astype(np.uint8)])
    if mode == "green":
        back = np.zeros_like(frame)
        back[..., 1] = 255
    elif mode == "blur":
        sigma = max(frame.shape[:2]) / 60
        back = cv2.GaussianBlur(frame, (0, 0), sigma)
    else:
        if background is None:
            raise ValueError("an image background is needed")
        back = background
    out = frame.astype(np.float32) * a + back.astype(np.float32) * (1.0 - a)
    return (out + 0.5).astype(np.uint8)


def cover(image: Frame, size: tuple[int, int]) -> Frame:
    """Resize and centre-crop `image` to fill `size` (width, height)."""
    w, h = size
    scale = max(w / image.shape[1], h / image.shape[0])
    resized = cv2.resize(
        image,
        (max(w, round(image.shape[1] * scale)), max(h, round(image.shape[0] * scale))),
        interpolation=cv2.INTER_AREA,
    )
    y0, x0 = (resized.shape[0] - h) // 2, (resized.shape[1] - w) // 2
    return np.ascontiguousarray(resized[y0 : y0 + h, x0 : x0 + w])
