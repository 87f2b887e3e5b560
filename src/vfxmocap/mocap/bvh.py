"""BVH export: hierarchy in centimetres, Hips root with translation, ZXY channels.

Root motion: MediaPipe's world landmarks are hip-centred, so the root's travel comes from
the hips' track in the image, scaled to metres by the body's size in pixels. During ground
contact a foot is locked: the root then moves by exactly what keeps the planted foot still,
so feet do not slide; the lowest planted foot sets the ground (y = 0), and between contacts
(a jump) the hips follow their image track.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from vfxmocap.core.errors import InputError
from vfxmocap.core.files import atomic_path
from vfxmocap.mocap.filters import Motion
from vfxmocap.mocap.skeleton import (
    CHILD,
    INDEX,
    JOINTS,
    PARENT,
    bone_lengths,
    forward_kinematics,
    global_rotations,
    joint_positions,
    local_rotations,
    rest_offsets,
)
from vfxmocap.vision.pose import P

Array = NDArray[np.float64]
CM = 100.0  # BVH offsets and positions are written in centimetres
CONTACT_SPEED = 0.35  # m/s: slower than this, a foot near the ground is planted
CONTACT_HEIGHT = 0.06  # m above the lowest foot position


@dataclass
class Animation:
    """Everything the BVH holds, in metres and rotation matrices, for checks and export."""

    lengths: dict[str, float]
    local: Array  # (N, J, 3, 3)
    root: Array  # (N, 3) metres
    contacts: NDArray[np.bool_]  # (N, 2): left, right foot planted
    frame_time: float

    def positions(self) -> Array:
        return forward_kinematics(self.local, rest_offsets(self.lengths), self.root)


def _scale_m_per_px(motion: Motion, lengths: dict[str, float]) -> float:
    """Metres per pixel: the skeleton's neck-to-ankle height over the same in the image."""
    img = motion.image
    neck = (img[:, P["left_shoulder"]] + img[:, P["right_shoulder"]]) / 2
    hips = (img[:, P["left_hip"]] + img[:, P["right_hip"]]) / 2
    pixels = np.zeros(len(img))
    for side in ("left", "right"):
        knee, ankle = img[:, P[f"{side}_knee"]], img[:, P[f"{side}_ankle"]]
        pixels += (
            np.linalg.norm(knee - img[:, P[f"{side}_hip"]], axis=1)
            + np.linalg.norm(ankle - knee, axis=1)
        ) / 2
    pixels += np.linalg.norm(neck - hips, axis=1)
    metres = (
        lengths["Hips"]
        + lengths["Spine"]
        + lengths["Chest"]
        + lengths["LeftUpLeg"]
        + lengths["LeftLeg"]
    )
    body = float(np.median(pixels[motion.present])) if motion.present.any() else 0.0
    return metres / body if body > 0 else 0.0


def _image_root(motion: Motion, scale: float) -> Array:
    hips = (motion.image[:, P["left_hip"]] + motion.image[:, P["right_hip"]]) / 2
    root = np.zeros((len(hips), 3))
    root[:, 0] = (hips[:, 0] - hips[0, 0]) * scale
    root[:, 1] = -(hips[:, 1] - hips[0, 1]) * scale
    return root


def _lock_feet(
    local_pos: Array, image_root: Array, times: Array
) -> tuple[Array, NDArray[np.bool_]]:
    """Root trajectory with planted feet held still; returns (root, contacts)."""
    feet = [INDEX["LeftToe"], INDEX["RightToe"]]
    n = len(local_pos)
    dt = np.diff(times, prepend=times[0] - (times[1] - times[0] if n > 1 else 1 / 30))
    world = local_pos[:, feet] + image_root[:, None]
    speed = np.zeros((n, 2))
    if n > 1:
        speed[1:] = np.linalg.norm(np.diff(world[:, :, [0, 2]], axis=0), axis=2) / dt[1:, None]
    low = np.min(world[:, :, 1])
    contacts = (speed < CONTACT_SPEED) & (world[:, :, 1] < low + CONTACT_HEIGHT)
    root = np.zeros((n, 3))
    root[0] = image_root[0]
    for t in range(1, n):
        planted = contacts[t] & contacts[t - 1]
        if planted.any():
            # the supporting foot is the lowest planted one; the body moves over it
            k = int(np.argmin(np.where(planted, local_pos[t, feet, 1], np.inf)))
            step = -(local_pos[t, feet[k]] - local_pos[t - 1, feet[k]])
        else:
            step = image_root[t] - image_root[t - 1]
        root[t, [0, 2]] = root[t - 1, [0, 2]] + step[[0, 2]]
    root[:, 1] = _root_height(local_pos[:, feet, 1].min(axis=1), image_root[:, 1], contacts)
    return root, contacts


def _root_height(lowest: Array, image_y: Array, contacts: NDArray[np.bool_]) -> Array:
    """Hip height above the floor: with a foot planted, the lowest foot is on the ground
    (y = 0); between contacts (a jump, a step off a ledge) the hips follow their image track,
    offset so both ends meet the grounded heights. Smoothed so landings do not pop."""
    height = -lowest
    grounded = contacts.any(axis=1)
    if grounded.any() and not grounded.all():
        at = np.flatnonzero(grounded)
        offset = np.interp(np.arange(len(height)), at, (height - image_y)[at])
        height = np.where(grounded, height, image_y + offset)
    if len(height) > 4:
        kernel = np.ones(5) / 5
        height = np.convolve(np.pad(height, 2, mode="edge"), kernel, mode="valid")
    return height


