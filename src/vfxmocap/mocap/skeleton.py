"""A humanoid skeleton fitted to BlazePose: bone lengths, T-pose rest, per-frame rotations.

World frame: metres, Y up, the performer facing +Z at rest, their left along +X. Each
joint's rotation is found from two axes: its bone's direction and a second axis from the
body (shoulder line, torso up), the hand (across the palm) or the foot (forward), so twist
is defined. Bone lengths are the median of each segment over the take, made left/right
symmetric, so forward kinematics of the rotations gives a rigid, consistent body.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vfxmocap.vision.pose import P

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Joint:
    name: str
    parent: str | None
    rest_dir: tuple[float, float, float]  # unit direction of the bone to the child, at rest
    rest_side: tuple[float, float, float]  # second axis at rest (perpendicular to rest_dir)


# Hierarchy in BVH order (parents before children). A joint's bone runs to its first child
# (or its end site). Rest: T-pose facing +Z.
JOINTS = (
    Joint("Hips", None, (0, 1, 0), (1, 0, 0)),
    Joint("Spine", "Hips", (0, 1, 0), (1, 0, 0)),
    Joint("Chest", "Spine", (0, 1, 0), (1, 0, 0)),
    Joint("Neck", "Chest", (0, 1, 0), (1, 0, 0)),
    Joint("Head", "Neck", (0, 1, 0), (1, 0, 0)),
    Joint("LeftShoulder", "Chest", (1, 0, 0), (0, 1, 0)),
    Joint("LeftArm", "LeftShoulder", (1, 0, 0), (0, 0, 1)),
    Joint("LeftForeArm", "LeftArm", (1, 0, 0), (0, 0, 1)),
    Joint("LeftHand", "LeftForeArm", (1, 0, 0), (0, 0, 1)),
    Joint("RightShoulder", "Chest", (-1, 0, 0), (0, 1, 0)),
    Joint("RightArm", "RightShoulder", (-1, 0, 0), (0, 0, 1)),
    Joint("RightForeArm", "RightArm", (-1, 0, 0), (0, 0, 1)),
    Joint("RightHand", "RightForeArm", (-1, 0, 0), (0, 0, 1)),
    Joint("LeftUpLeg", "Hips", (0, -1, 0), (0, 0, 1)),
    Joint("LeftLeg", "LeftUpLeg", (0, -1, 0), (0, 0, 1)),
    Joint("LeftFoot", "LeftLeg", (0, 0, 1), (0, 1, 0)),
    Joint("LeftToe", "LeftFoot", (0, 0, 1), (0, 1, 0)),
    Joint("RightUpLeg", "Hips", (0, -1, 0), (0, 0, 1)),
    Joint("RightLeg", "RightUpLeg", (0, -1, 0), (0, 0, 1)),
    Joint("RightFoot", "RightLeg", (0, 0, 1), (0, 1, 0)),
    Joint("RightToe", "RightFoot", (0, 0, 1), (0, 1, 0)),
)
NAMES = [j.name for j in JOINTS]
INDEX = {name: i for i, name in enumerate(NAMES)}
PARENT = [INDEX[j.parent] if j.parent else -1 for j in JOINTS]
# The joint whose position ends each bone (first child), or None for an end site.
CHILD: dict[str, str | None] = {
    "Hips": "Spine",
    "Spine": "Chest",
    "Chest": "Neck",
    "Neck": "Head",
    "Head": None,
    "LeftShoulder": "LeftArm",
    "LeftArm": "LeftForeArm",
    "LeftForeArm": "LeftHand",
    "LeftHand": None,
    "RightShoulder": "RightArm",
    "RightArm": "RightForeArm",
    "RightForeArm": "RightHand",
    "RightHand": None,
    "LeftUpLeg": "LeftLeg",
    "LeftLeg": "LeftFoot",
    "LeftFoot": "LeftToe",
    "LeftToe": None,
    "RightUpLeg": "RightLeg",
    "RightLeg": "RightFoot",
    "RightFoot": "RightToe",
    "RightToe": None,
}
MIRROR = {
    n: n.replace("Left", "Right") if "Left" in n else n.replace("Right", "Left") for n in NAMES
}


def _mid(a: Array, b: Array) -> Array:
    return (a + b) / 2.0


def joint_positions(world: Array) -> tuple[Array, dict[str, Array]]:
    """Skeleton joint positions (N, J, 3) from BlazePose world points (N, 33, 3), plus end
    points (head top, hand tips, toe tips) used to orient the last bones."""
    w = world
    hips = _mid(w[:, P["left_hip"]], w[:, P["right_hip"]])
    neck = _mid(w[:, P["left_shoulder"]], w[:, P["right_shoulder"]])
    ears = _mid(w[:, P["left_ear"]], w[:, P["right_ear"]])
    pos = {
        "Hips": hips,
        "Spine": hips + (neck - hips) / 3.0,
        "Chest": hips + 2.0 * (neck - hips) / 3.0,
        "Neck": neck,
        "Head": neck + 0.5 * (ears - neck),
    }
    for side in ("left", "right"):
        s = side.capitalize()
        pos[f"{s}Shoulder"] = neck
        pos[f"{s}Arm"] = w[:, P[f"{side}_shoulder"]]
        pos[f"{s}ForeArm"] = w[:, P[f"{side}_elbow"]]
        pos[f"{s}Hand"] = w[:, P[f"{side}_wrist"]]
        pos[f"{s}UpLeg"] = w[:, P[f"{side}_hip"]]
        pos[f"{s}Leg"] = w[:, P[f"{side}_knee"]]
        pos[f"{s}Foot"] = w[:, P[f"{side}_ankle"]]
        pos[f"{s}Toe"] = w[:, P[f"{side}_foot_index"]]
    ends = {"Head": ears + (ears - neck) * 0.6}
    for side in ("left", "right"):
        s = side.capitalize()
        tip = _mid(w[:, P[f"{side}_index"]], w[:, P[f"{side}_pinky"]])
        ends[f"{s}Hand"] = tip
        toe = w[:, P[f"{side}_foot_index"]]
        heel = w[:, P[f"{side}_heel"]]
        ends[f"{s}Toe"] = toe + 0.3 * (toe - heel)
    return np.stack([pos[n] for n in NAMES], axis=1), ends


def _bone_vectors(joints: Array, ends: dict[str, Array]) -> dict[str, Array]:
    vectors = {}
    for name in NAMES:
        child = CHILD[name]
        end = joints[:, INDEX[child]] if child else ends[name]
        vectors[name] = end - joints[:, INDEX[name]]
    return vectors


def bone_lengths(joints: Array, ends: dict[str, Array]) -> dict[str, float]:
    """Median length of each bone over the take, averaged with its mirror bone."""
    vectors = _bone_vectors(joints, ends)
    median = {n: float(np.median(np.linalg.norm(v, axis=1))) for n, v in vectors.items()}
    lengths = {n: (median[n] + median[MIRROR[n]]) / 2.0 for n in NAMES}
    hip_half = (
        float(
            np.median(
                np.linalg.norm(
                    joints[:, INDEX["LeftUpLeg"]] - joints[:, INDEX["RightUpLeg"]], axis=1
                )
            )
        )
        / 2.0
    )
    lengths["_hip_half"] = hip_half
    return lengths


def rest_offsets(lengths: dict[str, float]) -> dict[str, Array]:
    """Each joint's offset from its parent in the T-pose, and each end site's from its joint."""
    offsets: dict[str, Array] = {"Hips": np.zeros(3)}
    for joint in JOINTS[1:]:
        parent = JOINTS[INDEX[joint.parent or ""]]
        if joint.name in ("LeftUpLeg", "RightUpLeg"):
            side = 1.0 if joint.name.startswith("Left") else -1.0
            offsets[joint.name] = np.array([side * lengths["_hip_half"], 0.0, 0.0])
        elif joint.name in ("LeftShoulder", "RightShoulder"):
            offsets[joint.name] = np.array(parent.rest_dir) * lengths[parent.name]  # at Neck
        else:
            offsets[joint.name] = np.array(parent.rest_dir) * lengths[parent.name]
    for name in NAMES:
        if CHILD[name] is None:
            offsets[f"{name}_end"] = np.array(JOINTS[INDEX[name]].rest_dir) * lengths[name]
    return offsets


def _frame(direction: Array, side: Array, rest: Joint | None = None) -> Array:
    """Rotation matrices (N, 3, 3) with columns (direction, side', direction x side').

    Where the direction is degenerate (two joints at one point) the rest direction is used,
    and where the side axis is parallel to the direction, the rest side, then any
    perpendicular: every frame gets a proper rotation.
    """
    direction = np.broadcast_to(direction, np.broadcast_shapes(direction.shape, side.shape))
    side = np.broadcast_to(side, direction.shape)
    rest_dir = np.array(rest.rest_dir if rest else (0.0, 1.0, 0.0), float)
    rest_side = np.array(rest.rest_side if rest else (1.0, 0.0, 0.0), float)
    norm = np.linalg.norm(direction, axis=-1, keepdims=True)
    d = np.where(norm > 1e-6, direction / np.maximum(norm, 1e-12), rest_dir)
    s = _perpendicular(side, d)
    weak = np.linalg.norm(s, axis=-1, keepdims=True) < 1e-6
    s = np.where(weak, _perpendicular(np.broadcast_to(rest_side, d.shape), d), s)
    weak = np.linalg.norm(s, axis=-1, keepdims=True) < 1e-6
    s = np.where(weak, _perpendicular(np.broadcast_to(rest_dir[[2, 0, 1]], d.shape), d), s)
    s = s / np.maximum(np.linalg.norm(s, axis=-1, keepdims=True), 1e-12)
    return np.stack([d, s, np.cross(d, s)], axis=-1)


def _perpendicular(v: Array, d: Array) -> Array:
    result: Array = v - np.sum(v * d, axis=-1, keepdims=True) * d
    return result


def _side_axes(joints: Array, world: Array, ends: dict[str, Array]) -> dict[str, Array]:
    """The second axis of every joint, observed (see JOINTS.rest_side)."""
    w = world
    across = joints[:, INDEX["LeftArm"]] - joints[:, INDEX["RightArm"]]  # shoulder line
    hips_across = joints[:, INDEX["LeftUpLeg"]] - joints[:, INDEX["RightUpLeg"]]
    up = joints[:, INDEX["Neck"]] - joints[:, INDEX["Hips"]]
    forward = np.cross(across, up)  # the chest's facing direction
    ears = w[:, P["left_ear"]] - w[:, P["right_ear"]]
    sides = {
        "Hips": hips_across,
        "Spine": (hips_across + across) / 2,
        "Chest": across,
        "Neck": across,
        "Head": ears,
    }
    for s, side in (("Left", "left"), ("Right", "right")):
        sides[f"{s}Shoulder"] = up
        upper = joints[:, INDEX[f"{s}ForeArm"]] - joints[:, INDEX[f"{s}Arm"]]
        lower = joints[:, INDEX[f"{s}Hand"]] - joints[:, INDEX[f"{s}ForeArm"]]
        bend = lower - np.sum(lower * upper, -1, keepdims=True) * upper / np.maximum(
            np.sum(upper * upper, -1, keepdims=True), 1e-9
        )
        # a straight arm has no bend plane: fall back to the chest's forward direction
        straight = np.linalg.norm(bend, axis=-1, keepdims=True) < 0.02
        sides[f"{s}Arm"] = np.where(straight, forward, bend)
        palm = w[:, P[f"{side}_index"]] - w[:, P[f"{side}_pinky"]]
        sides[f"{s}ForeArm"] = palm
        sides[f"{s}Hand"] = palm
        foot = joints[:, INDEX[f"{s}Toe"]] - joints[:, INDEX[f"{s}Foot"]]
        sides[f"{s}UpLeg"] = foot
        sides[f"{s}Leg"] = foot
        shin = joints[:, INDEX[f"{s}Leg"]] - joints[:, INDEX[f"{s}Foot"]]
        sides[f"{s}Foot"] = shin
        sides[f"{s}Toe"] = shin
    return sides


def global_rotations(world: Array) -> Array:
    """Each joint's rotation from rest (N, J, 3, 3), in the world frame."""
    joints, ends = joint_positions(world)
    vectors = _bone_vectors(joints, ends)
    sides = _side_axes(joints, world, ends)
    out = np.empty((len(world), len(JOINTS), 3, 3))
    for i, joint in enumerate(JOINTS):
        direction = vectors[joint.name]
        if joint.name == "Hips":  # the root's "bone" is the hips' up axis (to the spine)
            direction = joints[:, INDEX["Spine"]] - joints[:, INDEX["Hips"]]
        observed = _frame(direction, sides[joint.name], joint)
        rest = _frame(np.array(joint.rest_dir, float)[None], np.array(joint.rest_side, float)[None])
        out[:, i] = observed @ np.swapaxes(rest, -1, -2)
    return out


