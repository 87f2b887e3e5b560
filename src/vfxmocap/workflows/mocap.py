"""Motion capture workflow: a video, image or camera to BVH, JSON/CSV/NPZ, Live Link Face CSV,
an OpenPose control video, a person matte and a preview."""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from vfxmocap.core.errors import InputError, InvalidParams
from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.media.image import Frame, read_image, write_image
from vfxmocap.media.pipeline import run_pipeline
from vfxmocap.media.sources import FrameSource, ImageSource, open_source
from vfxmocap.media.video import VideoWriter
from vfxmocap.mocap import blendshapes, exporters, openpose
from vfxmocap.mocap.bvh import animate, write_bvh
from vfxmocap.mocap.filters import FilterOptions, Motion, clean
from vfxmocap.mocap.live import LivePose
from vfxmocap.mocap.matte import MatteMode, composite, cover, soft_mask
from vfxmocap.mocap.take import Take, capture
from vfxmocap.samples import sample_path
from vfxmocap.vision.faces import MediaPipeFaceAnalyzer
from vfxmocap.vision.pose import PoseFrame, PoseTracker
from vfxmocap.vision.segmentation import PersonSegmenter
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

    model_config = {"populate_by_name": True}


class _Matte:
    """Writes the matte during the tracking pass (the only pass that sees the frames)."""

    def __init__(self, inputs: MocapInputs, source: FrameSource) -> None:
        self.mode = inputs.matte
        self.segmenter = PersonSegmenter()
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
        del pose
        alpha = soft_mask(self.segmenter(frame))
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
        self.segmenter.close()
        if self.writer is not None:
            if ok:
                return self.writer.close()
            self.writer.abort()
            return None
        if not ok:
            for png in self.dir.glob("*.png"):
                png.unlink()
        return self.dir if ok else None


class _People:
    """Counts faces now and then: MediaPipe Pose follows one person, and the output says so
    when several were in view."""

    every = 25

    def __init__(self, then: Any) -> None:
        self.analyzer = MediaPipeFaceAnalyzer(tiles=False)
        self.then = then
        self.frame = 0
        self.most = 0
        self.crowded: list[int] = []

    def __call__(self, frame: Frame, pose: PoseFrame) -> None:
        if self.frame % self.every == 0:
            count = len(self.analyzer.detect(frame))
            self.most = max(self.most, count)
            if count > 1:
                self.crowded.append(self.frame)
        self.frame += 1
        if self.then is not None:
            self.then(frame, pose)

    def meta(self) -> dict[str, Any]:
        self.analyzer.close()
        if self.most > 1:
            return {
                "people": f"up to {self.most} people in view (faces counted every "
                f"{self.every} frames, e.g. frames {self.crowded[:5]}); the most "
                "prominent person is followed",
                "several_people": True,
            }
        return {"people": "one person in view", "several_people": False}


def _draw_preview(frame: Frame, coco: NDArray[np.float64]) -> Frame:
    return openpose.draw_body(frame.copy(), coco)


def _coco(motion: Motion, i: int) -> NDArray[np.float64]:
    vis = np.where(motion.held[i], 0.0, motion.visibility[i])
    return openpose.to_coco18(motion.image[i], vis)


