"""Plausible skeletons: repair or reject frames whose pose no human body can take.

Within one take (one shot, one performer):
- left and right swapped from one frame to the next (the tracker's classic mistake on a
  body seen edge-on) are swapped back;
- a limb bone far off its median length over the take is a mis-placed joint: the joint at
  its end is marked untrusted (visibility 0), so the gap rules fill it from its neighbours;
- a torso that turns more than 90 degrees between consecutive frames (upside down in one
  step) is not a body moving: the frame is rejected (absent, reason "flipped").
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from vfxmocap.mocap.take import Take
from vfxmocap.vision.pose import POSE_LANDMARKS, P

Array = NDArray[np.float32]

# Index of each landmark's mirror (left <-> right; the nose is its own).
MIRROR = np.array(
    [
        POSE_LANDMARKS.index(n.replace("left", "@").replace("right", "left").replace("@", "right"))
        for n in POSE_LANDMARKS
    ]
)
SWAP_CHECK = [P[n] for n in ("left_shoulder", "left_hip", "left_knee", "left_ankle")]
LIMBS = tuple(
    (P[f"{side}_{a}"], P[f"{side}_{b}"])
    for side in ("left", "right")
    for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle"))
)
BONE_TOLERANCE = 0.5  # relative to the take's median length


def repair(take: Take) -> Take:
    """The take with swapped sides undone, stray limb joints untrusted and flipped frames
    rejected; `repaired` marks the frames changed, `reasons` says "flipped" where rejected."""
    image, world = take.image.copy(), take.world.copy()
    repaired = np.zeros(take.frames, bool)
    reasons = list(take.absent_reasons())
    previous: int | None = None
    for i in np.flatnonzero(take.present):
        if previous is not None:
            if _swapped(image[previous], image[i]):
                image[i], world[i] = image[i, MIRROR], world[i, MIRROR]
                repaired[i] = True
            if _flipped(world[previous], world[i]):
                image[i] = world[i] = np.nan
                reasons[i], repaired[i] = "flipped", False
                continue
        previous = int(i)
    repaired |= _untrust_stray_limbs(image, world)
    return replace(take, image=image, world=world, repaired=repaired, reasons=reasons)


def _swapped(before: Array, now: Array) -> bool:
    """Nearer to the previous frame with sides exchanged than as labelled, by a wide margin."""
    left, right = np.array(SWAP_CHECK), MIRROR[SWAP_CHECK]
    same = np.nansum(np.abs(now[left, :2] - before[left, :2]))
    same += np.nansum(np.abs(now[right, :2] - before[right, :2]))
    crossed = np.nansum(np.abs(now[left, :2] - before[right, :2]))
    crossed += np.nansum(np.abs(now[right, :2] - before[left, :2]))
    width = np.nanmax(np.abs(before[left, 0] - before[right, 0]))
    return bool(crossed < 0.4 * same and same > width)


def _torso_up(world: Array) -> NDArray[np.float64]:
    neck = (world[P["left_shoulder"]] + world[P["right_shoulder"]]) / 2
    hips = (world[P["left_hip"]] + world[P["right_hip"]]) / 2
    up: NDArray[np.float64] = (neck - hips).astype(np.float64)
    return up


def _flipped(before: Array, now: Array) -> bool:
    return bool(np.dot(_torso_up(before), _torso_up(now)) < 0.0)


def _untrust_stray_limbs(image: Array, world: Array) -> NDArray[np.bool_]:
    changed = np.zeros(len(image), bool)
    present = np.isfinite(world[:, 0, 0])
    if present.sum() < 5:  # too few frames for a median to mean anything
        return changed
    for a, b in LIMBS:
        length = np.linalg.norm(world[:, a] - world[:, b], axis=1)
        median = float(np.median(length[present]))
        stray = present & (np.abs(length - median) > BONE_TOLERANCE * max(median, 1e-6))
        image[stray, b, 2] = 0.0
        changed |= stray
    return changed
