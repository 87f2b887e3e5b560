"""The `vfx` command as a user runs it: real processes, real files, documented exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest

from tests.conftest import run_vfx


def vfx(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return run_vfx(*args, env=env, cwd=cwd, timeout=120)


def assert_one_line_error(result, code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_probe_carphone_json(carphone: Path) -> None:
    result = vfx("probe", str(carphone), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (
        info["frame_count"] == 120 and info["fps"] == 29.97 and info["frame_rate"] == "30000/1001"
    )


def test_doctor_reports_the_device_and_its_providers() -> None:
    result = vfx("doctor", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    from vfxmocap.device import resolve_device

    here = resolve_device()  # what this machine has, GPU or not
    assert report["device"]["kind"] == here.kind and report["device"]["dtype"] == here.dtype
    assert report["device"]["onnx_providers"] == list(here.onnx_providers)
    assert report["device"]["onnx_providers"][-1] == "CPUExecutionProvider"  # the fallback
    ready = {m["name"]: m["readiness"] for m in report["models"]}
    assert ready["mediapipe-pose"] == "verified" and ready["inswapper-128"] == "missing"
    assert report["codecs"]["libx264 (encode)"] is True


def test_doctor_human_output_mentions_the_device() -> None:
    result = vfx("doctor")
    assert result.returncode == 0 and "Device" in result.stdout and "cpu" in result.stdout


def test_bad_device_exits_5_listing_valid_values() -> None:
    result = vfx("--device", "gpu", "doctor")
    assert_one_line_error(result, 5, "auto, cpu, cuda, cuda:N, mps")


def test_an_absent_device_stops_a_workflow_before_it_writes(tmp_path: Path, bikes: Path) -> None:
    out = tmp_path / "small.mp4"
    result = vfx("--device", "cuda", "transcode", str(bikes), str(out))
    assert_one_line_error(result, 5, "not available on this machine")
    assert not out.exists()


def test_usage_error_exits_2() -> None:
    assert vfx("probe").returncode == 2
    assert vfx("no-such-command").returncode == 2


def test_transcode_writes_a_smaller_video(tmp_path: Path, bikes: Path) -> None:
    out = tmp_path / "small.mp4"
    result = vfx("transcode", str(bikes), str(out), "--max-height", "136", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outputs"] == {"video": str(out)}
    assert report["summary"]["frames"] == 250 and report["summary"]["size"] == [320, 136]
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (320, 136) and stream.frames == 250


def test_invalid_parameter_exits_2(tmp_path: Path, carphone: Path) -> None:
    result = vfx("transcode", str(carphone), str(tmp_path / "o.mp4"), "--crf", "99")
    assert_one_line_error(result, 2, "crf")
    assert list(tmp_path.iterdir()) == []


def test_every_bad_input_exits_3_with_one_line_and_no_output(tmp_path: Path, bad_media) -> None:
    for label, (path, reason) in bad_media.items():
        out_dir = tmp_path / label.replace(" ", "_").replace(",", "")
        out_dir.mkdir()
        result = vfx("transcode", str(path), str(out_dir / "result.mp4"))
        assert_one_line_error(result, 3, str(path), reason)
        assert list(out_dir.iterdir()) == [], f"{label}: partial output left behind"


def test_probe_of_a_file_cut_after_its_index_exits_3(faststart_cut: Path) -> None:
    assert_one_line_error(vfx("probe", str(faststart_cut)), 3, "truncated")


def test_user_paths_print_literally(tmp_path: Path, carphone: Path) -> None:
    """No emoji codes, markup or terminal escapes from a file name: `a:thumbs_up:b.mp4`
    prints as itself, ESC as \\x1b."""
    (tmp_path / "a:thumbs_up:b.mp4").write_bytes(carphone.read_bytes())
    output = "o[bold]x:smile:\x1b[31m.mp4"
    result = vfx("transcode", "a:thumbs_up:b.mp4", output, "--max-height", "72", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "video: o[bold]x:smile:\\x1b[31m.mp4" in result.stdout
    missing = vfx("mocap", "--camera", "-1", "--max-frames", "1", cwd=tmp_path)
    assert_one_line_error(missing, 3, "camera:-1: ")
    escaped = vfx("probe", "gone:thumbs_up:\x1b]0;title\x07.mp4", cwd=tmp_path)
    assert_one_line_error(escaped, 3, "gone:thumbs_up:\\x1b]0;title\\x07.mp4: file not found")
    assert "\x1b" not in result.stdout + missing.stderr + escaped.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = vfx("--debug", "probe", str(tmp_path / "gone.mp4"))
    assert result.returncode == 3 and "Traceback" in result.stderr


def test_models_path_honours_env(tmp_path: Path) -> None:
    result = vfx("models", "path", env={"VFX_MODELS_DIR": str(tmp_path / "m")})
    assert result.stdout.strip() == str(tmp_path / "m")


@pytest.mark.slow
def test_demo_writes_outputs(tmp_path: Path) -> None:
    result = vfx("demo", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)
    assert {"transcode", "swap"} <= set(written)
    paths = [Path(tmp_path, p) for r in written.values() for p in r["outputs"].values()]
    assert paths and all(p.is_file() and p.stat().st_size > 0 for p in paths)
    # Quiet: no MediaPipe absl / glog or libpng lines; only our own warnings, if any.
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(line.startswith("warning:") for line in lines), result.stderr


def test_native_log_lines_are_dropped_and_everything_else_kept() -> None:
    import subprocess
    import sys

    script = (
        "import os, sys\n"
        "from vfxmocap.core.log import filter_native_stderr\n"
        "filter_native_stderr()\n"
        "os.write(2, b'W0000 00:00:1796158292.894806    5893 feedback_manager.cc:114] noise\\n')\n"
        "os.write(2, b'libpng warning: iCCP: known incorrect sRGB profile\\n')\n"
        "os.write(2, b'a native message that matters\\n')\n"
        "print('ours', file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert sorted(done.stderr.splitlines()) == ["a native message that matters", "ours"]


PLUGINS = {"VFX_WORKFLOW_MODULES": json.dumps(["tests.plugin_workflows"])}


def test_run_executes_a_plugin_workflow_locally() -> None:
    result = vfx("run", "sleep", "-s", "seconds=0.1", "--json", env=PLUGINS)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["summary"] == {"slept_s": 0.1}


def test_run_places_outputs_not_given_under_the_output_dir(tmp_path: Path, bikes: Path) -> None:
    result = vfx(
        "run", "transcode", "-s", f"input={bikes}", "-s", "max_height=68",
        "--output-dir", str(tmp_path), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    video = Path(json.loads(result.stdout)["outputs"]["video"])
    assert video.parent == tmp_path / "transcode"
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.height == 68 and stream.frames == 250


def test_run_reports_bad_inputs_and_unknown_workflows_in_one_line() -> None:
    assert_one_line_error(
        vfx("run", "sleep", "-s", "seconds=lots", env=PLUGINS), 2, "seconds", "number"
    )
    assert_one_line_error(vfx("run", "nosuch"), 2, "unknown workflow 'nosuch'", "swap")


def test_workflows_lists_plugins_and_shows_defaults_from_the_input_model() -> None:
    listing = vfx("workflows", env=PLUGINS)
    assert listing.returncode == 0 and "sleep" in listing.stdout and "mocap" in listing.stdout
    from vfxmocap.processors.face_swap.processor import SwapOptions

    shown = vfx("workflows", "swap")
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.strip().startswith("options.shape "))
    assert f"default {SwapOptions().shape!r}" in line


def test_set_pairs_nest_on_dots_and_repeat_into_lists() -> None:
    from vfxmocap.cli.common import parse_sets
    from vfxmocap.core.errors import InvalidParams

    assert parse_sets(["sources=a.jpg", "sources=b.jpg", "options.mask.blur=0.1"]) == {
        "sources": ["a.jpg", "b.jpg"],
        "options": {"mask": {"blur": 0.1}},
    }
    with pytest.raises(InvalidParams):
        parse_sets(["options=1", "options.shape=0.5"])


def _without(tmp_path: Path, *modules: str) -> dict[str, str]:
    """An environment in which importing these modules fails, as when their extra is not
    installed: a package of that name earlier on the path that raises on import."""
    for module in modules:
        package = tmp_path / "blocked" / module
        package.mkdir(parents=True)
        message = f"No module named {module!r}"
        (package / "__init__.py").write_text(
            f"raise ModuleNotFoundError({message!r}, name={module!r})\n"
        )
    import os

    return {"PYTHONPATH": os.pathsep.join([str(tmp_path / "blocked"), os.getcwd()])}


def test_worker_without_the_distributed_extra_says_which_extra(tmp_path: Path) -> None:
    result = vfx("worker", "--broker", "redis://127.0.0.1:1/0", env=_without(tmp_path, "celery"))
    assert_one_line_error(result, 4, "'distributed' extra", "pip install 'vfxmocap[distributed]'")


def test_serve_with_a_broken_install_says_how_to_repair_it(tmp_path: Path) -> None:
    result = vfx("serve", "--port", "1", env=_without(tmp_path, "uvicorn"))
    assert_one_line_error(result, 4, "uvicorn is missing", "pip install --force-reinstall")


@pytest.mark.parametrize(
    ("option", "value", "bound"),
    [("--workers", "-1", "greater than or equal to 0"), ("--port", "99999", "65535")],
)
def test_serve_refuses_out_of_range_options(option: str, value: str, bound: str) -> None:
    """Checked like VFX_WORKERS / VFX_PORT: no server with no workers, or on another port."""
    result = run_vfx("serve", option, value, timeout=60)
    assert_one_line_error(result, 2, f"{option} {value}", bound)


def test_a_workflow_needing_a_missing_extra_fails_with_missing_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Jobs and the CLI run workflows through the registry: an optional import deep inside
    one is reported as the extra to install, not as an internal error."""
    from pydantic import BaseModel

    from vfxmocap.core.errors import MissingExtra
    from vfxmocap.workflows.registry import Workflow

    class NoInputs(BaseModel):
        pass

    def run(inputs, progress, cancel):  # type: ignore[no-untyped-def]
        import diffusers  # noqa: F401

    monkeypatch.setitem(__import__("sys").modules, "diffusers", None)  # not installed
    flow = Workflow(name="needs_gen", summary="", inputs=NoInputs, outputs=(), run=run)
    with pytest.raises(MissingExtra, match="'gen' extra") as caught:
        flow({})
    assert caught.value.exit_code == 4 and "vfxmocap[gen]" in caught.value.hint


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_output_that_is_an_input_is_refused_and_the_input_kept(
    tmp_path: Path, carphone: Path, astronaut: Path
) -> None:
    """The same path, or a hard link to it: exit 2, nothing written, every workflow."""
    import os
    import shutil

    clip, face = tmp_path / "same.mp4", tmp_path / "face.png"
    shutil.copy(carphone, clip)
    shutil.copy(astronaut, face)
    os.link(clip, tmp_path / "linked.mp4")
    before = {p: _digest(p) for p in (clip, face)}
    cases = [
        ("swap", "-s", face, "-t", clip, "-o", clip),
        ("swap", "-s", face, "-t", face, "-o", face),
        ("transcode", clip, clip),
        ("transcode", clip, tmp_path / "linked.mp4"),
        ("run", "transcode", "-s", f"input={clip}", "-s", f"output={clip}"),
    ]
    for args in cases:
        assert_one_line_error(vfx(*map(str, args)), 2, "would destroy the input")
    assert {p: _digest(p) for p in (clip, face)} == before


