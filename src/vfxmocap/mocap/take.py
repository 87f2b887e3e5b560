"""A take: one person's landmarks over a clip, held as arrays (small: 33 points a frame),
captured by streaming frames through the pose tracker.

The capture pass also finds shot cuts (the tracker forgets its region at each, so no track
crosses one) and scores each frame's skeleton against a person segmentation; `vet` then
keeps only the frames where a person is really there, and `split` cuts the clip into takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vfxmocap.core.progress import CancelToken, Progress
from vfxmocap.media.image import Frame, shrunk, thumbnail_jpeg
from vfxmocap.media.pipeline import run_pipeline
from vfxmocap.media.sources import FrameSource
from vfxmocap.mocap import openpose
from vfxmocap.mocap.cuts import CutDetector
from vfxmocap.mocap.follow import Followed, Follower, PersonChoice
from vfxmocap.mocap.presence import LazyMask, PresenceOptions, judge
from vfxmocap.vision.pose import NUM_FACE, NUM_HAND, NUM_POSE, PoseFrame, PoseTracker
from vfxmocap.vision.segmentation import PersonSegmenter

Array = NDArray[np.float32]

# Width of the one shrunk copy of each frame that the segmentation and the cut detector
# share: the selfie model sees 256x144 whatever it is given, so a 720p frame costs it twice
# a 320-wide one and gives the same mask (the person mask stays at this size).
CHECK_WIDTH = 320


@dataclass
class Take:
    times: NDArray[np.float64]  # seconds from the source's first frame (container timestamps)
    image: Array  # (N, 33, 3) pixels x, y and visibility; NaN where not found
    world: Array  # (N, 33, 3) metres, hip-centred, Y up, person facing +Z
    size: tuple[int, int]  # width, height
    fps: float
    source: str
    left_hand: Array | None = None  # (N, 21, 3)
    right_hand: Array | None = None
    face: Array | None = None  # (N, 478, 3)
    meta: dict[str, Any] = field(default_factory=dict)
    frame_index: NDArray[np.int64] | None = None  # (N,) the source's frame numbers
    agreement: Array | None = None  # (N,) skeleton on the person mask, 0..1 (NaN: no pose)
    cuts: list[int] = field(default_factory=list)  # source frames that start a new shot
    reasons: list[str] | None = None  # per frame: "" present, else why absent (after vet)
    repaired: NDArray[np.bool_] | None = None  # (N,) frames whose skeleton was repaired
    other_person: NDArray[np.bool_] | None = None  # (N,) someone else's skeleton dropped
    followed: list[Followed] = field(default_factory=list)  # who each shot follows

    def __post_init__(self) -> None:
        n = len(self.times)
        if self.frame_index is None:
            self.frame_index = np.arange(n, dtype=np.int64)
        if self.agreement is None:
            self.agreement = np.full(n, np.nan, np.float32)
        if self.repaired is None:
            self.repaired = np.zeros(n, bool)
        if self.other_person is None:
            self.other_person = np.zeros(n, bool)

    @property
    def frames(self) -> int:
        return len(self.times)

    @property
    def present(self) -> NDArray[np.bool_]:
        """Frames where the person was found."""
        result: NDArray[np.bool_] = np.isfinite(self.image[:, :, 0]).any(axis=1)
        return result

    @property
    def frame_range(self) -> tuple[int, int]:
        """First and last source frame (inclusive)."""
        assert self.frame_index is not None
        return int(self.frame_index[0]), int(self.frame_index[-1])

    def absent_reasons(self) -> list[str]:
        """Why each frame is absent ("" where present), also before `vet`."""
        if self.reasons is not None:
            return self.reasons
        return ["" if p else "not_detected" for p in self.present]


def capture(
    source: FrameSource,
    tracker: PoseTracker,
    *,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    on_frame: Callable[[Frame, PoseFrame], None] | None = None,
    segmenter: PersonSegmenter | None = None,
    cuts: CutDetector | None = None,
    person: PersonChoice = "largest",
    keep_masks: bool = False,
    on_shot: Callable[[Take], None] | None = None,
) -> Take:
    """Track every frame of `source`, decoding in a thread ahead of the tracker, following
    one person per shot (`person` says whom, at the shot's first frame with a person).
    `on_frame(frame, pose)` runs in the writer thread, for per-frame outputs (a matte); the
    pose carries the person mask it was checked against, at most `CHECK_WIDTH` wide: on
    every frame with `keep_masks`, else only where the skeleton's own scores passed (a
    frame they fail is not segmented). `on_shot(shot)` gets each shot as soon as its last
    frame is in (in the writer thread, the last one after the pass): the raw take of those
    rows, as `split` would cut it, so outputs drawn from the cleaned pose of a shot (the
    control video) can be written while the next shot is captured."""
    times: list[float] = []
    frames: list[PoseFrame] = []
    agreement: list[float] = []
    others: list[bool] = []
    cut_frames: list[int] = []
    size = [0, 0]
    own_segmenter = segmenter is None
    seg = segmenter or PersonSegmenter()
    detector = cuts or CutDetector()
    follower = Follower(tracker, person)

    shot_start = [0]

    def shot(stop: int) -> Take:
        start = shot_start[0]
        part = _stack(
            times[start:stop], frames[start:stop], (size[0], size[1]), source, tracker.holistic
        )
        part.frame_index = np.arange(start, stop, dtype=np.int64)
        part.agreement = np.array(agreement[start:stop], np.float32)
        part.other_person = np.array(others[start:stop], bool)
        shot_start[0] = stop
        return part

    def track(item: tuple[int, tuple[float, Frame]]) -> tuple[float, Frame, PoseFrame, bool]:
        index, (t, frame) = item
        small = shrunk(frame, CHECK_WIDTH)
        cut = detector(small)
        if cut:
            cut_frames.append(index)
            follower.cut()  # never carry a track across a cut
        mask = LazyMask(seg, small, (frame.shape[1], frame.shape[0]))
        pose = follower(frame, mask, index)
        agreement.append(mask.check(pose.image, follower.options)[1])
        pose.person_mask = mask.get() if keep_masks else mask.mask
        others.append(follower.other_person)
        return t, frame, pose, cut

    def collect(item: tuple[float, Frame, PoseFrame, bool]) -> None:
        t, frame, pose, cut = item
        if cut and on_shot is not None and len(frames) > shot_start[0]:
            on_shot(shot(len(frames)))
        size[:] = [frame.shape[1], frame.shape[0]]
        if on_frame is not None:
            on_frame(frame, pose)
        if progress is not None and progress.wants_preview():
            progress.preview(thumbnail_jpeg(openpose.skeleton_over(frame, pose.image)))
        times.append(t)
        frames.append(_compact(pose, tracker.holistic))

    if progress is not None:
        progress.stage("track", source.frame_count)
    try:
        run_pipeline(enumerate(source.timed()), track, collect, progress=progress, cancel=cancel)
    finally:
        if own_segmenter:
            seg.close()
    if on_shot is not None and len(frames) > shot_start[0]:
        on_shot(shot(len(frames)))
    take = _stack(times, frames, (size[0], size[1]), source, tracker.holistic)
    take.agreement = np.array(agreement[: take.frames], np.float32)
    take.other_person = np.array(others[: take.frames], bool)
    take.cuts = cut_frames
    take.followed = follower.takes
    return take


def _compact(pose: PoseFrame, holistic: bool) -> PoseFrame:
    """Keep only arrays (no references to the frame) and fill absent parts with NaN."""
    if not holistic:
        return PoseFrame(pose.image, pose.world)
    nan_hand = np.full((NUM_HAND, 3), np.nan, np.float32)
    return PoseFrame(
        pose.image,
        pose.world,
        pose.left_hand if pose.left_hand is not None else nan_hand,
        pose.right_hand if pose.right_hand is not None else nan_hand,
        pose.face if pose.face is not None else np.full((NUM_FACE, 3), np.nan, np.float32),
    )


def _stack(
    times: list[float],
    frames: list[PoseFrame],
    size: tuple[int, int],
    source: FrameSource,
    holistic: bool,
) -> Take:
    n = len(frames)
    take = Take(
        times=np.array(times, np.float64),
        image=np.stack([f.image for f in frames]) if n else np.zeros((0, NUM_POSE, 3), np.float32),
        world=np.stack([f.world for f in frames]) if n else np.zeros((0, NUM_POSE, 3), np.float32),
        size=size,
        fps=source.fps,
        source=source.name,
    )
    if holistic and n:
        take.left_hand = np.stack([f.left_hand for f in frames])  # type: ignore[misc]
        take.right_hand = np.stack([f.right_hand for f in frames])  # type: ignore[misc]
        take.face = np.stack([f.face for f in frames])  # type: ignore[misc]
    return take


def shots(take: Take) -> list[tuple[int, int]]:
    """Row ranges [start, stop) of the take's shots, split at its cuts."""
    assert take.frame_index is not None
    starts = [0] + [int(np.searchsorted(take.frame_index, c)) for c in take.cuts]
    bounds = sorted({s for s in starts if 0 <= s < take.frames})
    return list(zip(bounds, [*bounds[1:], take.frames], strict=True))


