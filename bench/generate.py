"""Generation overhead: our render path against bare diffusers on the same tiny pipeline.

Builds the tests' tiny random-weight pipelines (Wan 2.1 T2V, LTX-Video) from configs, then
runs each the bare way (`Pipeline.from_pretrained` + `pipe(...)`) and our way (loader,
planner, the step callback with progress and cancel checks, uint8 frames) with the same
seed, alternating, and prints the median times, their ratio, whether the frames are
identical, and the load time cold (first job) against warm (second job, from the model
cache). Random weights: this measures overhead, not picture quality.

    python bench/generate.py [--steps 10] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' tiny pipelines

from tests.tiny_pipelines import build
from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.device import resolve_device
from vfxmocap.generation.families import Request
from vfxmocap.generation.loader import load, resolve
from vfxmocap.generation.planner import plan
from vfxmocap.generation.render import render
from vfxmocap.models.cache import model_cache

# (tiny pipeline, frames, side): LTX's 32x spatial VAE needs a larger side than Wan's 16.
CASES = (("wan-t2v", 17, 64), ("ltx", 17, 128))


def bare(folder: Path, request: Request, class_name: str) -> tuple[Any, list[np.ndarray]]:
    import diffusers
    import torch

    pipe = getattr(diffusers, class_name).from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    def call() -> list[np.ndarray]:
        out = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative,
            num_frames=request.frames,
            width=request.width,
            height=request.height,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            generator=torch.Generator("cpu").manual_seed(request.seed),
            output_type="np",
        )
        return [(np.clip(f, 0, 1) * 255).round().astype(np.uint8) for f in out.frames[0]]

    return call, call()


def ours(folder: Path, request: Request) -> tuple[Any, list[np.ndarray], dict[str, float]]:
    model_cache().clear()
    ref = resolve(str(folder))
    placed = plan(resolve_device(), ref.figures, ref.family)
    cold = load(ref, ref.class_name, placed)
    warm = load(ref, ref.class_name, placed)

    def call() -> list[np.ndarray]:
        pipe = load(ref, ref.class_name, placed).pipe
        return render(pipe, ref.family, request, Progress(), CancelToken(), ref.class_name).frames

    return call, call(), {"cold_load_s": cold.seconds, "warm_load_s": warm.seconds}


def timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def measure(name: str, frames: int, side: int, steps: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = build(name, Path(tmp) / name)
        ref = resolve(str(folder))
        request = Request(
            prompt="a red cat runs in the snow",
            negative="",
            frames=frames,
            width=side,
            height=side,
            steps=steps,
            guidance=ref.family.default("guidance"),
            seed=42,
        )
        bare_call, bare_frames = bare(folder, request, ref.class_name)
        our_call, our_frames, loads = ours(folder, request)
        bare_s, our_s = [], []
        for _ in range(repeats):  # alternate, so drift on a shared machine hits both
            bare_s.append(timed(bare_call))
            our_s.append(timed(our_call))
    identical = len(bare_frames) == len(our_frames) and all(
        np.array_equal(a, b) for a, b in zip(bare_frames, our_frames, strict=True)
    )
    return {
        "pipeline": name,
        "video": f"{side}x{side}x{frames}",
        "steps": steps,
        "bare_s": round(statistics.median(bare_s), 4),
        "ours_s": round(statistics.median(our_s), 4),
        "ratio": round(statistics.median(our_s) / statistics.median(bare_s), 3),
        "identical_frames": identical,
        "cold_load_s": round(loads["cold_load_s"], 4),
        "warm_load_s": round(loads["warm_load_s"], 6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import diffusers
    import torch
    import transformers

    torch.set_num_threads(1)
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    rows = [measure(n, f, s, args.steps, args.repeats) for n, f, s in CASES]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print(
            f"{row['pipeline']:8s} {row['video']:>11s} {row['steps']} steps: bare "
            f"{row['bare_s']:.3f} s, ours {row['ours_s']:.3f} s, ratio {row['ratio']:.3f}x, "
            f"identical frames {row['identical_frames']}; load cold {row['cold_load_s']:.3f} s, "
            f"warm {row['warm_load_s'] * 1000:.3f} ms"
        )


if __name__ == "__main__":
    main()
