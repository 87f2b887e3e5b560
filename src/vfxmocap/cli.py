"""`vfx`: the command line. Parses, calls the layers below, renders results.

Exit codes: 0 ok, 1 internal error, 2 usage or invalid parameters, 3 input error,
4 missing model, 5 device error, 130 cancelled. User mistakes print one line (and a
hint), never a traceback; `--debug` adds the traceback.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import sys
import tomllib
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from vfxmocap import __version__
from vfxmocap.core.config import config_file_path, get_settings, reload_settings
from vfxmocap.core.errors import InvalidParams, VfxError
from vfxmocap.core.log import setup_logging
from vfxmocap.core.progress import CancelToken, Progress, ProgressEvent
from vfxmocap.workflows.registry import WorkflowResult

EXIT_CODES = """Exit codes: 0 ok, 1 internal error, 2 usage / invalid parameters, 3 input error,
4 missing model, 5 device error, 130 cancelled."""

app = typer.Typer(
    help=f"vfxmocap: local AI VFX and motion capture.\n\n{EXIT_CODES}",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, verify and download models.", no_args_is_help=True)
config_app = typer.Typer(help="Show the configuration.", no_args_is_help=True)
app.add_typer(models_app, name="models")
jobs_app = typer.Typer(help="Jobs on a vfxmocap server.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(jobs_app, name="jobs")

out = Console()
err = Console(stderr=True)
_state = {"debug": False}

F = TypeVar("F", bound=Callable[..., Any])


def guarded(fn: F) -> F:
    """Turn every failure into a one-line message and its documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except VfxError as exc:
            _report_error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except (ValidationError, tomllib.TOMLDecodeError) as exc:  # environment or TOML file
            detail = (
                _validation_summary(exc)
                if isinstance(exc, ValidationError)
                else f"{config_file_path()}: {exc}"
            )
            _report_error(
                f"invalid configuration: {detail}",
                "Fix the VFX_* variable or the config file; see `vfx config show`.",
            )
            raise typer.Exit(InvalidParams.exit_code) from None
        except KeyboardInterrupt:
            err.print("cancelled")
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 -- last resort: an internal error, in one line
            _report_error(
                f"internal error: {type(exc).__name__}: {exc}",
                "Run with --debug for a traceback and report it.",
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _validation_summary(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def _report_error(message: str, hint: str) -> None:
    if _state["debug"]:
        traceback.print_exc()
    # One line: the message, then what to do about it.
    line = f"[red]error:[/] {escape(message)}" + (f" [dim]— {escape(hint)}[/]" if hint else "")
    err.print(line, highlight=False, soft_wrap=True)


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


@app.callback()
@guarded
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")
    ] = None,
) -> None:
    _state["debug"] = debug
    if device:
        from vfxmocap.device import resolve_device

        resolve_device(device)  # an unknown or absent device stops here, before any work
        os.environ["VFX_DEVICE"] = device
    settings = reload_settings()
    setup_logging("DEBUG" if debug else settings.log_level, settings.log_format)


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


# --- doctor -------------------------------------------------------------------------------

_VERSIONED = (
    "numpy",
    "opencv-contrib-python",
    "av",
    "mediapipe",
    "onnxruntime",
    "torch",
    "pydantic",
    "huggingface_hub",
)


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version(), "vfxmocap": __version__}
    for name in _VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _codecs() -> dict[str, bool]:
    import av

    decoders, encoders = ("h264", "hevc", "vp9"), ("libx264", "aac", "libvpx-vp9")
    found = {}
    for names, mode, label in ((decoders, "r", "decode"), (encoders, "w", "encode")):
        for name in names:
            try:
                av.codec.Codec(name, "r" if mode == "r" else "w")
                found[f"{name} ({label})"] = True
            except (av.codec.codec.UnknownCodecError, ValueError):
                found[f"{name} ({label})"] = False
    return found