def _pose_video(take: Take, motion: Motion, path: Path, cancel: CancelToken) -> Path:
    hands = (take.left_hand, take.right_hand)

    def draw(i: int) -> Frame:
        frame_hands = tuple(h[i] for h in hands if h is not None)
        face = take.face[i] if take.face is not None else None
        return openpose.control_image(take.size, _coco(motion, i), frame_hands, face)

    with VideoWriter(path, fps=take.fps) as writer:
        run_pipeline(range(take.frames), draw, writer.write, cancel=cancel)
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
    """Draw the cleaned motion over a second read of the input, stopping at the last frame
    that was tracked."""
    with (
        open_source(inputs.input) as source,
        VideoWriter(path, fps=fps, audio_from=source.audio_path) as writer,
    ):
        frames = enumerate(itertools.islice(source, len(motion.times)))
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
    out_dir = inputs.output_dir
    with open_source(inputs.input) as source:
        if inputs.max_frames is not None:
            source.frame_count = min(source.frame_count or inputs.max_frames, inputs.max_frames)
        still = isinstance(source, ImageSource)
        live_preview = None
        matte = people = None
        tracker = PoseTracker(holistic=holistic, static=still)
        ok = False
        try:
            matte = _Matte(inputs, source) if inputs.matte else None
            hook: Any = matte
            if inputs.preview and source.live:
                live_preview = _LivePreview(out_dir / "preview.mp4", source.fps, matte)
                hook = live_preview
            people = _People(hook)
            take = capture(
                _limited(source, inputs.max_frames),
                tracker,
                progress=progress,
                cancel=cancel,
                on_frame=people,
            )
            if not take.present.any():
                raise InputError(
                    f"{inputs.input}: no person found in any frame",
                    hint="Use footage where the performer's body is visible.",
                )
            ok = True
        finally:
            tracker.close()
            meta = people.meta() if people is not None else {}  # also releases its detector
            if matte is not None:
                written.add("matte", matte.finish(ok))
            if live_preview is not None:
                if ok:
                    written.add("preview", live_preview.writer.close())
                else:
                    live_preview.writer.abort()
    progress.stage("export", None)
    motion = clean(take, inputs.filter)
    face = None
    if inputs.face_csv:  # checked before anything else is written
        assert take.face is not None
        shapes, rotations, found = blendshapes.face_capture(take.face, take.times)
        if not found.any():
            raise InputError(
                f"{inputs.input}: no face found for face capture",
                hint="Use footage where the performer's face is visible, or drop --face-csv.",
            )
        face = shapes, rotations
    meta = {**meta, "frames_without_person": int((~take.present).sum())}
    if inputs.json_:
        written.add(
            "json",
            exporters.to_json(
                motion,
                out_dir / "pose.json",
                source=take.source,
                size=take.size,
                fps=take.fps,
                meta=meta,
                filter_options=inputs.filter.model_dump(),
            ),
        )
    if inputs.csv:
        written.add("csv", exporters.to_csv(motion, out_dir / "pose.csv"))
    if inputs.npz:
        extra = {
            k: v
            for k, v in (
                ("left_hand", take.left_hand),
                ("right_hand", take.right_hand),
                ("face", take.face),
            )
            if v is not None
        }
        written.add("npz", exporters.to_npz(motion, out_dir / "pose.npz", **extra))
    summary: dict[str, Any] = {
        "frames": take.frames,
        "frames_with_person": int(take.present.sum()),
        "points_not_measured": int(motion.held[take.present].sum()),
    }
    if inputs.bvh:
        animation = animate(motion)
        written.add("bvh", write_bvh(animation, out_dir / "motion.bvh"))
        summary["foot_contacts"] = int(animation.contacts.any(axis=1).sum())
    if face is not None:
        written.add(
            "face_csv",
            blendshapes.write_live_link_csv(
                out_dir / "face_livelink.csv", take.times, take.fps, *face
            ),
        )
    if inputs.pose_video:
        written.add("pose_video", _pose_video(take, motion, out_dir / "pose_openpose.mp4", cancel))
    if inputs.preview and live_preview is None:
        written.add("preview", _preview(inputs, motion, take.fps, out_dir / "preview.mp4", cancel))
    return WorkflowResult(dict(written.paths), summary)


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


MOCAP = register(
    Workflow(
        name="mocap",
        summary="Track a performer in a video, image or camera; export BVH, keypoints, Live "
        "Link Face CSV, an OpenPose control video and mattes.",
        inputs=MocapInputs,
        outputs=("bvh", "json", "csv", "npz", "face_csv", "pose_video", "matte", "preview"),
        run=run,
        resources=Resources(
            device="cpu", memory_gb=0.8, models=("mediapipe-pose", "mediapipe-selfie-segmentation")
        ),
        demo=demo,
        files=("input", "matte_background"),
        place_outputs=lambda inputs, job_dir: {"output_dir": job_dir},
        live=LiveSpec("pose", LivePose()),
    )
)
