"""Expected speed per workflow, from the benchmarks in bench/ (720p, measured on a 2-core
x86 CPU). Other CPUs are estimated by core count; GPUs are not measured yet, so they get
the CPU figure as a floor."""

from __future__ import annotations

import os
from typing import Any

from vfxmocap.device import DeviceReport

# Idle-machine runs of 2026-12-02: the transcode baseline (decode + encode, 44-51 fps across
# the runs of bench/swap.py and bench/mocap.py), bench/mocap.py (end to end with BVH, JSON and
# the pose video, after its speed-up), bench/animate.py (a 720p driver, a 512x512 portrait);
# of 2026-12-03: bench/swap.py (one face, tracking a frame ahead; 0.44x a 68.4 fps baseline).
MEASURED_FPS_720P = {"transcode": 50.8, "swap": 30.0, "mocap": 18.5, "animate": 59.5}
MEASURED_CORES = 2


def expected_fps(device: DeviceReport) -> dict[str, Any]:
    cores = os.cpu_count() or MEASURED_CORES
    # The pipelines overlap decode, compute and encode in about three threads: more cores
    # than that help little.
    scale = min(cores, 4) / MEASURED_CORES
    return {
        "resolution": "1280x720",
        "basis": f"bench/ on {MEASURED_CORES} CPU cores, scaled to {cores} cores"
        + ("" if device.kind == "cpu" else f"; {device.kind} not measured, a floor"),
        "fps": {name: round(fps * scale, 1) for name, fps in MEASURED_FPS_720P.items()},
    }