def test_doctor_says_per_workflow_whether_it_runs_here_and_how_to_fix_it() -> None:
    result = vfx("doctor", "--json", env=PLUGINS)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["workflows"]}
    assert rows["swap"]["ready"] and rows["mocap"]["ready"] and rows["sleep"]["ready"]
    gpu_only = rows["sleep_gpu"]  # a plugin that declares device="gpu"
    assert not gpu_only["ready"] and [gap["kind"] for gap in gpu_only["missing"]] == ["device"]
    human = vfx("doctor", env=PLUGINS).stdout
    assert "sleep_gpu  cannot run here" in human and "needs a GPU" in human


def test_readiness_names_every_gap_with_its_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from pydantic import BaseModel

    from vfxmocap.device import resolve_device
    from vfxmocap.models.store import ModelStore
    from vfxmocap.workflows.readiness import gaps
    from vfxmocap.workflows.registry import Resources, Workflow

    class NoInputs(BaseModel):
        pass

    needs = Resources(device="gpu", memory_gb=10_000, models=("inswapper-128",), extras=("gen",))
    flow = Workflow("big", "", NoInputs, (), lambda *_: None, resources=needs)  # type: ignore[arg-type,return-value]
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "diffusers" else find_spec(name, *a),
    )
    found = {gap.kind: gap for gap in gaps(flow, resolve_device("cpu"), ModelStore())}
    assert set(found) == {"extra", "model", "device", "memory"}
    assert (
        "diffusers" in found["extra"].what and found["extra"].fix == "pip install 'vfxmocap[gen]'"
    )
    assert found["model"].fix.startswith(
        "vfx models pull inswapper-128 (offline: place its files in"
    )


def test_the_cli_starts_without_opencv_torch_or_mediapipe() -> None:
    """`vfx jobs list` or `vfx --help` must not pay for the vision stack (cv2 alone ~0.5 s)."""
    import subprocess
    import sys

    code = (
        "import sys, vfxmocap.cli; print(sorted({'cv2', 'torch', 'mediapipe'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
