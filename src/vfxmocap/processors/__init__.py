"""Frame processors: stateful frame-in, frame-out units shared by video files and live streams.

Each processor has a name, a pydantic options model, the catalog models it needs,
`prepare(options) -> state` and `process(frame, state) -> frame`.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel

from vfxmocap.media.image import Frame


class FrameProcessor(Protocol):
    name: str
    options_model: type[BaseModel]

    def models(self, options: Any) -> tuple[str, ...]: ...

    def prepare(self, options: Any) -> Any: ...

    def process(self, frame: Frame, state: Any) -> Frame: ...