def uniform(motion: Motion) -> Motion:
    """BVH needs a constant frame rate: resample a variable-frame-rate take onto a uniform
    grid at its median rate (linear in time); a constant-rate take is returned as it is."""
    times = motion.times
    if len(times) < 3:
        return motion
    step = float(np.median(np.diff(times)))
    if np.abs(np.diff(times) - step).max() <= 0.1 * step:
        return motion
    grid = times[0] + step * np.arange(round((times[-1] - times[0]) / step) + 1)

    def resample(values: Array) -> Array:
        flat = values.reshape(len(times), -1)
        cols = [np.interp(grid, times, flat[:, c]) for c in range(flat.shape[1])]
        return np.stack(cols, axis=1).reshape((len(grid), *values.shape[1:]))

    nearest = np.clip(np.searchsorted(times, grid), 0, len(times) - 1)
    return Motion(
        grid,
        resample(motion.image),
        resample(motion.world),
        resample(motion.visibility),
        motion.held[nearest],
        motion.present[nearest],
    )


def animate(motion: Motion) -> Animation:
    """Fit the skeleton to a cleaned take and derive root motion with foot locking."""
    motion = uniform(motion)
    if not motion.present.any():
        raise InputError(
            "no person was found in any frame: nothing to animate",
            hint="Use a video where the whole body is visible.",
        )
    world = motion.world
    joints, ends = joint_positions(world[motion.present])
    lengths = bone_lengths(joints, ends)
    local = local_rotations(global_rotations(world))
    offsets = rest_offsets(lengths)
    at_origin = forward_kinematics(local, offsets, np.zeros((len(world), 3)))
    scale = _scale_m_per_px(motion, lengths)
    root, contacts = _lock_feet(at_origin, _image_root(motion, scale), motion.times)
    frame_time = float(np.median(np.diff(motion.times))) if len(motion.times) > 1 else 1 / 30
    return Animation(lengths, local, root, contacts, frame_time)


def _hierarchy(offsets: dict[str, Array]) -> list[str]:
    lines = ["HIERARCHY"]
    depth = 0

    def emit(text: str) -> None:
        lines.append("  " * depth + text)

    def vec(v: Array) -> str:
        return " ".join(f"{x * CM:.4f}" for x in v)

    def joint(i: int) -> None:
        nonlocal depth
        j = JOINTS[i]
        emit(f"{'ROOT' if j.parent is None else 'JOINT'} {j.name}")
        emit("{")
        depth += 1
        emit(f"OFFSET {vec(offsets[j.name])}")
        if j.parent is None:
            emit("CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
        else:
            emit("CHANNELS 3 Zrotation Xrotation Yrotation")
        children = [k for k, p in enumerate(PARENT) if p == i]
        for k in children:
            joint(k)
        if CHILD[j.name] is None:
            emit("End Site")
            emit("{")
            emit(f"  OFFSET {vec(offsets[f'{j.name}_end'])}")
            emit("}")
        depth -= 1
        emit("}")

    joint(0)
    return lines


def euler_zxy(local: Array) -> Array:
    """Degrees (Z, X, Y) such that R = Rz @ Rx @ Ry: BVH's 'Zrotation Xrotation Yrotation'."""
    flat = local.reshape(-1, 3, 3)
    angles = Rotation.from_matrix(flat).as_euler("ZXY", degrees=True)
    result: Array = angles.reshape(local.shape[0], local.shape[1], 3)
    return result


def write_bvh(animation: Animation, path: str | Path) -> Path:
    offsets = rest_offsets(animation.lengths)
    lines = _hierarchy(offsets)
    angles = euler_zxy(animation.local)
    lines += ["MOTION", f"Frames: {len(angles)}", f"Frame Time: {animation.frame_time:.6f}"]
    for root, frame in zip(animation.root, angles, strict=True):
        values = [*(root * CM), *frame.reshape(-1)]
        lines.append(" ".join(f"{v:.4f}" for v in values))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return Path(path)


def read_bvh(path: str | Path) -> tuple[list[str], Array, float]:
    """Joint names, channel values (N, 6 + 3 * (J - 1)) and frame time of a BVH we wrote."""
    text = Path(path).read_text().split("MOTION")
    names = [
        line.split()[1]
        for line in text[0].splitlines()
        if line.strip().startswith(("ROOT", "JOINT"))
    ]
    motion = text[1].strip().splitlines()
    frame_time = float(motion[1].split(":")[1])
    values = np.array([[float(v) for v in line.split()] for line in motion[2:]])
    return names, values, frame_time


def fk_from_bvh(path: str | Path, lengths: dict[str, float]) -> Array:
    """Forward kinematics straight from a BVH file's channels (metres)."""
    _, values, _ = read_bvh(path)
    n = len(values)
    root = values[:, :3] / CM
    angles = values[:, 3:].reshape(n, len(JOINTS), 3)
    local = Rotation.from_euler("ZXY", angles.reshape(-1, 3), degrees=True).as_matrix()
    return forward_kinematics(local.reshape(n, len(JOINTS), 3, 3), rest_offsets(lengths), root)
