"""Motion capture workflow: a video, image or camera to BVH, JSON/CSV/NPZ, Live Link Face CSV,
an OpenPose control video, a person matte and a preview."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from vfxmocap.core.errors import InputError, InvalidParams
from vfxmocap.core.files import atomic_path
from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.media.image import Frame, read_image, write_image
from vfxmocap.media.pipeline import run_pipeline
from vfxmocap.media.sources import FrameSource, ImageSource, open_source
from vfxmocap.media.video import VideoWriter
from vfxmocap.mocap import blendshapes, exporters, openpose
from vfxmocap.mocap.bvh import animate, write_bvh
from vfxmocap.mocap.filters import FilterOptions, Motion, clean, concat
from vfxmocap.mocap.follow import PersonChoice
from vfxmocap.mocap.live import LivePose, PoseOptions
from vfxmocap.mocap.matte import MatteMode, composite, cover, fitted, soft_mask
from vfxmocap.mocap.plausible import repair
from vfxmocap.mocap.take import Take, capture, joined, split, vet
from vfxmocap.samples import sample_path
from vfxmocap.vision.pose import PoseFrame, PoseTracker
from vfxmocap.workflows.registry import LiveSpec, Resources, Workflow, WorkflowResult, register


class MocapInputs(BaseModel):
    input: str = Field(description="Video, image, image sequence, or camera:N.")
    output_dir: Path
    bvh: bool = True
    json_: bool = Field(True, alias="json")
    csv: bool = False
    npz: bool = False
    face_csv: bool = Field(False, description="Live Link Face CSV (turns on holistic).")
    pose_video: bool = Field(False, description="OpenPose control video (ControlNet style).")
    preview: bool = Field(False, description="The input with the skeleton drawn over it.")
    matte: MatteMode | None = None
    matte_background: str | None = Field(None, description="Image for matte=image.")
    holistic: bool = Field(False, description="Track hands and face too.")
    filter: FilterOptions = Field(default_factory=FilterOptions)
    max_frames: int | None = Field(None, ge=1, description="Stop a camera after N frames.")
    take: int | None = Field(
        None, ge=1, description="Only this take (takes are split at shot cuts, from 1)."
    )
    merge_takes: bool = Field(
        False, description="One set of outputs over the whole clip instead of one per take."
    )
    person: PersonChoice = Field(
        "largest",
        description="Whom to follow when several people are in view, chosen at each take's "
        "first frame with a person: largest, center, left, right, or N (the N-th from the "
        "left, from 1).",
    )

    model_config = {"populate_by_name": True}


class _Matte:
    """Writes the matte during the tracking pass (the only pass that sees the frames)."""

    def __init__(self, inputs: MocapInputs, source: FrameSource) -> None:
        self.mode = inputs.matte
        self.background = read_image(inputs.matte_background) if inputs.matte_background else None
        self.dir = inputs.output_dir / "matte"
        self.writer: VideoWriter | None = None
        self.count = 0
        if self.mode != "alpha":
            self.writer = VideoWriter(
                inputs.output_dir / f"matte_{self.mode}.mp4",
                fps=source.fps,
                audio_from=source.audio_path,
            )
        elif self.dir.exists() and any(self.dir.iterdir()):
            raise InvalidParams(f"{self.dir} is not empty; choose another --output-dir")

    def __call__(self, frame: Frame, pose: PoseFrame) -> None:
        assert pose.person_mask is not None  # the capture keeps every frame's mask
        alpha = soft_mask(fitted(pose.person_mask, frame))
        background = None
        if self.mode == "image" and self.background is not None:
            background = cover(self.background, (frame.shape[1], frame.shape[0]))
        out = composite(frame, alpha, self.mode or "mask", background)
        if self.writer is not None:
            self.writer.write(out)
        else:
            write_image(self.dir / f"{self.count:06d}.png", out)
        self.count += 1

    def finish(self, ok: bool) -> Path | None:
        if self.writer is not None:
            if ok:
                return self.writer.close()
            self.writer.abort()
            return None
        if not ok:
            for png in self.dir.glob("*.png"):
                png.unlink()
        return self.dir if ok else None


def _draw_preview(frame: Frame, coco: NDArray[np.float64]) -> Frame:
    return openpose.draw_body(frame.copy(), coco)


def _coco(motion: Motion, i: int) -> NDArray[np.float64]:
    vis = np.where(motion.held[i], 0.0, motion.visibility[i])
    return openpose.to_coco18(motion.image[i], vis)


# The control video is a control signal (flat colours on black, read back by ControlNet),
# not footage. At the same CRF on 720p control images, `ultrafast` takes 5.7 ms CPU a frame
# against `veryfast`'s 11.1 and is closer to the drawn pixels (mean error on the skeleton
# 6.1 against 8.2: no deblocking or psy tuning to blur the limbs); the file grows from 2.2
# to 8 KiB a frame, which a control signal can afford.
CONTROL_PRESET = "ultrafast"


def _draw_control(take: Take, motion: Motion, writer: VideoWriter, cancel: CancelToken) -> None:
    hands = (take.left_hand, take.right_hand)

    def draw(i: int) -> Frame:
        frame_hands = tuple(h[i] for h in hands if h is not None)
        face = take.face[i] if take.face is not None else None
        return openpose.control_image(take.size, _coco(motion, i), frame_hands, face)

    run_pipeline(range(take.frames), draw, writer.write, cancel=cancel)


class _Either:
    """The event of a token that is set when the user cancels or `stopped` is set."""

    def __init__(self, cancel: CancelToken, stopped: threading.Event) -> None:
        self.cancel, self.stopped = cancel, stopped

    def set(self) -> None:
        self.stopped.set()

    def is_set(self) -> bool:
        return self.cancel.cancelled or self.stopped.is_set()


class _ControlVideo:
    """The OpenPose control video, drawn from each shot's cleaned pose in a thread of its own
    while the capture goes on: a shot is cleaned (vetted, repaired, filtered: the same steps
    as the export, which need the whole shot) as soon as its last frame is tracked. Files go
    to hidden names in the output folder and are moved into place by `place` once the
    output sets are known; only landmarks wait in the queue, never frames."""

    def __init__(self, inputs: MocapInputs, cancel: CancelToken) -> None:
        self.inputs = inputs
        self.cancel = cancel
        self.shots: queue.Queue[Take | None] = queue.Queue()
        self.staged: dict[str, Path] = {}  # "all" (one file for the set) or "takeNN"
        self.writers: list[VideoWriter] = []
        self.error: BaseException | None = None
        self.stopped = threading.Event()
        # What the drawing checks between frames: the user's cancel, or `abort` (the job
        # failed otherwise), so the thread stops within a frame and never outlives abort.
        self.draw_cancel = CancelToken(_Either(cancel, self.stopped))
        self.thread = threading.Thread(target=self._work, name="vfx-control-video", daemon=True)
        self.thread.start()

    def __call__(self, shot: Take) -> None:
        if self.error is not None:  # a shot failed to draw: stop the capture with it
            raise self.error
        self.shots.put(shot)

    def _work(self) -> None:
        merged: VideoWriter | None = None
        number = 0
        try:
            while (shot := self.shots.get()) is not None:
                number += 1
                if self.stopped.is_set() or self.inputs.take not in (None, number):
                    continue
                take = repair(vet(shot))
                if not self.inputs.merge_takes and not take.present.any():
                    continue
                motion = clean(take, self.inputs.filter)
                if self.inputs.merge_takes:
                    if merged is None:
                        merged = self._writer("all", take.fps)
                    writer = merged
                else:
                    writer = self._writer(f"take{number:02d}", take.fps)
                _draw_control(take, motion, writer, self.draw_cancel)
                if writer is not merged:
                    self._close(writer)
            if merged is not None:
                self._close(merged)
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread
            self.error = exc

    def _writer(self, key: str, fps: float) -> VideoWriter:
        path = self.inputs.output_dir / f".pose_openpose.{key}.mp4"
        writer = VideoWriter(path, fps=fps, preset=CONTROL_PRESET)
        self.writers.append(writer)
        self.staged[key] = path
        return writer

    def _close(self, writer: VideoWriter) -> None:
        self.writers.remove(writer)
        writer.close()

    def finish(self) -> None:
        """Wait for the last shot; raise what the thread met."""
        self.shots.put(None)
        while self.thread.is_alive():
            self.thread.join(0.05)
            self.cancel.check()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Stop the drawing (within a frame) and leave no file behind."""
        self.stopped.set()
        self.shots.put(None)
        self.thread.join()  # only this thread touches the writers from here on
        for writer in list(self.writers):
            writer.abort()
        for path in self.staged.values():
            path.unlink(missing_ok=True)

    def place(self, rows: list[int], path: Path) -> Path:
        """Move the file drawn for the set of takes `rows` to `path`."""
        key = "all" if self.inputs.merge_takes else f"take{rows[0] + 1:02d}"
        staged = self.staged.pop(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, path)
        return path


