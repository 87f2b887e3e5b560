"""Five-point face alignment to the templates neural face models were trained on."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from vfxmocap.media.image import Frame

Matrix = NDArray[np.float64]  # 2x3 affine

# insightface's ArcFace template for a 112 px crop (eyes, nose, mouth corners).
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float64,
)
# FFHQ alignment used by GFPGAN and CodeFormer, in units of the crop size.
FFHQ = np.array(
    [
        [0.37691676, 0.46864664],
        [0.62285697, 0.46912813],
        [0.50123859, 0.61331904],
        [0.39308822, 0.72541100],
        [0.61150205, 0.72490465],
    ],
    np.float64,
)


def arcface_template(size: int) -> NDArray[np.float64]:
    """insightface's `estimate_norm`: multiples of 112 scale the template; other sizes (128
    for inswapper) scale by size/128 and shift right by 8 px (scaled)."""
    if size % 112 == 0:
        scaled: NDArray[np.float64] = ARCFACE_112 * (size / 112.0)
        return scaled
    ratio = size / 128.0
    shifted: NDArray[np.float64] = ARCFACE_112 * ratio + np.array([8.0 * ratio, 0.0])
    return shifted


def similarity_transform(src: NDArray[np.floating[Any]], dst: NDArray[np.floating[Any]]) -> Matrix:
    """Least-squares rotation + uniform scale + translation taking src to dst (Umeyama 1991),
    as skimage's SimilarityTransform.estimate, which the reference implementations use.
    Points of any dimension n give an n x (n + 1) matrix (2x3 for image points)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    n = src.shape[1]
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.eye(n)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1, -1] = -1
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(sigma) @ sign) / s.var(axis=0).sum()
    matrix = np.zeros((n, n + 1))
    matrix[:, :n] = scale * rotation
    matrix[:, n] = mu_d - scale * rotation @ mu_s
    return matrix


def align(
    frame: Frame, kps: NDArray[np.floating[Any]], template: NDArray[np.floating[Any]], size: int
) -> tuple[Frame, Matrix]:
    """The face crop a model expects, and the matrix from frame to crop pixels."""
    matrix = similarity_transform(kps, template)
    crop: Frame = cv2.warpAffine(
        frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return crop, matrix


def warp_back(
    crop: Frame, matrix: Matrix, roi: tuple[int, int, int, int]
) -> tuple[Frame, NDArray[np.uint8]]:
    """Put a model's output crop back into the frame's ROI; returns the ROI-sized patch and
    the mask of pixels the crop covers (its edge pulled in by 2% against resampling seams)."""
    x0, y0, x1, y1 = roi
    to_roi = matrix.copy()
    to_roi[:, 2] += matrix[:, :2] @ np.array([x0, y0], np.float64)  # ROI pixel -> crop pixel
    size = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    patch: Frame = cv2.warpAffine(crop, to_roi, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    h, w = crop.shape[:2]
    inset = max(1, round(0.02 * w))
    box = np.zeros((h, w), np.uint8)
    box[inset : h - inset, inset : w - inset] = 255
    cover: NDArray[np.uint8] = cv2.warpAffine(box, to_roi, size, flags=flags)
    return patch, cover
