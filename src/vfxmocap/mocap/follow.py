"""One performer followed: within a take, the same person from frame to frame.

MediaPipe Pose fits one person per frame, and when it loses them (hidden by a van, out of
frame) its detector picks whoever is most prominent next, so a take could jump from one
person to another. Here, at the first frame of a take where a person is seen, everyone in
view is found (BlazePose run again with each person found so far blacked out), one is chosen
(`largest`, `center`, `left`, `right`, or the N-th from the left), and from then on pose runs
on a window that follows that person's box. Other people are blacked out in the window; a
detection whose box jumps away from the followed one is someone else, and is dropped.
Landmarks come back in frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from vfxmocap.media.image import Frame
from vfxmocap.mocap.presence import LazyMask, PresenceOptions
from vfxmocap.vision.pose import PoseFrame, PoseTracker, empty_frame

Array = NDArray[np.float32]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
PersonChoice = Literal["largest", "center", "left", "right"] | Annotated[int, Field(ge=1)]

MAX_PEOPLE = 8  # detector runs at a take's first frame, at most
WINDOW_MARGIN = 0.4  # of the box's longer side, on every side of the box
LOST_GROWTH = 0.1  # the allowed jump grows by this (of the box's side) per frame lost
MAX_SHIFT = 0.5  # box centre may move this much of the box's side a frame ...
MAX_SHIFT_LOST = 1.5  # ... and at most this much after a long loss


@dataclass
class Person:
    pose: PoseFrame
    box: Box


@dataclass
class Followed:
    """Who a take follows: reported per take in takes.json and the summary."""

    choice: str
    frame: int | None = None  # source frame where the choice was made
    people_in_view: int = 0
    index: int | None = None  # 1-based, people sorted left to right
    box: Box | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "choice": self.choice,
            "chosen_at_frame": self.frame,
            "people_in_view": self.people_in_view,
            "followed": self.index,
            "box": None if self.box is None else [round(v, 1) for v in self.box],
            "description": self.describe(),
        }

    def describe(self) -> str:
        if self.frame is None:
            return "nobody seen"
        if self.index is None:
            return f"person {self.choice} not in view ({self.people_in_view} seen)"
        return f"person {self.index} of {self.people_in_view} from the left ({self.choice})"


def person_box(image: Array, size: tuple[int, int]) -> Box | None:
    """The box of the landmarks seen (visibility >= 0.5) inside the frame."""
    w, h = size
    pts = image[(image[:, 2] >= 0.5) & np.isfinite(image[:, 0])][:, :2]
    pts = pts[(pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)]
    if len(pts) < 4:
        return None
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def _side(box: Box) -> float:
    return max(box[2] - box[0], box[3] - box[1], 1.0)


def _centre(box: Box) -> NDArray[np.float64]:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(w * h / max(smaller, 1.0))


def _black_out(frame: Frame, box: Box, grow: float = 0.2) -> None:
    """Landmark boxes end at the eyes and ears: grown, they cover the head too."""
    pad = grow * _side(box)
    h, w = frame.shape[:2]
    x0, y0 = max(0, int(box[0] - pad)), max(0, int(box[1] - pad))
    x1, y1 = min(w, int(box[2] + pad) + 1), min(h, int(box[3] + pad) + 1)
    if x1 > x0 and y1 > y0:  # (a box beside a crop would make negative, wrapping slices)
        frame[y0:y1, x0:x1] = 0


def find_people(
    frame: Frame,
    mask: LazyMask,
    tracker: PoseTracker,
    options: PresenceOptions | None = None,
) -> list[Person]:
    """Everyone in view, sorted left to right: the tracker's detector finds the most
    prominent person, who is blacked out before it looks again. Skeletons that fail the
    presence checks (visibility, the person mask) are blacked out too but not counted."""
    opts = options or PresenceOptions()
    size = (frame.shape[1], frame.shape[0])
    work = frame.copy()
    people: list[Person] = []
    seen: list[Box] = []
    for _ in range(MAX_PEOPLE):
        tracker.lose()  # detect, do not track the last one found
        pose = tracker(work)
        box = person_box(pose.image, size)
        if box is None or any(_overlap(box, s) > 0.8 for s in seen):
            break
        seen.append(box)
        if not mask.check(pose.image, opts)[0]:
            people.append(Person(pose, box))
        _black_out(work, box)
    return sorted(people, key=lambda p: p.box[0] + p.box[2])


def choose(people: list[Person], choice: PersonChoice, size: tuple[int, int]) -> int | None:
    """Index into `people` (sorted left to right) of the one to follow; None if person N is
    not there."""
    if not people:
        return None
    if isinstance(choice, int):
        return choice - 1 if choice <= len(people) else None
    if choice == "left":
        return 0
    if choice == "right":
        return len(people) - 1
    if choice == "center":
        middle = np.array(size, np.float64) / 2
        return int(np.argmin([np.linalg.norm(_centre(p.box) - middle) for p in people]))
    return int(np.argmax([(p.box[2] - p.box[0]) * (p.box[3] - p.box[1]) for p in people]))


@dataclass
class _Track:
    box: Box | None = None  # the followed person's last box; None while searching
    done: bool = False  # the chosen person is not in this take: follow nobody
    lost: int = 0  # frames since the followed person was last seen
    window: tuple[int, int, int, int] | None = None
    window_side: float = 0.0
    used: tuple[int, int, int, int] | None = None  # the window of the last frame
    others: list[Box] = field(default_factory=list)


def _rescaled(window: tuple[int, int, int, int], last: tuple[int, int, int, int] | None) -> bool:
    """A crop of another size: the tracker's region, kept in the crop's normalised
    coordinates, would be scaled. A shift of a same-sized crop only moves it by about the
    person's change of speed, which the landmark model takes up."""
    if last is None:
        return True
    sizes = np.array([window[2] - window[0], window[3] - window[1]], np.float64)
    before = np.array([last[2] - last[0], last[3] - last[1]], np.float64)
    return bool((np.abs(sizes / np.maximum(before, 1.0) - 1.0) > 0.25).any())