class _LivePreview:
    """The preview of a camera, drawn as frames arrive (a camera cannot be read twice), from
    the tracker's own landmarks."""

    def __init__(self, path: Path, fps: float, then: Any) -> None:
        self.writer = VideoWriter(path, fps=fps)
        self.then = then

    def __call__(self, frame: Frame, pose: PoseFrame) -> None:
        self.writer.write(openpose.skeleton_over(frame, pose.image))
        if self.then is not None:
            self.then(frame, pose)


def _preview(
    inputs: MocapInputs, motion: Motion, fps: float, path: Path, cancel: CancelToken
) -> Path:
    """Draw the cleaned motion over a second read of the input: the frames the motion covers
    (every take's, or the one chosen), up to the last one tracked."""
    rows = {int(f): i for i, f in enumerate(motion.frame_index)}
    with (
        open_source(inputs.input) as source,
        VideoWriter(path, fps=fps, audio_from=source.audio_path) as writer,
    ):
        last = int(motion.frame_index[-1]) + 1
        frames = ((rows[i], f) for i, f in enumerate(itertools.islice(source, last)) if i in rows)
        run_pipeline(
            frames,
            lambda item: _draw_preview(item[1], _coco(motion, item[0])),
            writer.write,
            cancel=cancel,
        )
    return path