def local_rotations(global_rot: Array) -> Array:
    """Rotations relative to each joint's parent (the root's is global)."""
    local = global_rot.copy()
    for i, parent in enumerate(PARENT):
        if parent >= 0:
            local[:, i] = np.swapaxes(global_rot[:, parent], -1, -2) @ global_rot[:, i]
    return local


def forward_kinematics(local: Array, offsets: dict[str, Array], root: Array) -> Array:
    """Joint positions (N, J, 3) from local rotations, rest offsets and root positions."""
    n = len(local)
    glob = np.empty_like(local)
    pos = np.empty((n, len(JOINTS), 3))
    for i, joint in enumerate(JOINTS):
        parent = PARENT[i]
        if parent < 0:
            glob[:, i] = local[:, i]
            pos[:, i] = root
        else:
            glob[:, i] = glob[:, parent] @ local[:, i]
            pos[:, i] = pos[:, parent] + glob[:, parent] @ offsets[joint.name]
    return pos


def retarget(world: Array, lengths: dict[str, float]) -> Array:
    """The observed pose rebuilt with the fixed bone lengths, root at the origin: what a
    perfect rigid skeleton would show for this take."""
    joints, ends = joint_positions(world)
    vectors = _bone_vectors(joints, ends)
    out = np.empty_like(joints)
    out[:, 0] = 0.0
    offsets = rest_offsets(lengths)
    glob = global_rotations(world)
    for i, joint in enumerate(JOINTS[1:], start=1):
        parent = PARENT[i]
        if joint.name in ("LeftUpLeg", "RightUpLeg"):
            out[:, i] = out[:, parent] + glob[:, parent] @ offsets[joint.name]
            continue
        parent_name = JOINTS[parent].name
        v = (
            vectors[parent_name]
            if parent_name != "Hips"
            else joints[:, INDEX["Spine"]] - joints[:, INDEX["Hips"]]
        )
        unit = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
        out[:, i] = out[:, parent] + unit * lengths[parent_name]
    return out
