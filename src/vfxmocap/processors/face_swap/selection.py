"""Which source goes onto which target face: all, largest, by index, by track ID or by
reference image; in a sequence chosen once per face track, when the face is first seen."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

from vfxmocap.core.errors import InvalidParams
from vfxmocap.media.image import Frame
from vfxmocap.vision.faces import Face
from vfxmocap.vision.identity import Embedding, similarity

_MAP_ITEM = re.compile(r"(\d+)=(id:)?(\d+)")
MAX_INDEX = 255  # a face's rank or a source's index: far more faces than any frame holds
MAX_TRACK_ID = 2**31 - 1  # track ids count up over a stream; this outlasts any of them


@dataclass(frozen=True)
class Selection:
    kind: Literal["all", "largest", "indices", "map", "reference"]
    indices: tuple[int, ...] = ()
    # (source index, target index or track id, True when it is a track id)
    pairs: tuple[tuple[int, int, bool], ...] = ()


def parse_selection(text: str) -> Selection:
    """`all`, `largest`, `0,2` (target indices, largest first), `map:0=1,1=id:4`."""
    value = text.strip().lower()
    if value in ("all", "largest", "reference"):
        return Selection(value)  # type: ignore[arg-type]
    if value.startswith("map:"):
        pairs = []
        for item in value[4:].split(","):
            match = _MAP_ITEM.fullmatch(item.strip())
            if not match:
                raise InvalidParams(
                    f"bad face mapping {item!r}",
                    hint="Use map:SRC=TGT pairs, e.g. map:0=1,1=0 or map:0=id:3 (track ID).",
                )
            by_id = bool(match.group(2))
            target = _bounded(match.group(3), MAX_TRACK_ID if by_id else MAX_INDEX, "target")
            pairs.append((_bounded(match.group(1), MAX_INDEX, "source"), target, by_id))
        return Selection("map", pairs=tuple(pairs))
    if re.fullmatch(r"\d+(,\d+)*", value):
        indices = tuple(_bounded(i, MAX_INDEX, "face") for i in value.split(","))
        return Selection("indices", indices=indices)
    raise InvalidParams(
        f"bad --faces value {text!r}",
        hint="Use all, largest, target indices like 0,2, map:SRC=TGT,... or reference.",
    )


def _bounded(digits: str, limit: int, what: str) -> int:
    """A face index or track id from the spec, refused when past any real one."""
    number = int(digits)
    if number > limit:
        raise InvalidParams(
            f"--faces: {what} {digits[:20]}{'…' if len(digits) > 20 else ''} is out of range",
            hint=f"Face and source indices go up to {MAX_INDEX}, track ids to {MAX_TRACK_ID}.",
        )
    return number


@dataclass(frozen=True)
class Choice:
    """A source for one face; `slot` (a target rank or track id) is exclusive: while a
    track holds it, no new face gets it."""

    source: int
    slot: tuple[str, int] | None = None


def rank_choices(selection: Selection, faces: list[Face], n_sources: int) -> list[Choice | None]:
    """Per face of one frame (sorted largest first), the choice its size rank gives."""
    if selection.kind == "all":
        # one source: onto every face; several: source i onto face i, the last onto the rest
        return [
            _rest(selection, n_sources) if i >= n_sources - 1 else Choice(i, ("rank", i))
            for i in range(len(faces))
        ]
    if selection.kind == "largest":
        return [Choice(0, ("rank", 0)) if i == 0 else None for i in range(len(faces))]
    if selection.kind == "indices":
        return [
            Choice(0, ("rank", i)) if i in selection.indices else None for i in range(len(faces))
        ]
    if selection.kind == "map":
        return [_mapped(selection, face, i) for i, face in enumerate(faces)]
    raise ValueError(f"{selection.kind} selection is not by rank")


def _rest(selection: Selection, n_sources: int) -> Choice | None:
    """What a face gets when the choice of its rank is held by another track."""
    return Choice(n_sources - 1) if selection.kind == "all" else None


def _mapped(selection: Selection, face: Face, rank: int) -> Choice | None:
    for src, tgt, by_id in selection.pairs:
        if (face.track_id if by_id else rank) == tgt:
            return Choice(src, ("id" if by_id else "rank", tgt))
    return None


def reference_choice(
    embedding: Embedding, references: list[Embedding], min_similarity: float = 0.5
) -> Choice | None:
    """The source whose reference face this face resembles most, if it resembles it enough."""
    scores = [similarity(embedding, ref) for ref in references]
    best = max(range(len(scores)), key=scores.__getitem__)
    return Choice(best) if scores[best] >= min_similarity else None


Identify = Callable[[Frame, Face], Embedding]


class TrackChoices:
    """Which source each track gets: chosen when the track is first seen, kept for its life,
    so a swap does not jump between people whose sizes cross."""

    def __init__(
        self,
        selection: Selection,
        n_sources: int,
        identify: Identify | None = None,
        references: list[Embedding] | None = None,
    ) -> None:
        if selection.kind == "reference" and (identify is None or not references):
            raise ValueError("a reference selection needs an embedder and reference faces")
        for src, _, _ in selection.pairs:  # checked before any target frame
            if src >= n_sources:
                raise InvalidParams(f"face mapping names source {src}, but {n_sources} given")
        self.selection = selection
        self.n_sources = n_sources
        self._identify = identify
        self._references = references or []
        self._chosen: dict[int, Choice | None] = {}

    def pairs(
        self, frame: Frame, faces: list[Face], tracked: Collection[int]
    ) -> list[tuple[Face, int]]:
        """(face, source index) for one frame; `tracked` are the track ids still held (a
        choice is forgotten with its track, so memory stays flat over a long stream)."""
        self._chosen = {tid: c for tid, c in self._chosen.items() if tid in tracked}
        if any(f.track_id not in self._chosen for f in faces):
            self._bind(frame, faces)
        return [(f, c.source) for f in faces if (c := self._chosen[f.track_id]) is not None]

    def reset(self) -> None:
        self._chosen.clear()

    def _bind(self, frame: Frame, faces: list[Face]) -> None:
        held = {c.slot for c in self._chosen.values() if c is not None and c.slot is not None}
        for face, choice in zip(faces, self._candidates(frame, faces), strict=True):
            if face.track_id in self._chosen:
                continue
            if choice is not None and choice.slot in held:
                choice = _rest(self.selection, self.n_sources)
            if choice is not None and choice.slot is not None:
                held.add(choice.slot)
            self._chosen[face.track_id] = choice

    def _candidates(self, frame: Frame, faces: list[Face]) -> list[Choice | None]:
        if self.selection.kind != "reference":
            return rank_choices(self.selection, faces, self.n_sources)
        assert self._identify is not None
        return [
            None
            if f.track_id in self._chosen
            else reference_choice(self._identify(frame, f), self._references)
            for f in faces
        ]  # embedding is costly: only new faces are identified