class _Written:
    """Outputs committed so far; all removed again if a later step fails, so a failed or
    cancelled run leaves no partial set of files behind."""

    def __init__(self) -> None:
        self.paths: dict[str, Path] = {}

    def add(self, name: str, path: Path | None) -> None:
        if path is not None:
            self.paths[name] = path

    def remove_all(self) -> None:
        for path in self.paths.values():
            if path.is_dir():
                for png in path.glob("*.png"):
                    png.unlink()
                with contextlib.suppress(OSError):  # not empty: files the user put there
                    path.rmdir()
            else:
                path.unlink(missing_ok=True)


def run(inputs: MocapInputs, progress: Progress, cancel: CancelToken) -> WorkflowResult:
    holistic = inputs.holistic or inputs.face_csv
    if inputs.matte == "image" and not inputs.matte_background:
        raise InvalidParams("matte=image needs a background image (--matte-background)")
    written = _Written()
    try:
        return _run(inputs, holistic, progress, cancel, written)
    except BaseException:
        written.remove_all()
        raise


def _run(
    inputs: MocapInputs,
    holistic: bool,
    progress: Progress,
    cancel: CancelToken,
    written: _Written,
) -> WorkflowResult:
    control = _ControlVideo(inputs, cancel) if inputs.pose_video else None
    try:
        raw, meta, live_preview = _track(inputs, holistic, progress, cancel, written, control)
        progress.stage("export", None)  # the control video's last shot may still be drawn
        if control is not None:
            control.finish()
        return _outputs(inputs, raw, meta, live_preview, cancel, written, control)
    finally:
        if control is not None:
            control.abort()  # whatever was not placed


