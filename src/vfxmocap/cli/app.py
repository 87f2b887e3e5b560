"""The `vfx` Typer application, its global options and its entry point."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from vfxmocap.cli.common import guarded, state
from vfxmocap.core.config import reload_settings
from vfxmocap.core.log import filter_native_stderr, setup_logging

EXIT_CODES = """Exit codes: 0 ok, 1 internal error, 2 usage / invalid parameters, 3 input error,
4 missing model or extra, 5 device error, 130 cancelled."""

app = typer.Typer(
    help=f"vfxmocap: local AI VFX and motion capture.\n\n{EXIT_CODES}",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, verify and download models.", no_args_is_help=True)
config_app = typer.Typer(help="Show the configuration.", no_args_is_help=True)
jobs_app = typer.Typer(help="Jobs on a vfxmocap server.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(config_app, name="config")
app.add_typer(jobs_app, name="jobs")


@app.callback()
@guarded
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")
    ] = None,
) -> None:
    state["debug"] = debug
    if device:
        from vfxmocap.device import resolve_device

        resolve_device(device)  # an unknown or absent device stops here, before any work
        os.environ["VFX_DEVICE"] = device
    settings = reload_settings()
    setup_logging("DEBUG" if debug else settings.log_level, settings.log_format)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (usage errors are 2, as Click reports them)."""
    try:
        app(args=argv, prog_name="vfx")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def entrypoint() -> None:
    """The `vfx` program. Native libraries' log lines (MediaPipe's absl, libpng) are kept
    off the terminal unless --debug; `main()` alone (tests, embedding) leaves stderr be."""
    if "--debug" not in sys.argv[1:]:
        filter_native_stderr()
    sys.exit(main())
