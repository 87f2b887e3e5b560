"""vfxmocap: local-first AI VFX and motion capture."""

__version__ = "0.1.0"
