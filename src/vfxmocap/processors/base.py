"""The one frame-processor contract, shared by video files, still images and live streams.

A processor is stateless: `prepare(options)` builds everything a sequence needs (models,
tracks, filters) into a state object, `process(frame, state, t)` turns one frame into
another and `close(state)` releases it. So one processor object can serve many streams.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:  # the contract is imported by the CLI at start: no OpenCV on that path
    from vfxmocap.media.image import Frame

OptionsT = TypeVar("OptionsT", bound=BaseModel)
StateT = TypeVar("StateT")


class FrameProcessor(Protocol[OptionsT, StateT]):
    name: str
    options_model: type[OptionsT]

    def models(self, options: OptionsT) -> tuple[str, ...]:
        """Catalog names of the models a run with these options loads."""
        ...

    def prepare(self, options: OptionsT) -> StateT:
        """Load models and analyse inputs once, before the first frame."""
        ...

    def process(self, frame: Frame, state: StateT, t: float) -> Frame:
        """One frame of a sequence, at `t` seconds (trackers' filters need the time)."""
        ...

    def close(self, state: StateT) -> None:
        """Release what `prepare` loaded (MediaPipe graphs, sessions)."""
        ...


class Prepared(Generic[OptionsT, StateT]):
    """A processor with its state: the `(frame, t) -> frame` a live session runs."""

    def __init__(self, processor: FrameProcessor[OptionsT, StateT], state: StateT) -> None:
        self.processor = processor
        self.state = state

    def __call__(self, frame: Frame, t: float) -> Frame:
        return self.processor.process(frame, self.state, t)

    def close(self) -> None:
        self.processor.close(self.state)


def prepare(
    processor: FrameProcessor[Any, Any], options: BaseModel | dict[str, Any]
) -> Prepared[Any, Any]:
    """Validate raw options (JSON, CLI flags) into the processor's model and prepare it."""
    return Prepared(processor, processor.prepare(processor.options_model.model_validate(options)))