@app.command()
@guarded
def doctor(as_json: JsonOpt = False) -> None:
    """Report device, ONNX providers, models, codecs and versions."""
    from vfxmocap.device import resolve_device
    from vfxmocap.models.store import ModelStore

    device = resolve_device()
    store = ModelStore()
    models = [store.status(name).to_dict() for name in store.catalog.names()]
    settings = get_settings()
    codecs, versions = _codecs(), _versions()
    report = {
        "device": device.to_dict(),
        "models_dir": str(store.root),
        "models": models,
        "codecs": codecs,
        "versions": versions,
        "config_file": str(config_file_path()),
        "offline": settings.is_offline,
    }
    if as_json:
        _print_json(report)
        return
    out.print(
        f"[bold]Device[/]  {device.kind} · {device.name} · {device.memory_gb} GB · "
        f"{device.dtype} · tier {device.tier.value}"
    )
    out.print(f"[bold]ONNX Runtime providers[/]  {', '.join(device.onnx_providers) or 'none'}")
    for note in device.warnings:
        out.print(f"[yellow]! {note}[/]")
    table = Table("model", "task", "readiness")
    for spec, row in zip(store.catalog, models, strict=True):
        colour = "green" if row["ready"] else "red"
        table.add_row(spec.name, spec.task, f"[{colour}]{row['readiness']}[/]")
    out.print(table)
    out.print(f"[bold]Models dir[/]  {store.root}")
    out.print(
        "[bold]Codecs[/]  "
        + ", ".join(f"{k} {'ok' if v else 'MISSING'}" for k, v in codecs.items())
    )
    out.print("[bold]Versions[/]  " + ", ".join(f"{k} {v or '-'}" for k, v in versions.items()))


# --- probe --------------------------------------------------------------------------------