class Follower:
    """Stateful over a clip: call `cut()` where a take starts, then once per frame in order.
    `other_person` says whether the last frame dropped someone else's skeleton."""

    def __init__(
        self,
        tracker: PoseTracker,
        choice: PersonChoice = "largest",
        options: PresenceOptions | None = None,
    ) -> None:
        self.tracker = tracker
        self.choice = choice
        self.options = options or PresenceOptions()
        self.takes: list[Followed] = []
        self.other_person = False
        self._track = _Track()
        self.takes.append(Followed(str(self.choice)))

    def cut(self) -> None:
        """A new take: forget the person followed and choose again."""
        self.tracker.lose()
        self._track = _Track()
        self.takes.append(Followed(str(self.choice)))

    def __call__(self, frame: Frame, mask: LazyMask, index: int) -> PoseFrame:
        self.other_person = False
        track = self._track
        if track.done:
            return empty_frame()
        if track.box is None:
            return self._search(frame, mask, index)
        return self._follow(frame, mask)

    def _valid(self, pose: PoseFrame, mask: LazyMask) -> bool:
        return not mask.check(pose.image, self.options)[0]

    def _search(self, frame: Frame, mask: LazyMask, index: int) -> PoseFrame:
        """Nobody followed yet: the whole frame, until a real person shows; then choose."""
        pose = self.tracker(frame)
        if not self._valid(pose, mask):
            return pose  # a phantom or nothing: the presence checks turn it down
        size = (frame.shape[1], frame.shape[0])
        people = find_people(frame, mask, self.tracker, self.options)
        own = person_box(pose.image, size)
        if not people and own is not None:
            people = [Person(pose, own)]
        picked = choose(people, self.choice, size)
        record = self.takes[-1]
        record.frame, record.people_in_view = index, len(people)
        if picked is None:
            self._track.done = True
            return empty_frame()
        chosen = people[picked]
        record.index, record.box = picked + 1, chosen.box
        self._track.box = chosen.box
        self._track.others = [p.box for i, p in enumerate(people) if i != picked]
        if own is not None and _overlap(own, chosen.box) > 0.5:
            return pose
        return chosen.pose

    def _follow(self, frame: Frame, mask: LazyMask) -> PoseFrame:
        track = self._track
        assert track.box is not None
        window = self._window(frame.shape[1], frame.shape[0])
        if _rescaled(window, track.used):  # the tracker's region would be far off; it
            self.tracker.lose()  # runs its detector next (a graph restart costs far more)
        track.used = window
        x0, y0, x1, y1 = window
        crop = frame[y0:y1, x0:x1]
        hidden = [b for b in track.others if _overlap(b, track.box) < 0.3]
        if hidden:
            crop = crop.copy()
            for other in hidden:
                _black_out(crop, (other[0] - x0, other[1] - y0, other[2] - x0, other[3] - y0))
        pose = self.tracker(np.ascontiguousarray(crop))
        pose.image[:, 0] += x0
        pose.image[:, 1] += y0
        box = person_box(pose.image, (frame.shape[1], frame.shape[0]))
        if box is None or not self._valid(pose, mask):
            track.lost += 1
            return pose
        if not self._continuous(box):
            track.others.append(box)  # someone else: hidden from now on, looked for again
            track.lost += 1
            self.tracker.lose()
            self.other_person = True
            return empty_frame()
        track.box, track.lost = box, 0
        return pose

    def _continuous(self, box: Box) -> bool:
        """The same person: the box moved and grew no more than a body does between the
        frames since it was last seen."""
        last = self._track.box
        assert last is not None
        side = _side(last)
        allowed = min(MAX_SHIFT + LOST_GROWTH * self._track.lost, MAX_SHIFT_LOST) * side
        scale = _side(box) / side
        return bool(np.linalg.norm(_centre(box) - _centre(last)) <= allowed and 0.5 < scale < 2)

    def _window(self, w: int, h: int) -> tuple[int, int, int, int]:
        """The crop pose runs on: the box with a margin, kept still while the box stays well
        inside it (so the tracker's own region holds); the whole frame while the person is
        lost."""
        track = self._track
        assert track.box is not None
        side = _side(track.box)
        inner = 0.15 * side
        if track.window is not None and track.lost == 0:
            x0, y0, x1, y1 = track.window
            b = track.box
            inside = (
                b[0] - inner >= x0 or x0 == 0,
                b[1] - inner >= y0 or y0 == 0,
                b[2] + inner <= x1 or x1 == w,
                b[3] + inner <= y1 or y1 == h,
            )
            if all(inside) and 0.75 < side / track.window_side < 1.33:
                return track.window
        if track.lost:  # look everywhere (others stay hidden); continuity decides
            track.window = None
            return 0, 0, w, h
        margin = side * WINDOW_MARGIN
        b = track.box
        window = (
            max(0, int(b[0] - margin)),
            max(0, int(b[1] - margin)),
            min(w, int(b[2] + margin) + 1),
            min(h, int(b[3] + margin) + 1),
        )
        track.window, track.window_side = window, side
        return window
