"""Face swap quality on real media, judged by models that are not part of the swap.

    make bench-quality        (installs dlib-bin and face_recognition_models, then runs this)

Identity: dlib's ResNet face descriptor (face_recognition_models), an embedding trained
independently of anything vfxmocap runs. For each output face we report its distance to
the source face and to the original target face (same person is < 0.6 by dlib's
convention): a good swap moves faces toward the source and away from the target.

Temporal jitter: dlib's 68-point landmarks, found independently on each frame, of the
original and the swapped video; the mean frame-to-frame acceleration of those points
(pixels/frame^2) shows whether the swap adds flicker or wobble over what the video has.

Expression: dlib's mouth opening (inner-lip gap over mouth width) and eye opening (eye
aspect ratio) of each output face against the original target face's: the target's expression
must stay. Sharpness: the variance of the Laplacian inside the face, output over original.

Floor: the source photo itself turned by the engine's own mesh warp (its face, hair and
background following), with no target at all: to face the camera (`floor_frontalised`), and
on every measured frame to the target face's head pose (`floor_posed`). dlib's distance
grows with the difference in pose between two views of one person, and the output has the
target's pose: `floor_posed` is as near as the engine's own warp brings this photo in that
pose, and `above_floor` is what the swap adds over it (the target's hair, outline,
expression, light). `floor_posed_over_target` is that posed photo's distance to the source
over its distance to the original target: the ratio of a "swap" that kept nothing of the
target at all.

Each carphone pair's `goals` says which of issue #12's goals its figures meet (distance to
the source <= 0.45, at most 0.55 of the distance to the original target, jitter <= 1.15x
the original's). Side-by-side stills are written to docs/images/ (unless --no-stills).
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
from vfxmocap.processors.face_swap.warp import backdrop_mesh, warp_backdrop, warp_face
from vfxmocap.samples import sample_path
from vfxmocap.vision.faces import MediaPipeFaceAnalyzer
from vfxmocap.vision.landmarks import FLIP_YZ, face_axes, face_frame, head_pose
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


class Turned:
    """The source photo turned to a head pose by the engine's own mesh warp (its face, hair
    and background following, as the swap warps a source), with no target at all: the
    closest a warp of this photo gets to it in that pose. The photo is given room first
    (reflected, doubled) when it is an aligned crop, as the face detector needs."""

    def __init__(self, d: Dlib, analyzer: MediaPipeFaceAnalyzer, photo: Frame, reference: Frame):
        self.d = d
        room = photo
        if photo.shape[0] < 200:  # the 112 px aligned crop
            room = cv2.copyMakeBorder(photo, 56, 56, 56, 56, cv2.BORDER_REFLECT)
            room = cv2.resize(room, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        self.room = room
        self.landmarks = analyzer.analyze(room)[0].landmarks
        self.view = reference  # the photo as dlib is shown it
        self.reference = d.descriptor(reference, d.faces(reference)[0][0])

    def to(self, axes: np.ndarray) -> Frame:
        """The photo with its face turned to `axes` (`face_axes` rows, y up, z to the camera:
        the identity is facing the camera)."""
        landmarks = self.landmarks
        centre = landmarks[:, :3].astype(np.float64).mean(axis=0)
        posed = ((face_frame(landmarks) @ axes) * FLIP_YZ + centre).astype(np.float32)
        roi = (0, 0, self.room.shape[1], self.room.shape[0])
        behind = backdrop_mesh(landmarks, posed, roi)
        face, cover = warp_face(
            self.room, behind.sampled(landmarks), posed, roi, behind.raster, behind.face
        )
        turned = warp_backdrop(self.room, landmarks, posed, roi, behind)
        turned[cover > 127] = face[cover > 127]
        return turned

    def descriptor(self, image: Frame) -> np.ndarray | None:
        """dlib's descriptor of the largest face in `image`, None where it finds none."""
        found = self.d.faces(image)
        if not found:
            return None
        rect = max(found, key=lambda f: f[0].area())[0]
        return self.d.descriptor(image, rect)

    def distance(self, image: Frame) -> float | None:
        found = self.descriptor(image)
        return None if found is None else float(np.linalg.norm(found - self.reference))

    def floor(self) -> dict[str, float | None]:
        pose = head_pose(self.landmarks)
        as_given, frontal = self.distance(self.room), self.distance(self.to(np.eye(3)))
        return {
            "yaw": round(pose.yaw, 1),
            "pitch": round(pose.pitch, 1),
            "as_given_to_source": None if as_given is None else round(as_given, 3),
            "frontal_to_source": None if frontal is None else round(frontal, 3),
        }


