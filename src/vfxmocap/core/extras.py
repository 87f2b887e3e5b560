"""Which pip extra provides which optional module, and the error that says so.

A missing optional dependency is not an internal error: the user is told the one command
that installs it. The CLI and the workflow registry turn a `ModuleNotFoundError` for any
module below into `MissingExtra`.
"""

from __future__ import annotations

from vfxmocap.core.errors import MissingExtra

# Top-level module -> the extra that installs it.
EXTRA_OF = {
    "celery": "distributed",
    "kombu": "distributed",
    "redis": "distributed",
    "torch": "gen",
    "diffusers": "gen",
    "transformers": "gen",
    "accelerate": "gen",
}
# Modules of the default install: missing means a broken environment, not a choice.
CORE = ("fastapi", "uvicorn", "sqlalchemy", "httpx", "multipart", "starlette")

WHAT = {"distributed": "Celery workers", "gen": "video generation (torch + diffusers)"}


def missing_extra(exc: ModuleNotFoundError) -> MissingExtra | None:
    """The typed error for a missing optional module, or None for any other import."""
    top = (exc.name or "").split(".")[0]
    if top in EXTRA_OF:
        extra = EXTRA_OF[top]
        return MissingExtra(
            f"{WHAT[extra]} need the '{extra}' extra ({top} is not installed)",
            hint=f"pip install 'vfxmocap[{extra}]'",
        )
    if top in CORE:
        return MissingExtra(
            f"{top} is missing: this vfxmocap installation is incomplete",
            hint="pip install --force-reinstall vfxmocap (or `make demo` in a checkout)",
        )
    return None


def require(module: str) -> None:
    """Import `module` now, raising `MissingExtra` (with the install command) if absent."""
    import importlib

    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise (missing_extra(exc) or exc) from None