def _outputs(
    inputs: MocapInputs,
    raw: Take,
    meta: dict[str, Any],
    live_preview: _LivePreview | None,
    cancel: CancelToken,
    written: _Written,
    control: _ControlVideo | None,
) -> WorkflowResult:
    takes = [repair(t) for t in split(vet(raw))]
    sets = _output_sets(inputs, takes)
    chosen = [i for rows in sets.values() for i in rows]
    if not any(takes[i].present.any() for i in chosen):
        raise InputError(
            f"{inputs.input}: no person found in any frame"
            + (f" of take {inputs.take}" if inputs.take else ""),
            hint="Use footage where the performer's body is visible.",
        )
    meta = {**meta, "cuts": raw.cuts, "detections_rejected": _rejected(raw, takes)}
    motions = [clean(t, inputs.filter) for t in takes]
    if inputs.face_csv:  # checked before anything is written
        _check_face(inputs, [takes[i] for i in chosen])
    files: dict[int, dict[str, Path]] = {}
    for name, rows in sets.items():
        cancel.check()
        group, group_motion = joined([takes[i] for i in rows]), concat([motions[i] for i in rows])
        written_now = _export(inputs, name, group, group_motion, meta, written)
        if control is not None:
            path = control.place(rows, inputs.output_dir / name / "pose_openpose.mp4")
            written_now["pose_video"] = path
            written.add(f"{name}_pose_video" if name else "pose_video", path)
        files.update({i: written_now for i in rows})
    cancel.check()
    listed = [inputs.take - 1] if inputs.take else range(len(takes))
    quality = [_quality(takes[i], motions[i], i + 1, files.get(i, {})) for i in listed]
    written.add("takes", _write_takes(inputs, raw, quality))
    if inputs.preview and live_preview is None:
        shown = concat(motions if inputs.take is None else [motions[inputs.take - 1]])
        out = inputs.output_dir / "preview.mp4"
        written.add("preview", _preview(inputs, shown, raw.fps, out, cancel))
    return WorkflowResult(dict(written.paths), _summary(raw, meta, quality, written))


def _track(
    inputs: MocapInputs,
    holistic: bool,
    progress: Progress,
    cancel: CancelToken,
    written: _Written,
    control: _ControlVideo | None,
) -> tuple[Take, dict[str, Any], _LivePreview | None]:
    """The capture pass: every frame tracked, segmented and checked for cuts, with the
    per-frame outputs (matte, a camera's preview) written as frames arrive."""
    with open_source(inputs.input) as source:
        if inputs.max_frames is not None:
            source.frame_count = min(source.frame_count or inputs.max_frames, inputs.max_frames)
        still = isinstance(source, ImageSource)
        live_preview = None
        matte = None
        tracker = PoseTracker(holistic=holistic, static=still)
        ok = False
        try:
            matte = _Matte(inputs, source) if inputs.matte else None
            hook: Any = matte
            if inputs.preview and source.live:
                live_preview = _LivePreview(inputs.output_dir / "preview.mp4", source.fps, matte)
                hook = live_preview
            take = capture(
                _limited(source, inputs.max_frames),
                tracker,
                progress=progress,
                cancel=cancel,
                on_frame=hook,
                person=inputs.person,
                keep_masks=matte is not None,
                on_shot=control,
            )
            ok = True
        finally:
            tracker.close()
            if matte is not None:
                written.add("matte", matte.finish(ok))
            if live_preview is not None:
                if ok:
                    written.add("preview", live_preview.writer.close())
                else:
                    live_preview.writer.abort()
    return take, _people(take), live_preview


