"""Preview before render: how long `POST /api/preview` takes, request to answer, on real
media (the studio's before / after; the issue asks for "seconds").

    python bench/preview.py [--json]

Figures: swap (astronaut onto carphone, at its own 176x144 and scaled to 720p) and mocap
(bikes, 640x272) on an early and a late frame; the first preview of each pays for loading
the processor's models in the server process, the later ones show a settings change.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import clips
from fastapi.testclient import TestClient

from vfxmocap.api.app import create_app
from vfxmocap.core.config import Settings
from vfxmocap.jobs.service import JobService
from vfxmocap.samples import sample_path


def upload(client: TestClient, path: Path) -> str:
    response = client.post("/api/uploads", files={"file": (path.name, path.read_bytes())})
    response.raise_for_status()
    upload_id: str = response.json()["id"]
    return upload_id


def timed(client: TestClient, workflow: str, inputs: dict[str, Any], frame: int) -> float:
    started = time.perf_counter()
    response = client.post(
        "/api/preview", json={"workflow": workflow, "inputs": inputs, "frame": frame}
    )
    response.raise_for_status()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hd = clips.write_clip(Path(tmp) / "hd.mp4", clips.talking_heads(1280, 720), 120)
        service = JobService(Settings(data_dir=Path(tmp) / "data", workers=1))
        with TestClient(create_app(service, start=False), base_url="http://127.0.0.1") as c:
            face = upload(c, sample_path("astronaut"))
            cases = {
                "swap 176x144": (
                    "swap",
                    {"sources": [face], "target": upload(c, sample_path("carphone"))},
                ),
                "swap 1280x720": ("swap", {"sources": [face], "target": upload(c, hd)}),
                "mocap 640x272": ("mocap", {"input": upload(c, sample_path("bikes"))}),
            }
            figures: dict[str, Any] = {}
            for name, (workflow, inputs) in cases.items():
                first = timed(c, workflow, inputs, 0)
                later = [timed(c, workflow, inputs, frame) for frame in (10, 60, 110)]
                figures[name] = {
                    "first_s": round(first, 3),
                    "later_median_s": round(statistics.median(later), 3),
                }
    if args.json:
        print(json.dumps(figures, indent=1))
        return
    for name, row in figures.items():
        print(f"{name:>15}: first {row['first_s']:.2f} s, then {row['later_median_s']:.2f} s")


if __name__ == "__main__":
    main()
