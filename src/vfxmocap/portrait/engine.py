"""The contract between the `animate` / `edit-face` workflows and their engines.

An engine is built once per portrait (`open_engine`): it finds the chosen faces in the
source, analyses them, and then turns driving frames into output frames at the source's
full resolution. Motion is relative: the first driving frame with a face (or the one given
to `set_neutral`) is the neutral pose, and each later frame moves the portrait by how far
the driver moved from it. The workflow owns media, progress and counting; the engine owns
the face maths. Engines are imported lazily, so the CLI and API never load MediaPipe or
ONNX Runtime before a job needs them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Image = NDArray[np.uint8]

EngineName = Literal["builtin", "liveportrait"]
Region = Literal["all", "expression", "pose", "lips", "eyes"]


@dataclass(frozen=True)
class AnimateOptions:
    """How much of the driver's motion reaches the portrait."""

    expression_scale: float = 1.0
    """Multiplies the expression deformation (0 = the portrait's own expression)."""
    head_scale: float = 1.0
    """Multiplies head rotation, translation and scale (0 keeps the portrait's pose)."""
    region: Region = "all"
    """Which motion is transferred: everything, expression only, pose only, lips or eyes."""
    eye_ratio: float = 1.0
    """Eye-open retargeting: the portrait's eye opening follows the driver's, times this."""
    lip_ratio: float = 1.0
    """Lip-open retargeting: the portrait's mouth opening follows the driver's, times this."""
    stitching: bool = True
    """Keep shoulders, neck base and background still while the head moves."""
    smoothing: bool = True
    """One Euro smoothing of the driving signal (off for stills and edits)."""


@dataclass(frozen=True)
class FaceEdits:
    """Expression sliders for a still. Every slider at 0 leaves the portrait unchanged.

    Ranges: smile, eyebrow, aaa, eee, woo in [-1, 1] (negative = the opposite shape where it
    has one: a frown, lowered brows; clipped to 0 where it has none); blink, wink_left,
    wink_right in [0, 1] (1 = closed); gaze_x, gaze_y in [-1, 1] (right / down positive,
    1 = the iris at the eye's corner); yaw, pitch, roll in degrees, [-30, 30].
    """

    smile: float = 0.0
    blink: float = 0.0
    wink_left: float = 0.0
    wink_right: float = 0.0
    eyebrow: float = 0.0
    gaze_x: float = 0.0
    gaze_y: float = 0.0
    aaa: float = 0.0
    eee: float = 0.0
    woo: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def is_identity(self) -> bool:
        return all(getattr(self, f.name) == 0.0 for f in fields(self))


@dataclass(frozen=True)
class Driven:
    """One output frame and what the engine saw in the driving frame."""

    frame: Image
    """BGR uint8 at the source portrait's full resolution."""
    had_face: bool
    """False when the driver had no face: the last pose was held."""
    driver_faces: int
    """Faces found in the driving frame (the largest one drives)."""


class PortraitEngine(Protocol):
    name: str

    def set_neutral(self, driving: Image) -> bool:
        """Make this driving frame the neutral pose; False when it has no face."""
        ...

    def drive(self, driving: Image, t: float) -> Driven:
        """The portrait moved as the driver moved from its neutral frame, at `t` seconds."""
        ...

    def edit(self, edits: FaceEdits) -> Image:
        """The portrait with these slider values (no driver)."""
        ...

    def close(self) -> None:
        """Release graphs and sessions."""
        ...


def open_engine(
    name: EngineName,
    source: Image,
    options: AnimateOptions,
    *,
    faces: str = "largest",
    device: str | None = None,
) -> PortraitEngine:
    """Build an engine for this BGR portrait.

    `faces` is "all", "largest" or a comma list of indices ("0,2") into the portrait's faces
    sorted left to right. `device` is a device string as device.py takes it (None = auto).
    Raises a VfxError subclass (exit 3) when the portrait has no face or a face is too small.
    """
    if name == "builtin":
        from vfxmocap.portrait.builtin import BuiltinEngine

        return BuiltinEngine(source, options, faces=faces, device=device)
    if name == "liveportrait":
        from vfxmocap.portrait.liveportrait import LivePortraitEngine

        return LivePortraitEngine(source, options, faces=faces, device=device)
    raise ValueError(f"unknown portrait engine {name!r}")