def vet(take: Take, options: PresenceOptions | None = None) -> Take:
    """The take with every frame where no person is really there made absent (NaN), each
    with its reason; judged shot by shot, so one shot's body never vouches for another's."""
    assert take.agreement is not None
    assert take.other_person is not None
    reasons: list[str] = []
    for start, stop in shots(take):
        rows = slice(start, stop)
        reasons += judge(take.image[rows], take.world[rows], take.agreement[rows], options)
    for i in np.flatnonzero(take.other_person):
        reasons[i] = reasons[i] if reasons[i] != "not_detected" else "other_person"
    absent = np.array([bool(r) for r in reasons], bool)
    out = replace(take, image=take.image.copy(), world=take.world.copy(), reasons=reasons)
    out.image[absent] = np.nan
    out.world[absent] = np.nan
    for name in ("left_hand", "right_hand", "face"):
        part = getattr(take, name)
        if part is not None:
            part = part.copy()
            part[absent] = np.nan
            setattr(out, name, part)
    return out


def sliced(take: Take, start: int, stop: int) -> Take:
    """Rows [start, stop) as a take of their own (source frame numbers and times kept)."""
    rows = slice(start, stop)

    def part(a: Any) -> Any:
        return None if a is None else a[rows]

    assert take.frame_index is not None
    first, last = int(take.frame_index[start]), int(take.frame_index[stop - 1])
    return replace(
        take,
        times=take.times[rows],
        image=take.image[rows],
        world=take.world[rows],
        left_hand=part(take.left_hand),
        right_hand=part(take.right_hand),
        face=part(take.face),
        meta=dict(take.meta),
        frame_index=take.frame_index[rows],
        agreement=part(take.agreement),
        cuts=[c for c in take.cuts if first < c <= last],
        reasons=part(take.reasons),
        repaired=part(take.repaired),
        other_person=part(take.other_person),
    )


def split(take: Take) -> list[Take]:
    """One take per shot, each with whom it follows."""
    takes = [sliced(take, start, stop) for start, stop in shots(take)]
    if len(take.followed) == len(takes):
        for part, followed in zip(takes, take.followed, strict=True):
            part.followed = [followed]
    return takes


def joined(takes: list[Take]) -> Take:
    """Takes one after another as one (for --merge-takes); source frame numbers kept."""
    first = takes[0]

    def cat(name: str) -> Any:
        parts = [getattr(t, name) for t in takes]
        return None if any(p is None for p in parts) else np.concatenate(parts)

    return replace(
        first,
        times=cat("times"),
        image=cat("image"),
        world=cat("world"),
        left_hand=cat("left_hand"),
        right_hand=cat("right_hand"),
        face=cat("face"),
        frame_index=cat("frame_index"),
        agreement=cat("agreement"),
        cuts=[c for t in takes[1:] for c in [t.frame_range[0]]],
        reasons=[r for t in takes for r in t.absent_reasons()],
        repaired=cat("repaired"),
        other_person=cat("other_person"),
        followed=[f for t in takes for f in t.followed],
    )
