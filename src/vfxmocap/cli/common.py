"""What every command group shares: consoles, error mapping, progress bars, results."""

from __future__ import annotations

import functools
import json
import tomllib
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from vfxmocap.core.config import config_file_path, get_settings
from vfxmocap.core.errors import InvalidParams, VfxError
from vfxmocap.core.extras import missing_extra
from vfxmocap.core.progress import CancelToken, Progress, ProgressEvent
from vfxmocap.workflows.registry import WorkflowResult

# emoji=False: a path like `a:thumbs_up:b.mp4` (or `camera:-1`) is text, not an emoji code.
out = Console(emoji=False)
err = Console(stderr=True, emoji=False)
# C0 (ESC, BEL, newline ...), DEL and C1 controls: shown as \x1b, never sent to the terminal.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
state = {"debug": False}

F = TypeVar("F", bound=Callable[..., Any])

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ServerOpt = Annotated[
    str | None,
    typer.Option("--server", help="API URL; default http://<VFX_HOST>:<VFX_PORT>."),
]
SetsOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="An input as key=value; a.b=value sets a nested option."),
]


def guarded(fn: F) -> F:
    """Turn every failure into a one-line message and its documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except VfxError as exc:
            report_error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except (ValidationError, tomllib.TOMLDecodeError) as exc:  # environment or TOML file
            detail = (
                validation_summary(exc)
                if isinstance(exc, ValidationError)
                else f"{config_file_path()}: {exc}"
            )
            report_error(
                f"invalid configuration: {detail}",
                "Fix the VFX_* variable or the config file; see `vfx config show`.",
            )
            raise typer.Exit(InvalidParams.exit_code) from None
        except KeyboardInterrupt:
            err.print("cancelled")
            raise typer.Exit(130) from None
        except ModuleNotFoundError as exc:
            typed = missing_extra(exc)
            if typed is None:
                raise
            report_error(typed.message, typed.hint)
            raise typer.Exit(typed.exit_code) from None
        except Exception as exc:  # noqa: BLE001 -- last resort: an internal error, in one line
            report_error(
                f"internal error: {type(exc).__name__}: {exc}",
                "Run with --debug for a traceback and report it.",
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def literal(text: object) -> str:
    """User text (a path, a name, a server's message) for rich to print as it is: markup
    escaped, control characters made visible."""
    return escape(str(text).translate(_CONTROLS))


def validation_summary(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def report_error(message: str, hint: str) -> None:
    if state["debug"]:
        traceback.print_exc()
    # One line: the message, then what to do about it.
    line = f"[red]error:[/] {literal(message)}" + (f" [dim]— {literal(hint)}[/]" if hint else "")
    err.print(line, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Progress]:
    """A `Progress` whose events drive a rich progress bar on stderr."""
    if not enabled:
        yield Progress()
        return
    bar = RichProgress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def render(event: ProgressEvent) -> None:
        if event.stage not in tasks:
            tasks[event.stage] = bar.add_task(event.stage, total=event.max)
        bar.update(tasks[event.stage], completed=event.value, total=event.max)

    with bar:
        yield Progress(render)


def run_workflow(name: str, inputs: dict[str, Any], *, quiet: bool = False) -> WorkflowResult:
    """Validate inputs, run a registered workflow with a progress bar, map errors to exits."""
    from vfxmocap.workflows import get_workflow

    workflow = get_workflow(name)
    try:
        parsed = workflow.parse(inputs)
    except ValidationError as exc:
        raise InvalidParams(f"{name}: {validation_summary(exc)}") from exc
    with progress_bar(enabled=not quiet) as progress:
        return workflow(parsed, progress, CancelToken())


def result_dict(result: WorkflowResult) -> dict[str, Any]:
    return {"outputs": {k: str(v) for k, v in result.outputs.items()}, "summary": result.summary}


def report(result: WorkflowResult, as_json: bool, prefix: str = "") -> None:
    if as_json:
        print_json(result_dict(result))
        return
    for key, path in result.outputs.items():
        out.print(literal(f"{prefix}{key}: {path}"), soft_wrap=True)
    if result.summary:
        warning = result.summary.get("warning")
        facts = " · ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in result.summary.items() if k != "warning"
        )
        out.print(f"[dim]{literal(facts)}[/]", soft_wrap=True)
        if warning:
            err.print(f"[yellow]warning:[/] {literal(warning)}", soft_wrap=True)


def given(**values: Any) -> dict[str, Any]:
    """The options a user actually passed: the workflow's input model supplies the rest, so
    the CLI never restates (and never contradicts) its defaults."""
    return {k: v for k, v in values.items() if v is not None and v != {}}


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs: values are JSON when they parse (numbers, true, lists), text
    otherwise; a key given twice becomes a list; `a.b=v` sets `{"a": {"b": v}}`."""
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise InvalidParams(f"--set {pair!r}: expected key=value (or a.b=value)")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        *parents, leaf = key.split(".")
        target = inputs
        for part in parents:
            node = target.setdefault(part, {})
            if not isinstance(node, dict):
                raise InvalidParams(f"--set {pair!r}: {part!r} was given a value already")
            target = node
        if leaf in target:
            previous = target[leaf]
            target[leaf] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            target[leaf] = value
    return inputs


def listify(inputs: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A list field given once (`-s sources=a.jpg`) is still a list."""
    properties = schema.get("properties", {})
    for name, value in inputs.items():
        if properties.get(name, {}).get("type") == "array" and not isinstance(value, list):
            inputs[name] = [value]
    return inputs


def server_client(server: str | None) -> Any:
    """A client of the configured (or given) vfxmocap server."""
    from vfxmocap.client import Client

    settings = get_settings()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return Client(server or f"http://{host}:{settings.port}", settings.api_token)
