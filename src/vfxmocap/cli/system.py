"""System commands: doctor, probe, models, config, version."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vfxmocap import __version__
from vfxmocap.cli.app import app, config_app, models_app
from vfxmocap.cli.common import JsonOpt, guarded, literal, out, print_json, progress_bar
from vfxmocap.core.config import config_file_path, get_settings

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
    """Report device, ONNX providers, models, which workflows can run here (and what to
    install or place for those that cannot), codecs and versions."""
    from vfxmocap.device import resolve_device
    from vfxmocap.models.store import ModelStore
    from vfxmocap.workflows import all_workflows
    from vfxmocap.workflows.readiness import readiness

    device = resolve_device()
    store = ModelStore()
    models = [store.status(name).to_dict() for name in store.catalog.names()]
    workflows = [{"name": w.name, **readiness(w, device, store)} for w in all_workflows()]
    settings = get_settings()
    codecs, versions = _codecs(), _versions()
    report = {
        "device": device.to_dict(),
        "models_dir": str(store.root),
        "models": models,
        "workflows": workflows,
        "codecs": codecs,
        "versions": versions,
        "config_file": str(config_file_path()),
        "offline": settings.is_offline,
    }
    if as_json:
        print_json(report)
        return
    usable = device.usable_memory_gb
    shared = f" ({usable:g} GB usable)" if usable != device.memory_gb else ""
    out.print(
        f"[bold]Device[/]  {device.kind} · {device.name} · {device.memory_gb} GB{shared} · "
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
    out.print(f"[bold]Models dir[/]  {literal(store.root)}", soft_wrap=True)
    for row in workflows:
        state = "[green]ready[/]" if row["ready"] else "[red]cannot run here[/]"
        out.print(f"[bold]{row['name']}[/]  {state}", soft_wrap=True)
        for gap in row["missing"]:
            out.print(f"  needs {literal(gap['what'])} — {literal(gap['fix'])}", soft_wrap=True)
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
        print_json(info)
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
        print_json(rows)
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
        print_json([r.to_dict() for r in results])
    else:
        for r in results:
            detail = ", ".join(r.missing + r.corrupt)
            line = f"{r.name}: {r.readiness.value}" + (f" ({detail})" if detail else "")
            out.print(literal(line), soft_wrap=True)
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
        print_json([r.to_dict() for r in results])
    else:
        for r in results:
            out.print(literal(f"{r.name}: {r.readiness.value} in {r.directory}"), soft_wrap=True)


@models_app.command("path")
@guarded
def models_path(name: Annotated[str | None, typer.Argument()] = None) -> None:
    """Print the models folder, or one model's folder."""
    from vfxmocap.models.store import ModelStore

    store = ModelStore()
    folder = store.directory(store.catalog.get(name)) if name else store.root
    out.print(literal(folder), soft_wrap=True)


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
        print_json(data)
        return
    table = Table("setting", "value", "environment variable")
    for key, value in data.items():
        env = f"VFX_{key.upper()}" if not key.startswith("config_file") else "VFX_CONFIG"
        table.add_row(key, str(value), env)
    out.print(table)


@app.command()
@guarded
def version() -> None:
    """Print the version."""
    out.print(__version__)


# --- entry point --------------------------------------------------------------------------
