"""Portrait animation as a frame processor: one object serves video files and live streams.

`prepare(AnimateSetup)` reads the portrait and builds its engine (a portrait without a usable
face fails here, before any driving frame is read); `process()` turns one driving frame
(RGB, any size) into the portrait moved like the driver (RGB, the portrait's size) and counts
frames where the driver had no face (the last pose is held). Engines speak BGR (their
contract); the conversion happens here, at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from vfxmocap.portrait.engine import AnimateOptions, EngineName, FaceEdits, Region, open_engine

if TYPE_CHECKING:
    from vfxmocap.media.image import Frame
    from vfxmocap.portrait.engine import PortraitEngine


class AnimateSettings(BaseModel):
    """How much of the driver's motion reaches the portrait (AnimateOptions as settings)."""

    expression_scale: float = Field(
        1.0, ge=0, le=3, description="Expression strength (0: the portrait's own expression)."
    )
    head_scale: float = Field(
        1.0, ge=0, le=3, description="Head rotation, shift and scale (0 keeps the portrait's pose)."
    )
    region: Region = Field(
        "all", description="Motion transferred: all, expression, pose, lips, eyes."
    )
    eye_ratio: float = Field(1.0, ge=0, le=3, description="Eye-opening retargeting factor.")
    lip_ratio: float = Field(1.0, ge=0, le=3, description="Lip-opening retargeting factor.")
    stitching: bool = Field(True, description="Keep shoulders, neck base and background still.")
    smoothing: bool = Field(True, description="One Euro smoothing of the driving motion.")

    def options(self) -> AnimateOptions:
        return AnimateOptions(**self.model_dump())


class FaceEditSettings(BaseModel):
    """Expression sliders (FaceEdits); every one at 0 leaves the portrait unchanged."""

    smile: float = Field(0.0, ge=-1, le=1, description="Smile (+) or frown (-).")
    blink: float = Field(0.0, ge=0, le=1, description="Both eyes closed by this much.")
    wink_left: float = Field(0.0, ge=0, le=1, description="The person's left eye closed.")
    wink_right: float = Field(0.0, ge=0, le=1, description="The person's right eye closed.")
    eyebrow: float = Field(0.0, ge=-1, le=1, description="Brows raised (+) or lowered (-).")
    gaze_x: float = Field(0.0, ge=-1, le=1, description="Irises to the image's right (+).")
    gaze_y: float = Field(0.0, ge=-1, le=1, description="Irises down (+).")
    aaa: float = Field(0.0, ge=-1, le=1, description="Mouth open, 'aaa' (0 below 0).")
    eee: float = Field(0.0, ge=-1, le=1, description="Mouth wide, 'eee' (0 below 0).")
    woo: float = Field(0.0, ge=-1, le=1, description="Lips rounded, 'woo' (0 below 0).")
    yaw: float = Field(0.0, ge=-30, le=30, description="Head turn, degrees.")
    pitch: float = Field(0.0, ge=-30, le=30, description="Head nod, degrees.")
    roll: float = Field(0.0, ge=-30, le=30, description="Head tilt, degrees.")

    def edits(self) -> FaceEdits:
        return FaceEdits(**self.model_dump())


class AnimateSetup(BaseModel):
    """What `prepare` needs (and a live stream's settings)."""

    source: str = Field(description="The portrait image.")
    engine: EngineName = Field("builtin", description="builtin (no download) or liveportrait.")
    faces: str = Field(
        "largest", max_length=256, description="Portrait faces to animate: all, largest, 0,2."
    )
    options: AnimateSettings = Field(default_factory=AnimateSettings)


@dataclass
class AnimateState:
    engine: PortraitEngine
    frames: int = 0
    frames_without_face: int = 0
    most_driver_faces: int = 0

    def summary(self) -> dict[str, object]:
        summary: dict[str, object] = {
            "engine": self.engine.name,
            "frames": self.frames,
            "frames_without_driver_face": self.frames_without_face,
        }
        if self.most_driver_faces > 1:
            summary["note"] = (
                f"the driver showed up to {self.most_driver_faces} faces; the largest drove"
            )
        return summary


def engine_models(engine: EngineName) -> tuple[str, ...]:
    """Catalog names an engine loads."""
    needed = ("mediapipe-face-detection", "mediapipe-face-mesh")
    return needed + (("liveportrait",) if engine == "liveportrait" else ())


def open_portrait(setup: AnimateSetup) -> PortraitEngine:
    """The engine for the setup's portrait (read here; a bad file is an input error)."""
    import cv2

    from vfxmocap.media.image import read_image

    options = setup.options.options()
    portrait = cv2.cvtColor(read_image(setup.source), cv2.COLOR_RGB2BGR)
    return open_engine(setup.engine, portrait, options, faces=setup.faces)


class PortraitAnimator:
    name = "animate"
    options_model = AnimateSetup

    def models(self, setup: AnimateSetup) -> tuple[str, ...]:
        return engine_models(setup.engine)

    def prepare(self, setup: AnimateSetup) -> AnimateState:
        return AnimateState(open_portrait(setup))

    def process(self, frame: Frame, state: AnimateState, t: float) -> Frame:
        """The portrait moved as the driver in `frame` moved from its neutral frame."""
        import cv2

        rgb_path = getattr(state.engine, "drive_rgb", None)  # an engine that works in RGB
        if rgb_path is not None:
            driven = rgb_path(frame, t)
            out: Frame = driven.frame
        else:
            driven = state.engine.drive(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), t)
            out = cv2.cvtColor(driven.frame, cv2.COLOR_BGR2RGB)
        state.frames += 1
        state.most_driver_faces = max(state.most_driver_faces, driven.driver_faces)
        if not driven.had_face:
            state.frames_without_face += 1
        return out

    def close(self, state: AnimateState) -> None:
        state.engine.close()
