"""The portrait's faces an engine animates: found once, checked, chosen by `--faces`.

Both engines take the same `faces` spec ("all", "largest" or indices such as "0,2" into the
faces sorted left to right) and refuse the same bad portraits: no face, a face too small to
animate, an index past the last face.
"""

from __future__ import annotations

import re

import cv2

from vfxmocap.core.errors import InputError, InvalidParams
from vfxmocap.media.image import Frame
from vfxmocap.vision.faces import Face, FaceAnalyzer

MIN_FACE_PX = 64


def choose_faces(faces: list[Face], spec: str) -> list[Face]:
    """The faces `spec` names, left to right; InvalidParams for a bad spec or index."""
    ordered = sorted(faces, key=lambda f: float(f.center[0]))
    value = spec.strip().lower()
    if value == "all":
        return ordered
    if value == "largest":
        return [max(ordered, key=lambda f: f.area)] if ordered else []
    if not re.fullmatch(r"\d{1,3}(,\d{1,3})*", value):
        raise InvalidParams(
            f"bad --faces value {spec!r}",
            hint="Use all, largest, or indices of the portrait's faces left to right, e.g. 0,2.",
        )
    indices = sorted({int(i) for i in value.split(",")})
    if indices[-1] >= len(ordered):
        raise InvalidParams(
            f"--faces {spec}: the portrait has {len(ordered)} face(s), numbered 0 to "
            f"{len(ordered) - 1} from the left",
            hint="Use indices of faces the portrait has, or --faces all.",
        )
    return [ordered[i] for i in indices]


def portrait_faces(analyzer: FaceAnalyzer, source_bgr: Frame, spec: str) -> list[Face]:
    """The chosen faces of a BGR portrait (landmarks in its pixels), each at least
    MIN_FACE_PX wide; InputError (exit 3) when there is none or one is too small."""
    rgb = cv2.cvtColor(source_bgr, cv2.COLOR_BGR2RGB)
    found = analyzer.analyze(rgb)
    if not found:
        raise InputError(
            "no face found in the portrait",
            hint="Use a portrait with a clearly visible face (frontal or three-quarter).",
        )
    chosen = choose_faces(found, spec)
    small = [f for f in chosen if f.width < MIN_FACE_PX]
    if small:
        raise InputError(
            f"the portrait's face is {small[0].width:.0f} px wide; animation needs at least "
            f"{MIN_FACE_PX} px",
            hint="Use a larger portrait or a closer crop of the face.",
        )
    return chosen
