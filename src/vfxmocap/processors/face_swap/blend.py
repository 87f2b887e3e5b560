"""Colour matching and blending of a warped face into the target frame."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from vfxmocap.media.image import Frame

BlendMode = Literal["multiband", "poisson", "feather"]
Mask = NDArray[np.uint8]


def match_color(patch: Frame, target: Frame, mask: Mask, target_chroma: bool = False) -> Frame:
    """Give the warped face the target skin's colour and lighting level, keeping the source's
    own shading and detail: means match fully (white balance, tone), the contrast of the
    low frequencies only within bounds, and the high frequencies stay the source's. Reinhard
    on all pixels would squash the source's texture to a softer target's contrast.

    `target_chroma` (a black-and-white source, which has no colour of its own to keep):
    the colour, not only its mean, is the target's own, smooth as its shading is, so lips
    and cheeks keep their tints instead of the whole face taking one flat skin tone.

    The correction is smooth, so it is worked out in Lab on images 8x smaller and added to
    the patch as an RGB offset: no full-size colour conversion, whatever the face's size.
    Where that offset would push highlights past white or shadows past black, they roll off
    toward it instead (`_roll_off`)."""
    low_rgb = _low_pass(patch)
    low_src, low_dst = _lab(low_rgb), _lab(_low_pass(target))
    small = _shrink(mask, _LOW)
    inside = small > 127
    if inside.sum() < 4:
        return patch
    s_mean, s_std = _stats(low_src[inside])
    d_mean, d_std = _stats(low_dst[inside])
    gain = np.clip(d_std / s_std, 0.8, 1.25)  # lighting contrast, never the source's shading
    corrected = low_src + (d_mean - s_mean) + (gain - 1.0) * (low_src - s_mean)
    if target_chroma:
        corrected[..., 1:] = low_dst[..., 1:]
    rgb = cv2.cvtColor(corrected.astype(np.float32), cv2.COLOR_LAB2RGB)
    offset = np.float32(255.0) * np.clip(rgb, 0.0, 1.0) - low_rgb
    full = cv2.resize(offset, (patch.shape[1], patch.shape[0]), interpolation=cv2.INTER_LINEAR)
    # how far the face's darkest shadows and brightest highlights (bar a few pixels) would
    # go past black and white
    every = (slice(None, None, _ENDS_STEP), slice(None, None, _ENDS_STEP))
    ends = (patch[every] + full[every])[mask[every] > 127]
    bottom, top = np.percentile(ends, _ENDS_PERCENTILES) if ends.size else (0.0, 0.0)
    if bottom >= 0.0 and top <= 255.0:
        result: Frame = cv2.add(patch, full, dtype=cv2.CV_8U)  # rounds and saturates
        return result
    summed = cv2.add(patch, full, dtype=cv2.CV_16S)  # rounds; -255 to 510
    summed += _ROLL_AT
    rolled: Frame = _roll_off(*_knees(float(bottom), float(top)))[summed]
    return rolled


# A dark photo brightened onto a bright face (Tom Hanks' grey one onto t1's) would clip
# its lit cheek and forehead to flat white (3.4% of those faces' pixels at 255, against 0.1%
# in t1 itself), and a bright one darkened onto a dark face would crush its shadows to
# black (the astronaut onto t1 at 35% exposure: 1.4% at 0, against 0.1%). Where the
# darkest or brightest 0.5% of the face (inside its mask) would pass black or white, the
# patch's shadows or highlights roll off toward it instead, from a knee as far inside the
# range as they would go past it: a patch that stays inside the range is left as it is,
# and the roll-off grows smoothly with the overshoot (no flicker as a video's faces
# brighten).
_ENDS_STEP = 8  # the overshoot is judged on every 8th row and column
_ENDS_PERCENTILES = (0.5, 99.5)
_DEEPEST_KNEE = 85.0  # a knee is never further than a third of the range from its end
_ROLL_AT = 256  # a lookup's index of value 0: it covers -256 to 767


def _knees(bottom: float, top: float) -> tuple[float, float]:
    """Where the roll-off starts at each end: as far inside the range as the darkest and
    brightest values would go past it (at most a third of the range)."""
    low = min(_DEEPEST_KNEE, max(0.0, -bottom))
    high = 255.0 - min(_DEEPEST_KNEE, max(0.0, top - 255.0))
    return low, high


def _roll_off(low: float, high: float) -> NDArray[np.uint8]:
    """A lookup from a patch's value plus its colour correction to 0-255: the same between
    the knees `low` and `high`, past them rolling off as 1 - exp toward black and white
    with slope 1 at the knee. Values as far past the range as a knee is inside it land
    inside it by an eighth of that."""
    value = np.arange(-_ROLL_AT, 3 * _ROLL_AT, dtype=np.float64)
    curve = value.copy()
    if low > 0:
        dark = value < low
        curve[dark] = low * np.exp((value[dark] - low) / low)
    span = 255.0 - high
    if span > 0:
        bright = value > high
        curve[bright] = high + span * (1.0 - np.exp(-(value[bright] - high) / span))
    table: NDArray[np.uint8] = np.clip(np.round(curve), 0, 255).astype(np.uint8)
    return table


def _lab(rgb: NDArray[np.float32]) -> NDArray[np.float32]:
    """Lab (L 0-100) of a float RGB image in 0-255."""
    lab: NDArray[np.float32] = cv2.cvtColor(rgb * np.float32(1 / 255), cv2.COLOR_RGB2LAB)
    return lab


_MAX_SHARPEN = 1.5  # the most unsharp-mask gain a soft face gets
_MAX_SOFTEN = 8.0  # the widest blur (Gaussian sigma, frame px) a sharp face gets
_DETAIL_SIDE = 192  # detail is compared on images at most this big (the search is cheap)


def match_sharpness(patch: Frame, target: Frame, mask: Mask) -> Frame:
    """Give the warped face the fine detail of the frame it goes into: a source sharper
    than a soft, upscaled or defocused frame is blurred, a softer one sharpened (unsharp
    mask, gain at most 1.5), until the high-frequency energy (RMS of the Laplacian of the
    grey image) inside `mask` matches the target's there. A face sharper than the frame
    around it reads as pasted on. Energies are compared at most `_DETAIL_SIDE` pixels
    across, so a close-up costs what a small face does."""
    box = work_box((mask > 127).astype(np.float32), 0)
    if box is None:
        return patch
    h, w = mask[box].shape
    # a whole shrink factor, the box cut to whole blocks: area averaging's fast path
    k = min(h, w, max(1, -(-max(h, w) // _DETAIL_SIDE)))
    rows, cols = box
    box = (slice(rows.start, rows.start + h // k * k), slice(cols.start, cols.start + w // k * k))
    scale = 1.0 / k
    size = (w // k, h // k)

    def small(image: Frame) -> NDArray[np.float32]:
        shrunk = _shrink(cv2.cvtColor(image[box], cv2.COLOR_RGB2GRAY), k)
        return shrunk.astype(np.float32)

    inside = cv2.resize(mask[box], size, interpolation=cv2.INTER_NEAREST)
    if cv2.countNonZero(inside) < 16:
        return patch
    grey, want = small(patch), _detail(small(target), inside)
    have = _detail(grey, inside)
    if abs(have - want) <= 0.05 * want:
        return patch
    if have > want:  # blur: the sigma whose result has the target's energy (bisection)
        lo, hi = 0.0, _MAX_SOFTEN * scale
        for _ in range(6):
            mid = (lo + hi) / 2
            if _detail(cv2.GaussianBlur(grey, (0, 0), mid), inside) > want:
                lo = mid
            else:
                hi = mid
        return _blurred(patch, (lo + hi) / 2 / scale)
    detail = cv2.subtract(grey, cv2.GaussianBlur(grey, (0, 0), max(0.5, scale)))
    lo, hi = 0.0, _MAX_SHARPEN
    for _ in range(6):
        mid = (lo + hi) / 2
        if _detail(cv2.scaleAdd(detail, mid, grey), inside) < want:
            lo = mid
        else:
            hi = mid
    gain = (lo + hi) / 2
    sharp: Frame = cv2.addWeighted(patch, 1.0 + gain, _blurred(patch, 1.0), -gain, 0.0)
    return sharp


def _blurred(image: Frame, sigma: float) -> Frame:
    """Gaussian blur; a wide one on an image shrunk first (area filter), then scaled back:
    the same softness for a fraction of the cost."""
    if sigma < 0.3:
        return image
    if sigma <= 2.0:
        direct: Frame = cv2.GaussianBlur(image, (0, 0), sigma)
        return direct
    h, w = image.shape[:2]
    k = sigma / 1.5
    size = (max(1, round(w / k)), max(1, round(h / k)))
    shrunk = cv2.GaussianBlur(cv2.resize(image, size, interpolation=cv2.INTER_AREA), (0, 0), 1.2)
    out: Frame = cv2.resize(shrunk, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def _detail(grey: NDArray[np.float32], inside: Mask) -> float:
    """High-frequency energy: the RMS of the Laplacian where `inside` is set."""
    lap = cv2.Laplacian(grey, cv2.CV_32F)
    return float(np.sqrt(cv2.mean(cv2.multiply(lap, lap), mask=inside)[0]))


_LOW = 8  # colour statistics are taken on images this many times smaller


def _shrink(image: NDArray[np.uint8], factor: int) -> NDArray[np.uint8]:
    """Area average over `factor` x `factor` blocks (a partial block at the edges is left
    out): a whole number of blocks takes OpenCV's fast path, many times quicker."""
    h, w = image.shape[:2]
    rows, cols = max(1, h // factor), max(1, w // factor)
    block = image[: min(h, rows * factor), : min(w, cols * factor)]
    small: NDArray[np.uint8] = cv2.resize(block, (cols, rows), interpolation=cv2.INTER_AREA)
    return small


def _low_pass(image: Frame, factor: int = _LOW) -> NDArray[np.float32]:
    """The shading, not the texture: an image 8x smaller, blurred (float, its own size)."""
    small = _shrink(image, factor).astype(np.float32)
    low: NDArray[np.float32] = cv2.GaussianBlur(small, (0, 0), 1.0)
    return low


def _stats(values: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    return values.mean(axis=0), values.std(axis=0) + 1e-3


def alpha_blend(patch: Frame, target: Frame, alpha: NDArray[np.float32]) -> Frame:
    a = cv2.merge([alpha, alpha, alpha])
    mixed = cv2.add(
        cv2.multiply(patch, a, dtype=cv2.CV_32F), cv2.multiply(target, 1.0 - a, dtype=cv2.CV_32F)
    )
    out: Frame = cv2.convertScaleAbs(mixed)  # rounds and saturates to uint8
    return out


_LEVELS = 4  # of the blend pyramid
BLEND_MARGIN = 2 ** (_LEVELS + 1)  # how far past its mask a multiband blend changes pixels


def work_box(weights: NDArray[np.float32] | Mask, margin: int) -> tuple[slice, slice] | None:
    """The box around weights > 0, grown by `margin`: only there can blending change pixels."""
    x, y, bw, bh = cv2.boundingRect((weights > 1e-3).astype(np.uint8))
    if bw == 0 or bh == 0:
        return None
    h, w = weights.shape[:2]
    return (
        slice(max(0, y - margin), min(h, y + bh + margin)),
        slice(max(0, x - margin), min(w, x + bw + margin)),
    )


def multiband(
    patch: Frame, target: Frame, alpha: NDArray[np.float32], levels: int = _LEVELS
) -> Frame:
    """Burt-Adelson blending: low frequencies blend over a wide seam, fine detail over a
    narrow one, so there is neither a visible edge nor a ghosted double contour. Runs on
    the box around the mask only."""
    box = work_box(alpha, 2 ** (levels + 1))
    if box is None:
        return target
    out = target.copy()
    out[box] = _multiband(patch[box], target[box], alpha[box], levels)
    return out


def _multiband(patch: Frame, target: Frame, alpha: NDArray[np.float32], levels: int) -> Frame:
    # Blending is linear, so blend(A, B) = B + collapse(mask_l * laplacian_l(A - B)): one
    # pyramid (of the difference) instead of two. The mask's pyramid is filtered on one
    # channel, then spread over colour once per level; each level is worked out in place in
    # the buffer its upsampling made (a third less time than fresh arrays, same result).
    h, w = alpha.shape
    levels = max(1, min(levels, int(np.log2(max(1, min(h, w)) / 8))))
    gp_d = [cv2.subtract(patch, target, dtype=cv2.CV_32F)]
    gp_m = [alpha]
    for _ in range(levels):
        gp_d.append(cv2.pyrDown(gp_d[-1]))
        gp_m.append(cv2.pyrDown(gp_m[-1]))
    acc = cv2.multiply(gp_d[-1], _colour(gp_m[-1]))
    for level in range(levels - 1, -1, -1):
        size = (gp_d[level].shape[1], gp_d[level].shape[0])
        lap = cv2.pyrUp(gp_d[level + 1], dstsize=size)
        cv2.subtract(gp_d[level], lap, dst=lap)
        cv2.multiply(lap, _colour(gp_m[level]), dst=lap)
        acc = cv2.pyrUp(acc, dstsize=size)
        cv2.add(acc, lap, dst=acc)
    out: Frame = cv2.add(target, acc, dtype=cv2.CV_8U)  # rounds and saturates
    return out


def _colour(weight: NDArray[np.float32]) -> NDArray[np.float32]:
    """A one-channel weight as three, to multiply a colour image by."""
    merged: NDArray[np.float32] = cv2.merge([weight, weight, weight])
    return merged


def copy_where(dst: Frame, src: Frame, where: NDArray[np.bool_]) -> None:
    """dst = src where `where` (a 2-D mask), in place: OpenCV's masked copy, ~50x faster
    than NumPy's on colour images."""
    cv2.copyTo(src, where.astype(np.uint8), dst)


_FILL_SIDE = 256  # a fill is worked out at most this big (it is smooth), then scaled up


def fill_in(image: Frame, hole: Mask) -> None:
    """Fill `hole` (255: unknown) in place from the pixels around it (Telea inpainting), at
    most `_FILL_SIDE` pixels across: a smooth continuation, cheap at any size."""
    scale = min(1.0, _FILL_SIDE / max(image.shape[:2]))
    small, small_hole = image, hole
    if scale < 1.0:
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        small_hole = cv2.resize(
            hole, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST
        )
    filled = cv2.inpaint(small, small_hole, 5, cv2.INPAINT_TELEA)
    if scale < 1.0:
        filled = cv2.resize(
            filled, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR
        )
    copy_where(image, filled, hole > 0)


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


def blend(
    patch: Frame,
    target: Frame,
    alpha: NDArray[np.float32],
    mode: BlendMode,
    exact: Mask | None = None,
) -> Frame:
    """`patch` over `target` with weights `alpha`; where `exact` is set (a mouth opening) the
    result is the target's pixels unchanged.

    The multiband blend's coarse levels reach a little past the last pixel of alpha > 0:
    that is the seam fading out. Only `exact` is reset to the target; resetting everything
    at alpha 0 would cut the fade off in a visible line along the mask's edge (10 levels at
    a forehead brighter than the hair above it)."""
    if mode == "multiband":
        out = multiband(patch, target, alpha)
        if exact is not None:
            copy_where(out, target, exact > 0)
        return out
    if mode == "poisson":
        cloned = poisson(patch, target, np.where(alpha > 0.5, 255, 0).astype(np.uint8))
        return alpha_blend(cloned, target, alpha)  # the feathered edge still fades it in
    return alpha_blend(patch, target, alpha)
