"""`python -m vfxmocap.cli`: the same as `vfx`."""

from vfxmocap.cli import entrypoint

entrypoint()