@app.command()
@guarded
def probe(
    file: Annotated[Path, typer.Argument(help="A video or image file.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a media file's properties (size, frame rate, frames, duration, audio)."""
    from vfxmocap.media.sources import media_info

    info = media_info(file)
    if as_json:
        _print_json(info)
        return
    table = Table(show_header=False)
    for key, value in info.items():
        table.add_row(key, str(value))
    out.print(table)


# --- models -------------------------------------------------------------------------------


@models_app.command("list")
@guarded
def models_list(
    verify: Annotated[bool, typer.Option(help="Hash files not yet verified.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Every catalog model with its readiness."""
    from vfxmocap.models.store import ModelStore

    store = ModelStore()
    rows = []
    for spec in store.catalog:
        status = store.status(spec.name, verify=verify)
        rows.append(
            {
                **spec.model_dump(include={"name", "task", "backend", "license", "memory_gb"}),
                "size": spec.download_size,
                **status.to_dict(),
            }
        )
    if as_json:
        _print_json(rows)
        return
    table = Table("model", "task", "backend", "readiness", "size", "license")
    for row in rows:
        colour = "green" if row["ready"] else "red"
        size = f"{row['size'] / 1e6:.0f} MB" if row["size"] else "-"
        table.add_row(
            row["name"],
            row["task"],
            row["backend"],
            f"[{colour}]{row['readiness']}[/]",
            size,
            row["license"],
        )
    out.print(table)


@models_app.command("verify")
@guarded
def models_verify(
    names: Annotated[list[str] | None, typer.Argument(help="Models (default: all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check sha256 of model files; exit 4 when a named model is missing or corrupt."""
    from vfxmocap.models.store import ModelStore

    store = ModelStore()
    chosen = names or store.catalog.names()
    results = [store.status(name, verify=True) for name in chosen]
    if as_json:
        _print_json([r.to_dict() for r in results])
    else:
        for r in results:
            detail = ", ".join(r.missing + r.corrupt)
            out.print(f"{r.name}: {r.readiness.value}" + (f" ({detail})" if detail else ""))
    if names and not all(r.readiness.value == "verified" for r in results):
        raise typer.Exit(4)


@models_app.command("pull")
@guarded
def models_pull(
    names: Annotated[list[str], typer.Argument(help="Models to download.")],
    as_json: JsonOpt = False,
) -> None:
    """Download models (resuming, hash-checked). Offline, says which file to place where."""
    from vfxmocap.models.store import ModelStore

    store = ModelStore()
    results = []
    with progress_bar(enabled=not as_json) as progress:
        for name in names:
            results.append(store.pull(name, progress))
    if as_json:
        _print_json([r.to_dict() for r in results])
    else:
        for r in results:
            out.print(f"{r.name}: {r.readiness.value} in {r.directory}")


@models_app.command("path")
@guarded
def models_path(name: Annotated[str | None, typer.Argument()] = None) -> None:
    """Print the models folder, or one model's folder."""
    from vfxmocap.models.store import ModelStore

    store = ModelStore()
    out.print(str(store.directory(store.catalog.get(name)) if name else store.root), soft_wrap=True)


# --- config -------------------------------------------------------------------------------


@config_app.command("show")
@guarded
def config_show(as_json: JsonOpt = False) -> None:
    """The effective settings and where they came from."""
    path = config_file_path()
    data = {
        "config_file": str(path),
        "config_file_exists": path.is_file(),
        **get_settings().model_dump(mode="json"),
    }
    if as_json:
        _print_json(data)
        return
    table = Table("setting", "value", "environment variable")
    for key, value in data.items():
        env = f"VFX_{key.upper()}" if not key.startswith("config_file") else "VFX_CONFIG"
        table.add_row(key, str(value), env)
    out.print(table)


# --- workflows ----------------------------------------------------------------------------


def run_workflow(name: str, inputs: dict[str, Any], *, quiet: bool = False) -> WorkflowResult:
    """Validate inputs, run a registered workflow with a progress bar, map errors to exits."""
    from vfxmocap.workflows import get_workflow

    workflow = get_workflow(name)
    try:
        parsed = workflow.parse(inputs)
    except ValidationError as exc:
        raise InvalidParams(f"{name}: {_validation_summary(exc)}") from exc
    with progress_bar(enabled=not quiet) as progress:
        return workflow(parsed, progress, CancelToken())


def _result_dict(result: WorkflowResult) -> dict[str, Any]:
    return {"outputs": {k: str(v) for k, v in result.outputs.items()}, "summary": result.summary}


def _report(result: WorkflowResult, as_json: bool, prefix: str = "") -> None:
    if as_json:
        _print_json(_result_dict(result))
        return
    for key, path in result.outputs.items():
        out.print(f"{prefix}{key}: {path}", soft_wrap=True)
    if result.summary:
        warning = result.summary.get("warning")
        facts = " · ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in result.summary.items() if k != "warning"
        )
        out.print(f"[dim]{escape(facts)}[/]", soft_wrap=True)
        if warning:
            err.print(f"[yellow]warning:[/] {escape(str(warning))}", soft_wrap=True)


@app.command()
@guarded
def transcode(
    input: Annotated[str, typer.Argument(help="Video, image sequence (%06d or *), or camera:N.")],
    output: Annotated[Path, typer.Argument(help="Output .mp4")],
    max_height: Annotated[int | None, typer.Option(help="Downscale to this height.")] = None,
    crf: Annotated[int | None, typer.Option(help="H.264 quality 0-51 (lower is better).")] = None,
    preset: Annotated[str | None, typer.Option(help="x264 preset, e.g. veryfast.")] = None,
    fps: Annotated[float | None, typer.Option(help="Frame rate of an image sequence.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-encode to H.264 MP4, keeping audio; written atomically."""
    inputs = {
        "input": input,
        "output": output,
        "max_height": max_height,
        "crf": crf,
        "preset": preset,
        "fps": fps,
    }
    _report(run_workflow("transcode", inputs, quiet=as_json), as_json)


@app.command()
@guarded
def swap(
    source: Annotated[
        list[str], typer.Option("--source", "-s", help="Source face image; repeat for several.")
    ],
    target: Annotated[str, typer.Option("--target", "-t", help="Target image, video or sequence.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image or .mp4.")],
    engine: Annotated[str, typer.Option(help="geometric (built in) or inswapper.")] = "geometric",
    faces: Annotated[
        str, typer.Option(help="all, largest, 0,2, map:0=1,1=id:3, reference.")
    ] = "all",
    source_face: Annotated[int, typer.Option(help="Face index in a multi-face source.")] = 0,
    reference: Annotated[
        list[str] | None, typer.Option(help="Per source: the face to replace.")
    ] = None,
    mask: Annotated[
        str, typer.Option(help="oval, hull, or regions: skin,eyes,brows,nose,mouth.")
    ] = "oval",
    mouth_mask: Annotated[bool, typer.Option(help="Keep the target's open mouth.")] = True,
    occlusion: Annotated[bool, typer.Option(help="Do not paint over hands/objects.")] = False,
    shape: Annotated[
        float, typer.Option(help="Geometric engine: share of the source's face proportions.")
    ] = 0.5,
    enhance: Annotated[bool, typer.Option(help="Restore the face (GFPGAN/CodeFormer).")] = False,
    blend: Annotated[str, typer.Option(help="multiband, poisson or feather.")] = "multiband",
    blur: Annotated[float, typer.Option(help="Mask feather, in face widths.")] = 0.08,
    padding: Annotated[float, typer.Option(help="Grow (+) or shrink (-) the mask.")] = 0.0,
    opacity: Annotated[float, typer.Option(help="0-1.")] = 1.0,
    color_match: Annotated[bool, typer.Option(help="Match the target's skin colour.")] = True,
    smooth: Annotated[
        str, typer.Option(help="MIN_CUTOFF,BETA of the One Euro filter, or off.")
    ] = "1.0,3.0",
    as_json: JsonOpt = False,
) -> None:
    """Swap source face(s) onto a target image or video (audio, size and frame rate kept)."""
    options: dict[str, Any] = {
        "engine": engine,
        "shape": shape,
        "faces": faces,
        "source_face": source_face,
        "occlusion": occlusion,
        "enhance": enhance,
        "blend": blend,
        "opacity": opacity,
        "color_match": color_match,
        "mask": {**_mask_option(mask), "blur": blur, "padding": padding, "mouth_mask": mouth_mask},
        "tracking": _smooth_option(smooth),
    }
    inputs = {
        "sources": source,
        "target": target,
        "output": output,
        "references": reference or [],
        "options": options,
    }
    _report(run_workflow("swap", inputs, quiet=as_json), as_json)


@app.command()
@guarded
def live(
    source: Annotated[list[str], typer.Option("--source", "-s", help="Source face image.")],
    camera: Annotated[int | None, typer.Option(help="Camera index.")] = None,
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="A video played as a live feed.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Record to this .mp4 (default without a display: out/live.mp4)."
        ),
    ] = None,
    display: Annotated[bool, typer.Option(help="Show a window (needs a display).")] = True,
    max_frames: Annotated[int | None, typer.Option(help="Stop after N frames.")] = None,
    faces: Annotated[str, typer.Option(help="all, largest, 0,2, map:...")] = "all",
    mouth_mask: Annotated[bool, typer.Option(help="Keep the target's open mouth.")] = True,
    occlusion: Annotated[bool, typer.Option(help="Do not paint over hands/objects.")] = False,
    engine: Annotated[str, typer.Option(help="geometric or inswapper.")] = "geometric",
    as_json: JsonOpt = False,
) -> None:
    """Live face swap from a webcam: a window, or a file when there is no display."""
    from vfxmocap.media.sources import CameraSource, open_source
    from vfxmocap.media.video import VideoWriter
    from vfxmocap.processors.face_swap.processor import SwapOptions
    from vfxmocap.workflows.live import live_swap

    if (camera is None) == (input is None):
        raise InvalidParams("give either --camera N or --input VIDEO")
    try:
        options = SwapOptions.model_validate(
            {
                "engine": engine,
                "faces": faces,
                "occlusion": occlusion,
                "mask": {"mouth_mask": mouth_mask},
            }
        )
    except ValidationError as exc:
        raise InvalidParams(f"live: {_validation_summary(exc)}") from exc
    frames = CameraSource(camera) if camera is not None else open_source(str(input))
    window = display and output is None and _has_display()
    with frames:
        if window:
            import cv2

            def show(frame: Any) -> bool:
                cv2.imshow("vfx live (q to quit)", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                return bool((cv2.waitKey(1) & 0xFF) != ord("q"))

            stats = live_swap(source, frames, show, options, max_frames=max_frames)
            cv2.destroyAllWindows()
            target = None
        else:
            target = output or Path("out/live.mp4")
            with VideoWriter(target, fps=frames.fps) as writer:

                def record(frame: Any) -> bool:
                    writer.write(frame)
                    return True

                stats = live_swap(source, frames, record, options, max_frames=max_frames)
    result = {"output": str(target) if target else None, **stats.as_dict()}
    if as_json:
        _print_json(result)
    else:
        if target:
            out.print(f"output: {target}", soft_wrap=True)
        out.print(
            f"[dim]frames {stats.frames} · {stats.fps:.1f} fps · latency p50 "
            f"{stats.latency_p50_ms:.1f} ms · p95 {stats.latency_p95_ms:.1f} ms[/]"
        )


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in (
        "darwin",
        "win32",
    )


@app.command()
@guarded
def mocap(
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="Video, image or image sequence.")
    ] = None,
    camera: Annotated[int | None, typer.Option(help="Camera index (with --max-frames).")] = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where files go.")] = Path(
        "out/mocap"
    ),
    bvh: Annotated[bool, typer.Option(help="BVH skeleton animation.")] = True,
    json_out: Annotated[
        bool, typer.Option("--json-out/--no-json-out", help="Keypoints JSON.")
    ] = True,
    csv: Annotated[bool, typer.Option(help="Keypoints CSV (wide).")] = False,
    npz: Annotated[bool, typer.Option(help="Keypoints NPZ.")] = False,
    face_csv: Annotated[bool, typer.Option(help="Live Link Face CSV (ARKit shapes).")] = False,
    pose_video: Annotated[bool, typer.Option(help="OpenPose control video.")] = False,
    matte: Annotated[
        str | None, typer.Option(help="mask, alpha (PNGs), green, blur or image.")
    ] = None,
    matte_background: Annotated[str | None, typer.Option(help="Image for --matte image.")] = None,
    preview: Annotated[bool, typer.Option(help="Input with the skeleton drawn over it.")] = False,
    filter: Annotated[str, typer.Option(help="butterworth, oneeuro or none.")] = "butterworth",
    cutoff: Annotated[float, typer.Option(help="Butterworth cutoff in Hz.")] = 6.0,
    holistic: Annotated[bool, typer.Option(help="Track hands and face too.")] = False,
    max_frames: Annotated[int | None, typer.Option(help="Stop after N frames.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Motion capture to BVH, keypoints, Live Link Face CSV, control video and mattes."""
    if (camera is None) == (input is None):
        raise InvalidParams("give either --input FILE or --camera N")
    source = input if input is not None else f"camera:{camera}"
    inputs = {
        "input": source,
        "output_dir": output_dir,
        "bvh": bvh,
        "json": json_out,
        "csv": csv,
        "npz": npz,
        "face_csv": face_csv,
        "pose_video": pose_video,
        "matte": matte,
        "matte_background": matte_background,
        "preview": preview,
        "holistic": holistic,
        "filter": {"method": filter, "cutoff_hz": cutoff},
        "max_frames": max_frames,
    }
    _report(run_workflow("mocap", inputs, quiet=as_json), as_json)


def _mask_option(text: str) -> dict[str, Any]:
    if text in ("oval", "hull"):
        return {"kind": text}
    return {"kind": "regions", "regions": [r.strip() for r in text.split(",") if r.strip()]}


def _smooth_option(text: str) -> dict[str, Any]:
    if text.strip().lower() in ("off", "none", "0"):
        return {"smooth": False}
    try:
        min_cutoff, beta = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidParams(
            f"bad --smooth {text!r}", hint="Use MIN_CUTOFF,BETA (e.g. 1.0,3.0) or off."
        ) from None
    return {"smooth": True, "filter": {"min_cutoff": min_cutoff, "beta": beta}}


@app.command()
@guarded
def demo(
    output_dir: Annotated[Path, typer.Option(help="Where results go.")] = Path("out"),
    as_json: JsonOpt = False,
) -> None:
    """Run every workflow on the bundled sample media and list what was written."""
    from vfxmocap.workflows import all_workflows

    results: dict[str, WorkflowResult] = {}
    for workflow in all_workflows():
        if workflow.demo is None:
            continue
        inputs = workflow.demo(output_dir / workflow.name)
        if not as_json:
            err.print(f"[bold]{workflow.name}[/]: {workflow.summary}")
        with progress_bar(enabled=not as_json) as progress:
            results[workflow.name] = workflow(inputs, progress, CancelToken())
    if as_json:
        _print_json({name: _result_dict(r) for name, r in results.items()})
        return
    for name, result in results.items():
        _report(result, False, prefix=f"{name}.")


# --- the service --------------------------------------------------------------------------


ServerOpt = Annotated[
    str | None,
    typer.Option("--server", help="API URL; default http://<VFX_HOST>:<VFX_PORT>."),
]


def _client(server: str | None) -> Any:
    from vfxmocap.client import Client

    settings = get_settings()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return Client(server or f"http://{host}:{settings.port}", settings.api_token)


@app.command()
@guarded
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8420).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (device slots).")] = None,
) -> None:
    """Run the API with its job queue and worker processes (Ctrl+C or SIGTERM to stop:
    running jobs get VFX_SHUTDOWN_GRACE_S to finish, then go back to the queue)."""
    import uvicorn

    from vfxmocap.api.app import create_app
    from vfxmocap.api.security import check_bind
    from vfxmocap.device import resolve_device
    from vfxmocap.jobs.service import JobService

    options = (("host", host), ("port", port), ("workers", workers))
    overrides = {k: v for k, v in options if v is not None}  # --workers 0 is a choice
    settings = get_settings().model_copy(update=overrides)
    check_bind(settings.host, settings.api_token)
    service = JobService(settings, device=resolve_device().kind)
    err.print(
        f"vfxmocap API on http://{settings.host}:{settings.port}/api "
        f"({settings.workers} worker(s), data in {settings.data_dir})"
    )
    # The event loop shares the GIL with the runner's threads; a shorter switch interval
    # (5 ms by default) keeps a thread that holds the store's write lock from making
    # every request wait a whole interval behind it.
    sys.setswitchinterval(0.0005)
    uvicorn.run(
        create_app(service),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5,
    )


@app.command()
@guarded
def worker(
    broker: Annotated[
        str | None, typer.Option(help="Celery broker, e.g. redis://host:6379/0 (VFX_BROKER_URL).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Worker name (default host-pid).")] = None,
) -> None:
    """Run a Celery worker for this machine's device (one per GPU: set --device). It is
    restarted when it dies (a crash, or a job killed after ignoring cancel)."""
    import signal
    import socket
    import subprocess
    import time

    url = broker or get_settings().broker_url
    if not url:
        raise InvalidParams("no broker: pass --broker redis://... or set VFX_BROKER_URL")
    name = name or f"{socket.gethostname()}-{os.getpid()}"
    # The broker URL may hold a password: it goes through the environment, not argv (ps).
    command = [sys.executable, "-m", "vfxmocap.jobs.celery_app", name]
    env = {**os.environ, "VFX_BROKER_URL": url}
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)  # Celery's warm shutdown: the job finishes

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    err.print(f"vfxmocap Celery worker {name} on {url}")
    while not stopping:
        child = subprocess.Popen(command, env=env)
        code = child.wait()
        if not stopping:
            err.print(f"[yellow]worker process exited ({code}); restarting[/]")
            time.sleep(1.0)


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs: values are JSON when they parse (numbers, true, lists), text
    otherwise; a key given twice becomes a list."""
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise InvalidParams(f"--set {pair!r}: expected key=value")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if key in inputs:
            previous = inputs[key]
            inputs[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            inputs[key] = value
    return inputs


def _job_line(job: dict[str, Any]) -> str:
    percent = job.get("percent")
    progress = f" {percent:.0f}%" if percent is not None and job["state"] == "running" else ""
    error = job.get("error") or {}
    reason = f" — {error.get('message')}" if job["state"] == "failed" and error else ""
    return f"{job['id']}  {job['workflow']:<10} {job['state']}{progress}{reason}"


@app.command()
@guarded
def submit(
    workflow: Annotated[str, typer.Argument(help="A workflow name (`vfx jobs workflows`).")],
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="An input as key=value (local files are uploaded)."),
    ] = None,
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the job to end.")] = False,
    download: Annotated[
        Path | None, typer.Option(help="With --wait: save the outputs in this folder.")
    ] = None,
    server: ServerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a job on a vfxmocap server, e.g.
    `vfx submit swap -s sources=me.jpg -s target=shot.mp4 --wait --download out/`."""
    with _client(server) as client:
        spec = client.workflow(workflow)
        inputs = _parse_sets(sets or [])
        for name in spec["files"]:  # a list field given once is still a list
            kind = spec["inputs"]["properties"].get(name, {}).get("type")
            if kind == "array" and name in inputs and not isinstance(inputs[name], list):
                inputs[name] = [inputs[name]]
        job = client.submit_files(workflow, inputs, priority=priority)
        if not wait:
            _print_json(job) if as_json else out.print(job["id"])
            return
        with progress_bar(enabled=not as_json) as progress:
            seen: dict[str, Any] = {"stage": None}

            def update(state: dict[str, Any]) -> None:
                info = state.get("progress") or {}
                if info.get("stage") and info["stage"] != seen["stage"]:
                    seen["stage"] = info["stage"]
                    progress.stage(info["stage"], info.get("max"))
                if info.get("value") is not None and info["value"] > progress.value:
                    progress.advance(info["value"] - progress.value)

            final = client.wait(job["id"], on_update=update)
        saved = {}
        if download is not None and final["state"] == "succeeded":
            download.mkdir(parents=True, exist_ok=True)
            saved = {n: str(client.download(final["id"], n, download)) for n in final["outputs"]}
    if as_json:
        _print_json({**final, "downloaded": saved})
    else:
        out.print(_job_line(final))
        for name, path in saved.items():
            out.print(f"  {name}: {path}")
    if final["state"] == "failed":
        error = final.get("error") or {}
        raise VfxError(error.get("message", "the job failed"), hint=error.get("hint"))
    if final["state"] == "cancelled":
        raise typer.Exit(130)


@jobs_app.command("list")
@guarded
def jobs_list(
    state: Annotated[str | None, typer.Option(help="queued, running, succeeded...")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only this workflow.")] = None,
    limit: Annotated[int, typer.Option(help="How many.")] = 20,
    server: ServerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recent jobs, newest first."""
    with _client(server) as client:
        page = client.jobs(state=state, workflow=workflow, limit=limit)
    if as_json:
        _print_json(page)
        return
    for job in page["jobs"]:
        out.print(_job_line(job), highlight=False)


@jobs_app.command("show")
@guarded
def jobs_show(job_id: str, server: ServerOpt = None) -> None:
    """One job: state, progress, error and hint, outputs."""
    with _client(server) as client:
        _print_json(client.job(job_id))


@jobs_app.command("cancel")
@guarded
def jobs_cancel(job_id: str, server: ServerOpt = None) -> None:
    """Cancel a queued job, or stop a running one at its next frame."""
    with _client(server) as client:
        out.print(_job_line(client.cancel(job_id)), highlight=False)


@jobs_app.command("retry")
@guarded
def jobs_retry(job_id: str, server: ServerOpt = None) -> None:
    """Queue a failed or cancelled job again."""
    with _client(server) as client:
        out.print(_job_line(client.retry(job_id)), highlight=False)


@jobs_app.command("logs")
@guarded
def jobs_logs(job_id: str, server: ServerOpt = None) -> None:
    """What the job's worker logged."""
    with _client(server) as client:
        sys.stdout.write(client.log(job_id))


@app.command()
@guarded
def version() -> None:
    """Print the version."""
    out.print(__version__)


# --- entry point --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (usage errors are 2, as Click reports them)."""
    try:
        app(args=argv, prog_name="vfx")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
