"""Long and multi-scene videos as a chain of segments, each starting from the previous one.

The clip's frames are cut at its schedule's scene changes and wherever a scene is longer
than one segment. Each later segment overlaps the one before by `seam` frames: it is
conditioned on the previous segment's frame where the overlap begins (its last frame when
the seam is one frame), and the overlapping frames are cross-faded, so the output has
exactly the frames asked for. A segment is generated at the family's next valid length and
trimmed to the frames it keeps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from math import ceil
from typing import Any

import numpy as np

from vfxmocap.core.errors import InvalidParams
from vfxmocap.generation.families import Family, Request
from vfxmocap.media.image import Frame


@dataclass(frozen=True)
class Segment:
    """One generation of the chain: it covers output frames [start, start + kept), the first
    `overlap` of them shared with the segment before (cross-faded)."""

    index: int
    start: int
    kept: int
    overlap: int
    generated: int  # the family's valid length >= kept; the rest is trimmed
    scene: int  # the schedule entry it shows

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def at_least(family: Family, frames: int, request: Request) -> int:
    """The family's smallest valid frame count that holds `frames` frames."""
    step = family.frame_step
    candidate = max(1, ceil((frames - 1) / step)) * step + 1
    conformed = family.conform(replace(request, frames=candidate))
    return conformed.request.frames


def plan_segments(
    family: Family, request: Request, total: int, scene_starts: list[int], seam: int
) -> list[Segment]:
    """Segments of at most `request.frames` (one segment's limit) covering `total` frames,
    cut at every scene start; InvalidParams when the seam leaves a segment no new frame."""
    limit = request.frames
    if seam >= limit:
        raise InvalidParams(
            f"seam_frames: a {seam}-frame seam leaves no new frame in {limit}-frame segments",
            hint=f"Give --seam-frames below {limit}, or longer --segment-frames.",
        )
    ends = [*scene_starts[1:], total]
    segments: list[Segment] = []
    for scene, (begin, end) in enumerate(zip(scene_starts, ends, strict=True)):
        cursor = begin
        while cursor < end:
            overlap = seam if segments else 0
            fresh = min(limit - overlap, end - cursor)
            kept = fresh + overlap
            generated = at_least(family, kept, request)
            segments.append(
                Segment(len(segments), cursor - overlap, kept, overlap, generated, scene)
            )
            cursor += fresh
    return segments


def conditioning(previous: list[Frame], segment: Segment) -> list[Frame]:
    """The previous segment's frames this one overlaps (its first is where it starts)."""
    return previous[len(previous) - segment.overlap :]


def join(rendered: list[list[Frame]], segments: list[Segment]) -> list[Frame]:
    """The segments' kept frames on one timeline, each seam cross-faded linearly: the i-th of
    n overlapping frames weighs the later segment (i + 1) / (n + 1)."""
    out: list[Frame] = []
    for frames, segment in zip(rendered, segments, strict=True):
        kept = frames[: segment.kept]
        for i in range(segment.overlap):
            weight = (i + 1) / (segment.overlap + 1)
            at = segment.start + i
            out[at] = blend(out[at], kept[i], weight)
        out.extend(kept[segment.overlap :])
    return out


def blend(a: Frame, b: Frame, weight: float) -> Frame:
    mixed = a.astype(np.float32) * (1.0 - weight) + b.astype(np.float32) * weight
    return np.ascontiguousarray(np.clip(mixed.round(), 0, 255).astype(np.uint8))
