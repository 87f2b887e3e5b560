"""Keypoint exports: JSON (documented, versioned), CSV (wide) and NPZ.

JSON schema `vfxmocap.mocap/1`:
    {"schema": "vfxmocap.mocap/1", "source": str, "fps": float, "size": [w, h],
     "frames": N, "landmarks": [33 BlazePose names], "point_fields": [...], "filter": {...},
     "meta": {...}, "data": [{"frame": i, "time": s, "present": bool,
                              "pose": [[x_px, y_px, visibility, x_m, y_m, z_m, measured], ...]},
                             ...]}
World coordinates are metres, hip-centred, Y up, the performer facing +Z; `measured` is
false where a value was interpolated or held (a limb out of frame).
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

SCHEMA = "vfxmocap.mocap/1"
POINT_FIELDS = ["x_px", "y_px", "visibility", "x_m", "y_m", "z_m", "measured"]


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
        for i, t in enumerate(motion.times):
            points = np.concatenate(
                [motion.image[i], motion.visibility[i][:, None], motion.world[i]], axis=1
            )
            rows = [
                [*_round(p[:2], 2), round(float(p[2]), 3), *_round(p[3:], 4), not held]
                for p, held in zip(points, motion.held[i], strict=True)
            ]
            frame = {
                "frame": i,
                "time": round(float(t), 5),
                "present": bool(motion.present[i]),
                "pose": rows,
            }
            fh.write(("," if i else "") + json.dumps(frame, separators=(",", ":")))
        fh.write("]}")
    return Path(path)


def to_csv(motion: Motion, path: str | Path) -> Path:
    header = ["frame", "time", "present"]
    for name in POSE_LANDMARKS:
        header += [f"{name}_{f}" for f in ("x", "y", "visibility", "x_m", "y_m", "z_m")]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for i, t in enumerate(motion.times):
        row: list[Any] = [i, f"{t:.5f}", int(motion.present[i])]
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
            landmarks=np.array(POSE_LANDMARKS),
            **extra,
        )
    return Path(path)
