"""Which source goes onto which target face: all, largest, by index, by track ID or by
reference image."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from vfxmocap.core.errors import InvalidParams
from vfxmocap.vision.faces import Face
from vfxmocap.vision.identity import Embedding, similarity

_MAP_ITEM = re.compile(r"(\d+)=(id:)?(\d+)")


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
            pairs.append((int(match.group(1)), int(match.group(3)), bool(match.group(2))))
        return Selection("map", pairs=tuple(pairs))
    if re.fullmatch(r"\d+(,\d+)*", value):
        return Selection("indices", indices=tuple(int(i) for i in value.split(",")))
    raise InvalidParams(
        f"bad --faces value {text!r}",
        hint="Use all, largest, target indices like 0,2, map:SRC=TGT,... or reference.",
    )


def assign(
    selection: Selection,
    faces: list[Face],
    n_sources: int,
    target_embeddings: list[Embedding] | None = None,
    reference_embeddings: list[Embedding] | None = None,
    min_similarity: float = 0.5,
) -> list[tuple[Face, int]]:
    """(target face, source index) pairs for one frame; `faces` sorted largest first."""
    if not faces:
        return []
    if selection.kind == "all":
        # one source: onto every face; several: source i onto face i, the last onto the rest
        return [(f, min(i, n_sources - 1) if n_sources > 1 else 0) for i, f in enumerate(faces)]
    if selection.kind == "largest":
        return [(faces[0], 0)]
    if selection.kind == "indices":
        return [(faces[i], 0) for i in selection.indices if i < len(faces)]
    if selection.kind == "map":
        out: list[tuple[Face, int]] = []
        for src, tgt, by_id in selection.pairs:
            if src >= n_sources:
                raise InvalidParams(f"face mapping names source {src}, but {n_sources} given")
            match = [f for f in faces if f.track_id == tgt] if by_id else faces[tgt : tgt + 1]
            out.extend((f, src) for f in match)
        return out
    # reference: each face goes to the source whose reference it resembles most
    assert target_embeddings is not None and reference_embeddings is not None
    chosen: list[tuple[Face, int]] = []
    for face, emb in zip(faces, target_embeddings, strict=True):
        scores = [similarity(emb, ref) for ref in reference_embeddings]
        best = max(range(len(scores)), key=scores.__getitem__)
        if scores[best] >= min_similarity:
            chosen.append((face, best))
    return chosen
