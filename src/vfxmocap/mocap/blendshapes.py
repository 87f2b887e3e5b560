"""Face capture: ARKit-named expression coefficients from the face mesh, and Live Link Face CSV.

Coefficients come from landmark geometry in the head's own frame (head rotation removed),
measured in outer-eye distances and normalised per actor against a neutral face: a given
frame, or the median of the first `neutral_seconds`. Each is the change from neutral over
the change that means "fully on", clipped to 0..1. These ranges are geometric heuristics,
not a learnt model; shapes not computed are written as 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vfxmocap.core.files import atomic_path
from vfxmocap.vision.landmarks import FLIP_YZ, face_axes, head_pose

Array = NDArray[np.float64]

# ARKit's 52 blendshapes in Live Link Face's CSV column order.
LIVE_LINK_SHAPES = (
    "EyeBlinkLeft",
    "EyeLookDownLeft",
    "EyeLookInLeft",
    "EyeLookOutLeft",
    "EyeLookUpLeft",
    "EyeSquintLeft",
    "EyeWideLeft",
    "EyeBlinkRight",
    "EyeLookDownRight",
    "EyeLookInRight",
    "EyeLookOutRight",
    "EyeLookUpRight",
    "EyeSquintRight",
    "EyeWideRight",
    "JawForward",
    "JawRight",
    "JawLeft",
    "JawOpen",
    "MouthClose",
    "MouthFunnel",
    "MouthPucker",
    "MouthRight",
    "MouthLeft",
    "MouthSmileLeft",
    "MouthSmileRight",
    "MouthFrownLeft",
    "MouthFrownRight",
    "MouthDimpleLeft",
    "MouthDimpleRight",
    "MouthStretchLeft",
    "MouthStretchRight",
    "MouthRollLower",
    "MouthRollUpper",
    "MouthShrugLower",
    "MouthShrugUpper",
    "MouthPressLeft",
    "MouthPressRight",
    "MouthLowerDownLeft",
    "MouthLowerDownRight",
    "MouthUpperUpLeft",
    "MouthUpperUpRight",
    "BrowDownLeft",
    "BrowDownRight",
    "BrowInnerUp",
    "BrowOuterUpLeft",
    "BrowOuterUpRight",
    "CheekPuff",
    "CheekSquintLeft",
    "CheekSquintRight",
    "NoseSneerLeft",
    "NoseSneerRight",
    "TongueOut",
)
ROTATIONS = (
    "HeadYaw",
    "HeadPitch",
    "HeadRoll",
    "LeftEyeYaw",
    "LeftEyePitch",
    "LeftEyeRoll",
    "RightEyeYaw",
    "RightEyePitch",
    "RightEyeRoll",
)

# Mesh indices. "Left"/"Right" are the performer's own (ARKit's convention, as MediaPipe's).
_EYE = {"Left": (386, 374, 263, 362), "Right": (159, 145, 33, 133)}  # upper, lower, outer, inner
_BROW_INNER = {"Left": 336, "Right": 107}
_BROW_OUTER = {"Left": 300, "Right": 70}
_MOUTH_CORNER = {"Left": 291, "Right": 61}
_CHEEK = {"Left": 425, "Right": 205}
_LIP_UPPER, _LIP_LOWER, _LIP_TOP, _LIP_BOTTOM = 13, 14, 0, 17
_NOSE, _CHIN = 4, 152

# (feature change from neutral, in eye distances) that means the shape is fully on
_FULL = {
    "jaw": 0.30,
    "gap": 0.25,
    "blink": 1.0,
    "wide": 0.35,
    "brow": 0.08,
    "smile": 0.08,
    "pucker": 0.10,
    "puff": 0.05,
}


def _features(face: Array) -> dict[str, float]:
    """Expression measures of one face (478, 3 pixels), in the head frame, in eye distances."""
    p = face[:, :3] * FLIP_YZ  # y up, z toward the camera
    axes = face_axes(p)
    q = (p - p[_NOSE]) @ axes.T
    unit = float(np.linalg.norm(q[_EYE["Left"][2]] - q[_EYE["Right"][2]]))
    q /= max(unit, 1e-9)
    out = {
        "gap": float(q[_LIP_UPPER, 1] - q[_LIP_LOWER, 1]),
        "jaw": float(q[_NOSE, 1] - q[_CHIN, 1]),
        "mouth_width": float(np.linalg.norm(q[_MOUTH_CORNER["Left"]] - q[_MOUTH_CORNER["Right"]])),
        "lip_height": float(q[_LIP_TOP, 1] - q[_LIP_BOTTOM, 1]),
    }
    for side in ("Left", "Right"):
        upper, lower, outer, inner = _EYE[side]
        width = float(np.linalg.norm(q[outer] - q[inner]))
        out[f"eye_{side}"] = float(q[upper, 1] - q[lower, 1]) / max(width, 1e-9)
        eye_y = (q[outer, 1] + q[inner, 1]) / 2
        out[f"brow_in_{side}"] = float(q[_BROW_INNER[side], 1] - eye_y)
        out[f"brow_out_{side}"] = float(q[_BROW_OUTER[side], 1] - eye_y)
        out[f"corner_y_{side}"] = float(q[_MOUTH_CORNER[side], 1])
        out[f"cheek_{side}"] = float(abs(q[_CHEEK[side], 0]))
    return out


def _ramp(value: float, full: float) -> float:
    return float(np.clip(value / full, 0.0, 1.0))


def coefficients(feat: dict[str, float], neutral: dict[str, float]) -> dict[str, float]:
    d = {k: feat[k] - neutral[k] for k in feat}
    shapes = dict.fromkeys(LIVE_LINK_SHAPES, 0.0)
    jaw_open = _ramp(d["jaw"], _FULL["jaw"])
    lips_open = _ramp(d["gap"], _FULL["gap"])
    shapes["JawOpen"] = max(jaw_open, lips_open)
    shapes["MouthClose"] = float(np.clip(jaw_open - lips_open, 0.0, 1.0))
    narrower = -d["mouth_width"]
    shapes["MouthPucker"] = _ramp(narrower, _FULL["pucker"]) * (1.0 - lips_open)
    shapes["MouthFunnel"] = _ramp(narrower, _FULL["pucker"]) * lips_open
    for side in ("Left", "Right"):
        eye = feat[f"eye_{side}"] / max(neutral[f"eye_{side}"], 1e-6)
        shapes[f"EyeBlink{side}"] = float(np.clip((1.0 - eye) / _FULL["blink"] * 1.4, 0, 1))
        shapes[f"EyeWide{side}"] = _ramp(eye - 1.0, _FULL["wide"])
        shapes[f"BrowDown{side}"] = _ramp(-d[f"brow_in_{side}"], _FULL["brow"])
        shapes[f"BrowOuterUp{side}"] = _ramp(d[f"brow_out_{side}"], _FULL["brow"])
        widen = d["mouth_width"] / 2
        shapes[f"MouthSmile{side}"] = _ramp(d[f"corner_y_{side}"] + widen, _FULL["smile"])
    shapes["BrowInnerUp"] = _ramp((d["brow_in_Left"] + d["brow_in_Right"]) / 2, _FULL["brow"])
    shapes["CheekPuff"] = _ramp((d["cheek_Left"] + d["cheek_Right"]) / 2, _FULL["puff"]) * (
        1.0 - lips_open
    )
    return shapes


def face_capture(
    faces: NDArray[np.floating[Any]],
    times: Array,
    *,
    neutral_seconds: float = 1.0,
    neutral_frame: int | None = None,
) -> tuple[Array, Array, NDArray[np.bool_]]:
    """(N, 52) coefficients in LIVE_LINK_SHAPES order, (N, 9) rotations in radians (head
    yaw/pitch/roll, eyes 0), and which frames had a face."""
    n = len(faces)
    found = np.isfinite(faces[:, :, 0]).all(axis=1)
    feats = [_features(faces[i].astype(np.float64)) if found[i] else None for i in range(n)]
    if neutral_frame is not None and found[neutral_frame]:
        neutral = feats[neutral_frame]
    else:
        early = [
            f
            for f, t in zip(feats, times, strict=True)
            if f is not None and t - times[0] <= neutral_seconds
        ]
        early = early or [f for f in feats if f is not None]
        neutral = {k: float(np.median([f[k] for f in early])) for k in early[0]} if early else None
    shapes = np.zeros((n, len(LIVE_LINK_SHAPES)))
    rotations = np.zeros((n, len(ROTATIONS)))
    for i, feat in enumerate(feats):
        if feat is None or neutral is None:
            continue
        values = coefficients(feat, neutral)
        shapes[i] = [values[name] for name in LIVE_LINK_SHAPES]
        pose = head_pose(faces[i])
        # Live Link's head yaw turns to the performer's left when positive
        rotations[i, :3] = np.radians([-pose.yaw, pose.pitch, pose.roll])
    return shapes, rotations, found


def timecode(seconds: float, fps: float) -> str:
    """Live Link Face's `HH:MM:SS:FF.mmm` (frame number within the second, with fraction)."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    whole = int(secs)
    frame = (secs - whole) * fps
    return f"{int(hours):02d}:{int(minutes):02d}:{whole:02d}:{frame:06.3f}"


def write_live_link_csv(
    path: str | Path, times: Array, fps: float, shapes: Array, rotations: Array
) -> Path:
    header = ["Timecode", "BlendShapeCount", *LIVE_LINK_SHAPES, *ROTATIONS]
    lines = [",".join(header)]
    count = len(LIVE_LINK_SHAPES) + len(ROTATIONS)
    for t, row, rot in zip(times, shapes, rotations, strict=True):
        values = [f"{v:.6f}" for v in (*row, *rot)]
        lines.append(",".join([timecode(float(t), fps), str(count), *values]))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return Path(path)