def _people(take: Take) -> dict[str, Any]:
    """Who is followed, per take, when several people were in view (for the JSON's meta)."""
    most = max((f.people_in_view for f in take.followed), default=0)
    crowded = [
        f"take {i + 1}: {f.describe()}" for i, f in enumerate(take.followed) if f.people_in_view > 1
    ]
    if crowded:
        text = f"up to {most} people in view; followed " + "; ".join(crowded)
    else:
        text = "one person in view" if most else "nobody in view"
    return {"people": text, "several_people": most > 1}


def _output_sets(inputs: MocapInputs, takes: list[Take]) -> dict[str, list[int]]:
    """Which takes (by index) go into which set of outputs: "" is the output folder itself;
    per take, takes without a person get no files (takes.json still lists them)."""
    if inputs.take is not None:
        if inputs.take > len(takes):
            raise InvalidParams(
                f"--take {inputs.take}: {inputs.input} has {len(takes)} take(s)",
                hint="Takes are split at shot cuts; see takes.json for their frame ranges.",
            )
        return {"": [inputs.take - 1]}
    if inputs.merge_takes or len(takes) == 1:
        return {"": list(range(len(takes)))}
    return {f"take{i + 1:02d}": [i] for i, t in enumerate(takes) if t.present.any()}


def _rejected(raw: Take, takes: list[Take]) -> dict[str, int]:
    """Frames where the tracker fitted a skeleton that the checks turned down, by reason."""
    reasons = [r for t in takes for r in t.absent_reasons()]
    counts: dict[str, int] = {}
    for found, reason in zip(raw.present, reasons, strict=True):
        if found and reason:
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def _check_face(inputs: MocapInputs, takes: list[Take]) -> None:
    found = False
    for take in takes:
        assert take.face is not None
        found = found or bool(blendshapes.face_capture(take.face, take.times)[2].any())
    if not found:
        raise InputError(
            f"{inputs.input}: no face found for face capture",
            hint="Use footage where the performer's face is visible, or drop --face-csv.",
        )


def _export(
    inputs: MocapInputs,
    name: str,
    take: Take,
    motion: Motion,
    meta: dict[str, Any],
    written: _Written,
) -> dict[str, Path]:
    """One set of outputs (one take, or all merged) into `name`/ under the output folder."""
    out_dir = inputs.output_dir / name
    key = (lambda output: f"{name}_{output}") if name else (lambda output: output)
    files: dict[str, Path] = {}

    def add(output: str, path: Path) -> None:
        files[output] = path
        written.add(key(output), path)

    first, last = take.frame_range
    if inputs.json_:
        take_meta = {**meta, "frames": [first, last]}
        add(
            "json",
            exporters.to_json(
                motion,
                out_dir / "pose.json",
                source=take.source,
                size=take.size,
                fps=take.fps,
                meta=take_meta,
                filter_options=inputs.filter.model_dump(),
            ),
        )
    if inputs.csv:
        add("csv", exporters.to_csv(motion, out_dir / "pose.csv"))
    if inputs.npz:
        parts = (
            ("left_hand", take.left_hand),
            ("right_hand", take.right_hand),
            ("face", take.face),
        )
        extra = {k: v for k, v in parts if v is not None}
        add("npz", exporters.to_npz(motion, out_dir / "pose.npz", **extra))
    if inputs.bvh:
        add("bvh", write_bvh(animate(motion), out_dir / "motion.bvh"))
    if inputs.face_csv:
        assert take.face is not None
        shapes, rotations, _ = blendshapes.face_capture(take.face, take.times)
        path = out_dir / "face_livelink.csv"
        add(
            "face_csv",
            blendshapes.write_live_link_csv(path, take.times, take.fps, shapes, rotations),
        )
    return files