def posed_floor(
    turned: Turned, analyzer: MediaPipeFaceAnalyzer, targets: list[Frame]
) -> list[tuple[float, float] | None]:
    """Per target frame, the source photo alone turned to the target face's head pose (the
    largest face's): its distance to the source photo, what the output's is to be judged
    against, and to the original target face (nothing of the target is in it, so a swap,
    which keeps the target's hair, ears and expression, reads nearer the target than this)."""
    floors: list[tuple[float, float] | None] = []
    for frame in targets:
        faces, target = analyzer.analyze(frame), turned.descriptor(frame)
        if not faces or target is None:
            floors.append(None)
            continue
        points = faces[0].landmarks[:, :3].astype(np.float64) * FLIP_YZ
        posed = turned.descriptor(turned.to(face_axes(points)))
        floors.append(
            None
            if posed is None
            else (
                float(np.linalg.norm(posed - turned.reference)),
                float(np.linalg.norm(posed - target)),
            )
        )
    return floors


def openness(points: np.ndarray) -> tuple[float, float]:
    """(mouth, eyes) opening of dlib's 68 points: inner-lip gap and eye height over width."""
    mouth = np.linalg.norm(points[66] - points[62]) / np.linalg.norm(points[54] - points[48])
    eyes = [
        (np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4]))
        / (2 * np.linalg.norm(p[0] - p[3]))
        for p in (points[36:42], points[42:48])
    ]
    return float(mouth), float(np.mean(eyes))


def sharpness(image: Frame, rect: Any) -> float:
    """Variance of the Laplacian of the grey face box: how much fine detail there is."""
    y0, y1 = max(0, rect.top()), rect.bottom()
    x0, x1 = max(0, rect.left()), rect.right()
    gray = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def expression(d: Dlib, target: Frame, output: Frame) -> dict[str, float] | None:
    """Mouth and eye opening of the output face minus the target's, and the sharpness ratio."""
    before, after = d.faces(target), d.faces(output)
    if not before or not after:
        return None
    rect, points = max(before, key=lambda f: f[0].area())
    out_rect = _nearest([r for r, _ in after], rect)
    out_points = next(p for r, p in after if r == out_rect)
    (m0, e0), (m1, e1) = openness(points), openness(out_points)
    return {
        "mouth_open_target": m0,
        "mouth_open_output": m1,
        "mouth_open_error": abs(m1 - m0),
        "eye_open_error": abs(e1 - e0),
        "sharpness_ratio": sharpness(output, rect) / max(sharpness(target, rect), 1e-6),
    }


# issue #12's goals on carphone 720p: distance to the source, its ratio to the distance to
# the original target, and landmark jitter against the original clip's
GOALS = {"output_to_source": 0.45, "source_over_target": 0.55, "jitter_over_original": 1.15}


def goals(row: dict[str, Any]) -> dict[str, bool]:
    """Which of the goals a pair's figures meet (jitter only when it was measured)."""
    figures = {k: row[k] for k in ("output_to_source", "source_over_target")}
    if "jitter_swapped_px" in row:
        figures["jitter_over_original"] = row["jitter_swapped_px"] / row["jitter_original_px"]
    return {name: bool(value <= GOALS[name]) for name, value in figures.items()}


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


def _mean(rows: list[dict[str, float]], keys: list[str]) -> dict[str, float]:
    return {k: round(float(np.mean([r[k] for r in rows])), 3) for k in keys}


