"""Keypoint exports: JSON (documented, versioned), CSV (wide) and NPZ.

JSON schema `vfxmocap.mocap/2`:
    {"schema": "vfxmocap.mocap/2", "source": str, "fps": float, "size": [w, h],
     "frames": N, "landmarks": [33 BlazePose names], "point_fields": [...], "filter": {...},
     "meta": {...}, "data": [{"frame": i, "time": s, "present": bool, "confidence": c,
                              "reason": str (only where absent),
                              "pose": [[x_px, y_px, visibility, x_m, y_m, z_m, measured,
                                        confidence], ...]}, ...]}
`frame` is the source's frame number and `time` its timestamp (a take of a longer clip keeps
them). World coordinates are metres, hip-centred, Y up, the performer facing +Z; `measured`
is false where a value was interpolated or held (a limb out of frame). A frame's confidence
is its landmarks' mean visibility times their agreement with the person mask (0 where
absent); a point's is its visibility where measured, 0 where filled.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vfxmocap.core.files import atomic_path
from vfxmocap.mocap.filters import Motion
from vfxmocap.vision.pose import POSE_LANDMARKS

SCHEMA = "vfxmocap.mocap/2"
POINT_FIELDS = ["x_px", "y_px", "visibility", "x_m", "y_m", "z_m", "measured", "confidence"]


def _round(values: NDArray[Any], digits: int) -> list[Any]:
    rounded: list[Any] = np.round(values, digits).tolist()
    return rounded


def to_json(
    motion: Motion,
    path: str | Path,
    *,
    source: str,
    size: tuple[int, int],
    fps: float,
    meta: dict[str, Any],
    filter_options: dict[str, Any],
) -> Path:
    """Written frame by frame, so memory does not grow with the take's length."""
    head = {
        "schema": SCHEMA,
        "source": source,
        "fps": fps,
        "size": list(size),
        "frames": len(motion.times),
        "landmarks": list(POSE_LANDMARKS),
        "point_fields": POINT_FIELDS,
        "filter": filter_options,
        "meta": meta,
    }
    with atomic_path(path) as tmp, tmp.open("w") as fh:
        fh.write(json.dumps(head, separators=(",", ":"))[:-1] + ',"data":[')
        joint_confidence = motion.joint_confidence
        for i, t in enumerate(motion.times):
            points = np.concatenate(
                [motion.image[i], motion.visibility[i][:, None], motion.world[i]], axis=1
            )
            rows = [
                [*_round(p[:2], 2), round(float(p[2]), 3), *_round(p[3:], 4), not held, conf]
                for p, held, conf in zip(
                    points, motion.held[i], _round(joint_confidence[i], 3), strict=True
                )
            ]
            frame: dict[str, Any] = {
                "frame": int(motion.frame_index[i]),
                "time": round(float(t), 5),
                "present": bool(motion.present[i]),
                "confidence": round(float(motion.confidence[i]), 3),
            }
            if motion.reasons[i]:
                frame["reason"] = motion.reasons[i]
            frame["pose"] = rows
            fh.write(("," if i else "") + json.dumps(frame, separators=(",", ":")))
        fh.write("]}")
    return Path(path)


def to_csv(motion: Motion, path: str | Path) -> Path:
    """One row a frame (source frame numbers); per landmark x, y, visibility, world x, y, z
    and confidence."""
    header = ["frame", "time", "present", "confidence", "reason"]
    for name in POSE_LANDMARKS:
        fields = ("x", "y", "visibility", "x_m", "y_m", "z_m", "confidence")
        header += [f"{name}_{f}" for f in fields]
    joint_confidence = motion.joint_confidence
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for i, t in enumerate(motion.times):
        row: list[Any] = [
            int(motion.frame_index[i]),
            f"{t:.5f}",
            int(motion.present[i]),
            f"{motion.confidence[i]:.3f}",
            motion.reasons[i],
        ]
        for j in range(len(POSE_LANDMARKS)):
            x, y = motion.image[i, j]
            wx, wy, wz = motion.world[i, j]
            row += [
                f"{x:.2f}",
                f"{y:.2f}",
                f"{motion.visibility[i, j]:.3f}",
                f"{wx:.4f}",
                f"{wy:.4f}",
                f"{wz:.4f}",
                f"{joint_confidence[i, j]:.3f}",
            ]
        writer.writerow(row)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
    return Path(path)


def to_npz(motion: Motion, path: str | Path, **extra: NDArray[Any]) -> Path:
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.savez_compressed(
            fh,
            times=motion.times,
            image=motion.image,
            world=motion.world,
            visibility=motion.visibility,
            held=motion.held,
            present=motion.present,
            frame_index=motion.frame_index,
            confidence=motion.confidence,
            joint_confidence=motion.joint_confidence,
            reason=np.array(motion.reasons),
            landmarks=np.array(POSE_LANDMARKS),
            **extra,
        )
    return Path(path)
