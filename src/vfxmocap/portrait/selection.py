"""Which faces of a portrait are animated: "all", "largest" or indices ("0,2") into its faces
sorted left to right; a portrait with no face, or a face too small to animate, is refused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vfxmocap.core.errors import InputError, InvalidParams

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from vfxmocap.vision.faces import Face, FaceAnalyzer

MIN_FACE_PX = 64


class NoPortraitFace(InputError):
    """The source portrait has no face to animate."""


class FaceTooSmall(InputError):
    """A chosen face of the portrait is smaller than an engine can animate."""


@dataclass(frozen=True)
class PortraitFace:
    index: int  # left to right
    face: Face


def parse_faces(spec: str) -> str | list[int]:
    """"all", "largest" or a list of indices; anything else is a usage error."""
    text = spec.strip().lower()
    if text in ("all", "largest"):
        return text
    try:
        indices = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        indices = []
    if not indices or any(i < 0 for i in indices):
        raise InvalidParams(
            f"bad faces {spec!r}", hint="Use all, largest or face indices like 0,2 (left to right)."
        )
    return sorted(set(indices))


def select_faces(
    analyzer: FaceAnalyzer, image: NDArray[np.uint8], spec: str, *, min_px: int = MIN_FACE_PX
) -> list[PortraitFace]:
    """The chosen faces of an RGB portrait, each at least `min_px` wide and high."""
    choice = parse_faces(spec)
    found = sorted(analyzer.analyze(image, tiles=True), key=lambda f: float(f.center[0]))
    if not found:
        raise NoPortraitFace(
            "no face found in the portrait",
            hint="Use a portrait with a clear, unobstructed face looking roughly at the camera.",
        )
    faces = [PortraitFace(i, f) for i, f in enumerate(found)]
    if choice == "largest":
        faces = [max(faces, key=lambda p: p.face.area)]
    elif isinstance(choice, list):
        missing = [i for i in choice if i >= len(faces)]
        if missing:
            raise InvalidParams(
                f"faces {','.join(map(str, missing))} asked for, but the portrait has "
                f"{len(faces)} face(s) (0 to {len(faces) - 1}, left to right)"
            )
        faces = [faces[i] for i in choice]
    for chosen in faces:
        box = chosen.face.box
        width, height = float(box[2] - box[0]), float(box[3] - box[1])
        if min(width, height) < min_px:
            raise FaceTooSmall(
                f"face {chosen.index} of the portrait is {width:.0f}x{height:.0f} px; "
                f"animating needs faces of at least {min_px} px",
                hint="Use a larger or closer-cropped portrait, or choose other faces with --faces.",
            )
    return faces
