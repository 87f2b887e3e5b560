"""Person segmentation and hand landmarks: what may stand in front of a face.

Used for occlusion: a face swap must not paint over a hand raised to the face (hand
landmarks) or an object held in front of it (not part of the person's segment).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from vfxmocap.media.image import Frame


class PersonSegmenter:
    """MediaPipe selfie segmentation (landscape model): a soft person mask in [0, 1]."""

    def __init__(self) -> None:
        import mediapipe as mp

        self._model: Any = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=1)

    def __call__(self, frame: Frame) -> NDArray[np.float32]:
        mask: NDArray[np.float32] = self._model.process(frame).segmentation_mask
        return mask

    def close(self) -> None:
        self._model.close()


class HandTracker:
    """MediaPipe Hands: up to `max_hands` hands, 21 landmarks each, in pixels."""

    def __init__(self, max_hands: int = 2, static: bool = False) -> None:
        import mediapipe as mp

        self._model: Any = mp.solutions.hands.Hands(
            static_image_mode=static,
            max_num_hands=max_hands,
            model_complexity=1,
            min_detection_confidence=0.5,
            min_tracking_confidence=0.5,
        )

    def __call__(self, frame: Frame) -> list[NDArray[np.float32]]:
        h, w = frame.shape[:2]
        result = self._model.process(frame)
        hands = []
        for hand in result.multi_hand_landmarks or []:
            pts = np.array([(p.x * w, p.y * h) for p in hand.landmark], np.float32)
            hands.append(pts)
        return hands

    def close(self) -> None:
        self._model.close()


def hand_mask(
    shape: tuple[int, int], hands: list[NDArray[np.float32]], grow: float = 0.15
) -> NDArray[np.uint8]:
    """Filled convex hulls of the hands, grown by `grow` of each hand's size (fingers are
    wider than their landmark skeleton)."""
    mask = np.zeros(shape, np.uint8)
    for pts in hands:
        hull = cv2.convexHull(pts.astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 255)
        size = float(np.ptp(pts, axis=0).max())
        radius = max(1, int(size * grow))
        x0, y0 = np.maximum(pts.min(axis=0).astype(int) - 2 * radius, 0)
        x1, y1 = pts.max(axis=0).astype(int) + 2 * radius
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask[y0:y1, x0:x1] = cv2.dilate(mask[y0:y1, x0:x1], kernel)
    return mask


def skin_outliers(
    image: Frame, skin: NDArray[np.uint8], *, threshold: float = 3.5
) -> NDArray[np.float32]:
    """Pixels of `image` whose colour is far from the skin inside the `skin` mask: 1 = occluder.

    A robust chroma model (median and MAD of Cr, Cb over the skin mask) is used, so shading
    and shadows, which change brightness more than chroma, stay skin, while a cup, a phone or
    a microphone held in front of the face does not. Hands are skin-coloured: their landmarks
    cover them (`hand_mask`).
    """
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    inside = ycc[skin > 127][:, 1:]
    if len(inside) < 32:
        return np.zeros(image.shape[:2], np.float32)
    median = np.median(inside, axis=0)
    mad = np.median(np.abs(inside - median), axis=0) * 1.4826 + 2.0  # + sensor-noise floor
    distance = np.sqrt((((ycc[..., 1:] - median) / mad) ** 2).sum(axis=2))
    outlier = (distance > threshold).astype(np.uint8) * 255
    size = max(3, int(0.02 * max(image.shape[:2])) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    outlier = cv2.morphologyEx(outlier, cv2.MORPH_OPEN, kernel)  # freckles, highlights, noise
    outlier = cv2.dilate(outlier, kernel)
    result: NDArray[np.float32] = outlier.astype(np.float32) / 255.0
    return result
