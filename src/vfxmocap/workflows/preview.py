"""Preview before a render: a frame workflow's live processor on one frame of its input.

Any workflow whose live spec names the input field its frames come from (`LiveSpec.frames`)
can be previewed, built-in or plugin: the processor is prepared from the same inputs as the
render (`LiveSpec.setup`), sees the input's reference frame first where the workflow names
one (`LiveSpec.reference`: animate's neutral pose), runs on the chosen frame, and is closed
again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from vfxmocap.core.errors import InvalidParams, JobTimeout
from vfxmocap.media.image import Frame
from vfxmocap.media.sources import open_source
from vfxmocap.workflows.registry import LiveSpec, Workflow


@dataclass(frozen=True)
class Preview:
    before: Frame
    after: Frame
    frame: int  # the frame shown (the request's, clamped to the input)
    frames: int  # how many the input has, for a frame slider
    elapsed_s: float


def preview_spec(flow: Workflow) -> LiveSpec:
    """The live spec that previews `flow`, or a typed error saying it has none."""
    if flow.live is None or flow.live.frames is None:
        previewable = "a frame workflow (one with a live processor that reads an input)"
        raise InvalidParams(
            f"workflow {flow.name!r} has no frame preview",
            hint=f"Preview {previewable}, e.g. swap or mocap; render this one as a job.",
        )
    return flow.live


def read_frames(
    spec: str, indices: tuple[int, ...], deadline: float
) -> tuple[list[tuple[int, Frame]], int, float]:
    """Frames `indices` of an image, video or sequence, read in one pass (an index past the
    end: the last frame) as (index shown, frame), with the number of frames and the frame
    rate. Decoding stops at `deadline`."""
    with open_source(spec) as source:
        count = int(getattr(source, "frame_count", 0) or 0)
        wanted = [max(0, min(i, count - 1)) if count else max(0, i) for i in indices]
        found: dict[int, Frame] = {}
        shown, frame = -1, None
        for shown, frame in enumerate(source):  # the last one is kept past the loop
            if shown in wanted:
                found[shown] = frame
            if shown >= max(wanted):
                break
            if time.monotonic() > deadline:
                raise _too_slow()
        if frame is None:
            raise InvalidParams(f"{spec} has no frames to preview")
        # Past the end of a source that did not know its length: its last frame.
        picked = [(i, found[i]) if i in found else (shown, frame) for i in wanted]
        return picked, max(count, shown + 1), source.fps or 30.0


def run_preview(flow: Workflow, inputs: BaseModel, index: int, time_limit_s: float) -> Preview:
    """The workflow's processor, prepared from its parsed `inputs`, on frame `index` (after
    its reference frame, when the workflow names one)."""
    started = time.monotonic()
    deadline = started + time_limit_s
    spec = preview_spec(flow)
    assert spec.frames is not None
    reference = () if spec.reference is None else (spec.reference(inputs),)
    frames, count, fps = read_frames(
        str(getattr(inputs, spec.frames)), (*reference, index), deadline
    )
    shown, before = frames[-1]
    settings: BaseModel | dict[str, Any] = (
        spec.setup(inputs) if spec.setup is not None else inputs.model_dump()
    )
    running = spec.start(settings)
    try:
        for at, frame in frames[:-1]:  # seen first; what it draws is not the preview
            running(frame, at / fps)
        if time.monotonic() > deadline:
            raise _too_slow()
        after = running(before, shown / fps)
    finally:
        running.close()
    return Preview(before, after, shown, count, time.monotonic() - started)


def _too_slow() -> JobTimeout:
    return JobTimeout(
        "the preview ran past its time limit",
        hint="Preview an earlier frame, a smaller target, or raise time_limit_s.",
    )