def video_pair(
    d: Dlib,
    source: Path,
    turned: Turned,
    analyzer: MediaPipeFaceAnalyzer,
    clip: Path,
    out: Path,
    args: argparse.Namespace,
) -> tuple[dict[str, Any], list[Frame], list[Frame]]:
    """Swap `source` onto the clip and measure identity (against the source photo turned to
    each frame's pose, too), expression, sharpness and jitter."""
    get_workflow("swap")(
        {"sources": [str(source)], "target": str(clip), "output": out, "options": args.options}
    )
    before, after = list(VideoReader(clip)), list(VideoReader(out))
    pairs = list(zip(before[:: args.step], after[:: args.step], strict=True))
    measured = [
        (i, f)
        for i, f in zip(
            (identity(d, turned.view, b, a) for b, a in pairs),
            posed_floor(turned, analyzer, [b for b, _ in pairs]),
            strict=True,
        )
        if i["faces"]
    ]
    ids = [i for i, _ in measured]
    expr = [e for e in (expression(d, b, a) for b, a in pairs) if e is not None]
    report: dict[str, Any] = {
        "frames_measured": len(ids),
        **_mean(ids, ["target_to_source", "output_to_source", "output_to_target"]),
        **_mean(expr, list(expr[0]) if expr else []),
    }
    report["source_over_target"] = round(report["output_to_source"] / report["output_to_target"], 3)
    floored = [(i["output_to_source"], f) for i, f in measured if f is not None]
    if floored:
        to_source = float(np.mean([f[0] for _, f in floored]))
        report["floor_posed"] = round(to_source, 3)
        report["above_floor"] = round(float(np.mean([o - f[0] for o, f in floored])), 3)
        # the photo's own ratio in the target's pose: a swap keeping anything of the target
        # (its hair, ears, expression) reads above it
        to_target = float(np.mean([f[1] for _, f in floored]))
        report["floor_posed_over_target"] = round(to_source / to_target, 3)
    if args.jitter:
        (jit_before, n_before), (jit_after, n_after) = jitter(d, before), jitter(d, after)
        report["jitter_original_px"] = round(jit_before, 3)
        report["jitter_swapped_px"] = round(jit_after, 3)
        report["jitter_triples"] = [n_before, n_after]
    return report, before, after


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--step", type=int, default=10, help="measure identity every N frames")
    parser.add_argument("--pairs", default="hanks_t1,astronaut,hanks")
    parser.add_argument("--no-jitter", dest="jitter", action="store_false")
    parser.add_argument("--no-stills", dest="stills", action="store_false")
    parser.add_argument("--options", type=json.loads, default={}, help="swap options, JSON")
    args = parser.parse_args()
    pairs = args.pairs.split(",")
    d = Dlib()
    report: dict[str, Any] = {}
    astronaut = read_image(sample_path("astronaut"))
    hanks_path = sample_path("tom_hanks")
    hanks = read_image(hanks_path)
    hanks_view = cv2.resize(hanks, (224, 224))  # dlib's detector needs a larger face
    t1 = read_image(sample_path("t1"))
    analyzer = MediaPipeFaceAnalyzer(tiles=True)
    turned = {"astronaut": Turned(d, analyzer, astronaut, astronaut)}
    turned["hanks"] = Turned(d, analyzer, hanks, hanks_view)
    report["floor_frontalised"] = {name: t.floor() for name, t in turned.items()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "hanks_t1" in pairs:  # Tom Hanks onto the six faces of t1
            swap = get_workflow("swap")
            swap(
                {
                    "sources": [str(hanks_path)],
                    "target": str(sample_path("t1")),
                    "output": work / "t1.png",
                    "options": args.options,
                }
            )
            out = read_image(work / "t1.png")
            report["hanks_to_t1"] = identity(d, hanks_view, t1, out)
            if args.stills:
                still("swap_hanks_t1", hanks, t1, out, height=360)
        clip = clips.write_clip(
            work / "carphone720.mp4", clips.talking_heads(1280, 720), args.frames
        )
        sources = {"astronaut": sample_path("astronaut"), "hanks": hanks_path}
        for name in ("astronaut", "hanks"):
            if name not in pairs:
                continue
            row, before, after = video_pair(
                d, sources[name], turned[name], analyzer, clip, work / f"{name}.mp4", args
            )
            report[f"{name}_to_carphone_720p"] = row | {"goals": goals(row)}
            mid = len(before) // 2
            if args.stills:
                photo = astronaut if name == "astronaut" else hanks
                crop = (slice(None), slice(200, 1080))
                still(f"swap_{name}_carphone", photo, before[mid][crop], after[mid][crop])
    analyzer.close()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