def _quality(take: Take, motion: Motion, number: int, files: dict[str, Path]) -> dict[str, Any]:
    """One take's entry in takes.json and the summary: range, coverage, repairs, jitter."""
    first, last = take.frame_range
    present = take.present
    assert take.repaired is not None
    return {
        "take": number,
        "first_frame": first,
        "last_frame": last,
        "frames": take.frames,
        "start_s": round(float(take.times[0]), 4),
        "duration_s": round(float(take.frames / take.fps), 4),
        "frames_with_person": int(present.sum()),
        "coverage": round(float(present.mean()), 4),
        "frames_repaired": int(take.repaired.sum()),
        "mean_confidence": round(float(motion.confidence[present].mean()), 3)
        if present.any()
        else 0.0,
        "jitter_px": _jitter(motion),
        "points_not_measured": int(motion.held[present].sum()),
        "person": take.followed[0].as_dict() if take.followed else None,
        "files": {k: str(v) for k, v in files.items()},
    }


def _jitter(motion: Motion) -> float:
    """Mean frame-to-frame acceleration of the measured points after cleaning, in pixels:
    what is left of the tracker's shake."""
    measured = ~motion.held
    steady = measured[2:] & measured[1:-1] & measured[:-2]
    if not steady.any():
        return 0.0
    accel = np.linalg.norm(motion.image[2:] - 2 * motion.image[1:-1] + motion.image[:-2], axis=2)
    return round(float(accel[steady].mean()), 3)


def _write_takes(inputs: MocapInputs, raw: Take, quality: list[dict[str, Any]]) -> Path:
    doc = {
        "source": raw.source,
        "fps": raw.fps,
        "frames": raw.frames,
        "cuts": raw.cuts,
        "layout": "merged" if inputs.merge_takes else ("one take" if inputs.take else "per take"),
        "takes": quality,
    }
    path = inputs.output_dir / "takes.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1))
    return path


def _summary(
    raw: Take, people: dict[str, Any], quality: list[dict[str, Any]], written: _Written
) -> dict[str, Any]:
    keep = ("take", "first_frame", "last_frame", "coverage", "frames_repaired", "jitter_px")
    summary: dict[str, Any] = {
        "frames": raw.frames,
        "people": people["people"],
        "frames_with_person": sum(q["frames_with_person"] for q in quality),
        "takes_found": len(raw.cuts) + 1,
        "takes": [
            {**{k: q[k] for k in keep}, "person": (q["person"] or {}).get("description")}
            for q in quality
        ],
        "frames_repaired": sum(q["frames_repaired"] for q in quality),
        "points_not_measured": sum(q["points_not_measured"] for q in quality),
    }
    return summary


def _limited(source: FrameSource, max_frames: int | None) -> FrameSource:
    if max_frames is None:
        return source
    original = source.timed

    def timed():  # type: ignore[no-untyped-def]
        for i, item in enumerate(original()):
            if i >= max_frames:
                return
            yield item

    source.timed = timed  # type: ignore[method-assign]
    return source


def demo(out_dir: Path) -> MocapInputs:
    return MocapInputs(
        input=str(sample_path("bikes")), output_dir=out_dir, csv=True, pose_video=True, preview=True
    )


def _pose_setup(inputs: MocapInputs) -> PoseOptions:
    """A preview draws the skeleton over the frame, as the `preview` output does."""
    return PoseOptions()


MOCAP = register(
    Workflow(
        name="mocap",
        summary="Track a performer in a video, image or camera; export BVH, keypoints, Live "
        "Link Face CSV, an OpenPose control video and mattes.",
        inputs=MocapInputs,
        outputs=(
            "bvh",
            "json",
            "csv",
            "npz",
            "face_csv",
            "pose_video",
            "matte",
            "preview",
            "takes",
        ),
        run=run,
        resources=Resources(
            device="cpu", memory_gb=0.8, models=("mediapipe-pose", "mediapipe-selfie-segmentation")
        ),
        demo=demo,
        files=("input", "matte_background"),
        place_outputs=lambda inputs, job_dir: {"output_dir": job_dir},
        live=LiveSpec("pose", LivePose(), frames="input", setup=_pose_setup),
    )
)
