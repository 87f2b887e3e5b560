"""Face swap quality on real media, judged by models that are not part of the swap.

    make bench-quality        (installs dlib-bin and face_recognition_models, then runs this)

Identity: dlib's ResNet face descriptor (face_recognition_models), an embedding trained
independently of anything vfxmocap runs. For each output face we report its distance to
the source face and to the original target face (same person is < 0.6 by dlib's
convention): a good swap moves faces toward the source and away from the target.

Temporal jitter: dlib's 68-point landmarks, found independently on each frame, of the
original and the swapped video; the mean frame-to-frame acceleration of those points
(pixels/frame^2) shows whether the swap adds flicker or wobble over what the video has.

Side-by-side stills are written to docs/images/.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import clips
import cv2
import dlib
import numpy as np

from vfxmocap.media.image import Frame, read_image, write_image
from vfxmocap.media.video import VideoReader
from vfxmocap.samples import sample_path
from vfxmocap.workflows import get_workflow

DOCS = Path(__file__).resolve().parent.parent / "docs" / "images"


def _model(name: str) -> str:
    spec = importlib.util.find_spec("face_recognition_models")  # its __init__ needs setuptools
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install dlib-bin face_recognition_models  (or: make bench-quality)")
    return str(Path(next(iter(spec.submodule_search_locations))) / "models" / name)


class Dlib:
    def __init__(self) -> None:
        self.detector = dlib.get_frontal_face_detector()
        self.shapes = dlib.shape_predictor(_model("shape_predictor_68_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(
            _model("dlib_face_recognition_resnet_model_v1.dat")
        )

    def faces(self, image: Frame, upsample: int = 1) -> list[tuple[Any, np.ndarray]]:
        """(rectangle, 68 landmarks) of every face dlib's own detector finds."""
        found = []
        for rect in self.detector(image, upsample):
            shape = self.shapes(image, rect)
            found.append((rect, np.array([(p.x, p.y) for p in shape.parts()], np.float64)))
        return found

    def descriptor(self, image: Frame, rect: Any) -> np.ndarray:
        return np.array(self.encoder.compute_face_descriptor(image, self.shapes(image, rect)))


def _nearest(rects: list[Any], rect: Any) -> Any:
    cx, cy = rect.center().x, rect.center().y
    return min(rects, key=lambda r: (r.center().x - cx) ** 2 + (r.center().y - cy) ** 2)


def identity(d: Dlib, source: Frame, target: Frame, output: Frame) -> dict[str, Any]:
    src_rect = d.faces(source)[0][0]
    src = d.descriptor(source, src_rect)
    rows = []
    out_rects = [r for r, _ in d.faces(output)]
    for rect, _ in d.faces(target):
        if not out_rects:
            break
        orig = d.descriptor(target, rect)
        swapped = d.descriptor(output, _nearest(out_rects, rect))
        rows.append(
            {
                "target_to_source": float(np.linalg.norm(orig - src)),
                "output_to_source": float(np.linalg.norm(swapped - src)),
                "output_to_target": float(np.linalg.norm(swapped - orig)),
            }
        )
    return (
        {"faces": len(rows), **{k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0]}}
        if rows
        else {"faces": 0}
    )


def jitter(d: Dlib, frames: list[Frame]) -> tuple[float, int]:
    """Mean |second difference| of dlib's 68 points over runs of frames where dlib finds the
    face (its frontal detector misses some turned frames), and how many triples counted."""
    accel: list[float] = []
    run: list[np.ndarray] = []
    for frame in frames:
        found = d.faces(frame, upsample=0)
        if not found:
            run = []
            continue
        run.append(max(found, key=lambda f: f[0].area())[1])
        if len(run) >= 3:
            accel.append(float(np.abs(run[-1] - 2 * run[-2] + run[-3]).mean()))
    return (float(np.mean(accel)) if accel else float("nan")), len(accel)


def still(name: str, source: Frame, target: Frame, output: Frame, height: int = 300) -> Path:
    tiles = [
        cv2.resize(
            im, (int(im.shape[1] * height / im.shape[0]), height), interpolation=cv2.INTER_AREA
        )
        for im in (source, target, output)
    ]
    path = DOCS / f"{name}.jpg"
    write_image(path, np.hstack(tiles), quality=88)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    args = parser.parse_args()
    d = Dlib()
    swap = get_workflow("swap")
    report: dict[str, Any] = {}
    astronaut = read_image(sample_path("astronaut"))
    hanks_path = sample_path("tom_hanks")
    hanks = read_image(hanks_path)
    t1 = read_image(sample_path("t1"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # Tom Hanks onto the six faces of t1
        swap(
            {
                "sources": [str(hanks_path)],
                "target": str(sample_path("t1")),
                "output": work / "t1.png",
            }
        )
        out = read_image(work / "t1.png")
        report["hanks_to_t1"] = identity(d, cv2.resize(hanks, (224, 224)), t1, out)
        still("swap_hanks_t1", hanks, t1, out, height=360)
        # astronaut onto carphone at 720p
        clip = clips.write_clip(
            work / "carphone720.mp4", clips.talking_heads(1280, 720), args.frames
        )
        swap(
            {
                "sources": [str(sample_path("astronaut"))],
                "target": str(clip),
                "output": work / "out.mp4",
            }
        )
        before = list(VideoReader(clip))
        after = list(VideoReader(work / "out.mp4"))
        ids = [identity(d, astronaut, b, a) for b, a in zip(before[::10], after[::10], strict=True)]
        ids = [i for i in ids if i["faces"]]
        (jit_before, n_before), (jit_after, n_after) = jitter(d, before), jitter(d, after)
        report["astronaut_to_carphone_720p"] = {
            "frames_measured": len(ids),
            **{
                k: round(float(np.mean([i[k] for i in ids])), 3)
                for k in ("target_to_source", "output_to_source", "output_to_target")
            },
            "jitter_original_px": round(jit_before, 3),
            "jitter_swapped_px": round(jit_after, 3),
            "jitter_triples": [n_before, n_after],
        }
        mid = len(before) // 2
        still(
            "swap_astronaut_carphone", astronaut, before[mid][:, 200:1080], after[mid][:, 200:1080]
        )
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
