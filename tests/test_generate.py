"""`generate` on tiny random-weight diffusers pipelines (Wan 2.1 T2V / I2V, LTX-Video).

The pipelines are built once per session from small configs (tests/tiny_pipelines.py),
saved with `save_pretrained` and loaded back through our loader, as a user's folder would
be. Their weights are random: the tests check frame counts, sizes, seeds, rounding, cancel,
progress, warm loads and errors, not picture quality.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require, run_vfx
from vfxmocap.core.errors import Cancelled, InsufficientMemory, InvalidParams, ModelMissing
from vfxmocap.core.progress import CancelToken, Progress, ProgressEvent
from vfxmocap.media.image import decode_image
from vfxmocap.media.video import VideoReader, probe
from vfxmocap.models.cache import model_cache
from vfxmocap.workflows import get_workflow

PROMPT = "a red cat runs in the snow"


def generate(model: Path | str, output: Path, **inputs: Any) -> Any:
    events: list[ProgressEvent] = []
    progress = Progress(events.append, min_interval_s=0.0, preview_interval_s=0.0)
    cancel = inputs.pop("cancel", CancelToken())
    result = get_workflow("generate")(
        {"model": str(model), "output": output, "steps": 2, "seed": 7, **inputs},
        progress,
        cancel,
    )
    result.events = events
    return result


def frames_of(path: Path) -> list[np.ndarray]:
    with VideoReader(path) as reader:
        return list(reader)


def test_wan_text_to_video_rounds_frames_and_sides_and_says_so(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "wan.mp4"
    result = generate(tiny["wan-t2v"], out, prompt=PROMPT, frames=10, width=35, height=32)
    info = probe(out)
    assert (info.frame_count, info.width, info.height, info.fps) == (9, 32, 32, 16.0)
    assert result.summary["rounded"] == (
        "frames 10 -> 9: Wan needs 4k+1 frames; width 35 -> 32: Wan needs multiples of 16"
    )
    sidecar = json.loads(result.outputs["metadata"].read_text())
    assert sidecar["prompt"] == PROMPT and sidecar["seed"] == 7 and sidecar["steps"] == 2
    assert sidecar["pipeline"] == "WanPipeline" and sidecar["model"] == str(tiny["wan-t2v"])
    assert sidecar["plan"]["device"] == "cpu" and sidecar["plan"]["dtype"] == "float32"
    assert set(sidecar["timings"]) >= {"load_s", "denoise_s", "decode_s", "encode_s"}
    assert sidecar["versions"]["diffusers"] == "0.42.1"


def test_the_same_seed_gives_the_same_frames_and_another_seed_others(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    size = {"prompt": PROMPT, "frames": 5, "width": 32, "height": 32}
    first = generate(tiny["wan-t2v"], tmp_path / "a.mp4", **size)
    again = generate(tiny["wan-t2v"], tmp_path / "b.mp4", **size)
    other = generate(tiny["wan-t2v"], tmp_path / "c.mp4", **{**size, "seed": 8})
    a, b, c = (frames_of(r.outputs["video"]) for r in (first, again, other))
    assert len(a) == 5 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, z) for x, z in zip(a, c, strict=True))


def test_ltx_text_and_image_to_video_from_one_checkpoint(
    tiny: dict[str, Path], tmp_path: Path, astronaut: Path
) -> None:
    text = generate(tiny["ltx"], tmp_path / "t.mp4", prompt=PROMPT, frames=12, width=64, height=70)
    assert (probe(text.outputs["video"]).frame_count, text.summary["size"]) == (9, "64x64")
    assert "frames 12 -> 9: LTX-Video needs 8k+1 frames" in text.summary["rounded"]
    image = generate(
        tiny["ltx"],
        tmp_path / "i.mp4",
        prompt=PROMPT,
        image=str(astronaut),
        frames=9,
        width=64,
        height=64,
    )
    assert image.summary["pipeline"] == "LTXImageToVideoPipeline"
    assert probe(image.outputs["video"]).frame_count == 9


def test_wan_image_to_video_needs_its_image(
    tiny: dict[str, Path], tmp_path: Path, astronaut: Path
) -> None:
    out = tmp_path / "i2v.mp4"
    result = generate(tiny["wan-i2v"], out, image=str(astronaut), frames=5, width=32, height=32)
    assert probe(out).frame_count == 5 and result.summary["pipeline"] == "WanImageToVideoPipeline"
    with pytest.raises(InvalidParams, match=r"image: .* needs an image"):
        generate(tiny["wan-i2v"], tmp_path / "x.mp4", prompt=PROMPT)


def test_conditioning_a_model_cannot_take_is_invalid_and_names_the_field(
    tiny: dict[str, Path], tmp_path: Path, astronaut: Path
) -> None:
    with pytest.raises(
        InvalidParams,
        match=r"^prompt: this Wan model \(WanPipeline\) is text-to-video and needs a prompt",
    ):
        generate(tiny["wan-t2v"], tmp_path / "x.mp4")
    with pytest.raises(InvalidParams, match=r"^image: .* text-to-video and takes no image"):
        generate(tiny["wan-t2v"], tmp_path / "x.mp4", prompt=PROMPT, image=str(astronaut))
    assert not list(tmp_path.iterdir())


def test_progress_counts_every_step_then_the_decode_and_sends_latent_previews(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    result = generate(
        tiny["wan-t2v"],
        tmp_path / "p.mp4",
        prompt=PROMPT,
        frames=5,
        width=32,
        height=32,
        steps=4,
    )
    steps = [e.value for e in result.events if e.stage == "denoise" and e.preview is None]
    assert steps == [0, 1, 2, 3, 4]
    stages = list(dict.fromkeys(e.stage for e in result.events))
    assert stages == ["plan", "load model", "denoise", "decode", "encode"]
    plan = [e.message for e in result.events if e.stage == "plan"]
    assert plan[-1] == result.summary["plan"] and plan[-1].startswith("cpu: float32")
    decode = [e for e in result.events if e.stage == "decode"]
    assert decode[-1].value == decode[-1].max == 1 and decode[-1].percent == 100.0
    previews = [e.preview for e in result.events if e.preview is not None]
    assert len(previews) == 3  # steps 0, 2 and the last
    assert decode_image(previews[0]).shape == (32, 32, 3)  # the 4x4 latent, at video size


def test_cancel_between_steps_stops_at_once_and_writes_nothing(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    token = CancelToken()
    events: list[ProgressEvent] = []

    def listen(event: ProgressEvent) -> None:
        events.append(event)
        if event.stage == "denoise" and event.value == 1:
            token.cancel()

    with pytest.raises(Cancelled):
        get_workflow("generate")(
            {
                "model": str(tiny["wan-t2v"]),
                "prompt": PROMPT,
                "frames": 5,
                "width": 32,
                "height": 32,
                "steps": 6,
                "output": tmp_path / "c.mp4",
            },
            Progress(listen, min_interval_s=0.0),
            token,
        )
    assert max(e.value for e in events if e.stage == "denoise") == 1
    assert "decode" not in {e.stage for e in events}
    assert not list(tmp_path.iterdir())


def out_of_memory_on_first(
    monkeypatch: pytest.MonkeyPatch, calls: int, backends: tuple[str, ...] = ()
) -> list[tuple[int, ...]]:
    """The tiny Wan transformer raises CUDA's out-of-memory error on its first `calls`
    forward passes, as a too-large video would; returns the latent shape of every pass.
    `backends`: the quantization backends the planner sees (none: its 8-bit rung is left
    out whatever is installed)."""
    torch = require("torch")
    from diffusers import WanTransformer3DModel

    from vfxmocap.generation import planner

    monkeypatch.setattr(planner, "installed_quant_backends", lambda: backends)

    shapes: list[tuple[int, ...]] = []
    forward = WanTransformer3DModel.forward

    def failing(self: Any, hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
        shapes.append(tuple(hidden_states.shape))
        if len(shapes) <= calls:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return forward(self, hidden_states, *args, **kwargs)

    monkeypatch.setattr(WanTransformer3DModel, "forward", failing)
    return shapes


def test_out_of_memory_steps_down_the_resolution_records_each_step_and_succeeds(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the CPU there is no lighter offload tier: the sides step down a quarter at a time;
    the weights fit as placed, so the pipeline stays warm (one cache entry)."""
    model_cache().clear()
    shapes = out_of_memory_on_first(monkeypatch, 2)
    out = tmp_path / "oom.mp4"
    result = generate(tiny["wan-t2v"], out, prompt=PROMPT, frames=9, width=64, height=64)
    steps = [
        "out of memory at 64x64x9, offload none: 48x48",
        "out of memory at 48x48x9, offload none: 32x32",
    ]
    assert result.summary["step_downs"] == steps
    assert (result.summary["size"], result.summary["frames"]) == ("32x32", 9)
    info = probe(out)
    assert (info.width, info.height, info.frame_count) == (32, 32, 9)
    assert [s[-2:] for s in shapes[:3]] == [(8, 8), (6, 6), (4, 4)]  # latents: pixels / 8
    recorded = [e.message for e in result.events if e.stage == "out of memory"]
    assert list(dict.fromkeys(recorded)) == steps
    assert json.loads(result.outputs["metadata"].read_text())["step_downs"] == steps
    assert len([k for k in model_cache().cached() if str(tiny["wan-t2v"].resolve()) in k]) == 1


def test_out_of_memory_on_the_cpu_tries_8bit_weights_first_and_generates_with_them(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With optimum-quanto installed, the first step down keeps the size and loads the
    pipeline again with int8 weights; the unquantized one leaves the model cache."""
    require("optimum.quanto")
    model_cache().clear()
    out_of_memory_on_first(monkeypatch, 1, backends=("quanto",))
    out = tmp_path / "int8.mp4"
    result = generate(tiny["wan-t2v"], out, prompt=PROMPT, frames=9, width=64, height=64)
    assert result.summary["step_downs"] == [
        "out of memory at 64x64x9, offload none: offload none, int8 weights (quanto)"
    ]
    recorded = json.loads(result.outputs["metadata"].read_text())["plan"]
    assert (recorded["quantize"], recorded["quant_backend"]) == ("int8", "quanto")
    assert (probe(out).width, probe(out).frame_count) == (64, 9)
    cached = [k for k in model_cache().cached() if str(tiny["wan-t2v"].resolve()) in k]
    assert [k[-1] for k in cached] == ["int8-quanto"]


def test_quantize_off_never_takes_8bit_weights_even_with_a_backend_installed(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--quantize off: with optimum-quanto seen as installed the first step down is the
    smaller size, not int8 weights, and the plan records unquantized weights."""
    model_cache().clear()
    out_of_memory_on_first(monkeypatch, 1, backends=("quanto",))
    out = tmp_path / "off.mp4"
    result = generate(
        tiny["wan-t2v"], out, prompt=PROMPT, frames=9, width=64, height=64, quantize="off"
    )
    assert result.summary["step_downs"] == ["out of memory at 64x64x9, offload none: 48x48"]
    recorded = json.loads(result.outputs["metadata"].read_text())["plan"]
    assert (recorded["quantize"], recorded["quant_backend"]) == (None, None)


def test_out_of_memory_at_every_step_is_retryable_insufficient_memory_and_frees_the_model(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_cache().clear()
    out_of_memory_on_first(monkeypatch, 1000)
    with pytest.raises(InsufficientMemory) as failed:
        generate(tiny["wan-t2v"], tmp_path / "x.mp4", prompt=PROMPT, frames=9, width=64, height=64)
    message = failed.value.message
    assert "CUDA out of memory" in message and "last plan: cpu: float32" in message
    assert "48x48; " in message and "32x32; " in message and "5 frames" in message
    assert failed.value.retryable and failed.value.to_dict()["code"] == "insufficient_memory"
    assert not [k for k in model_cache().cached() if str(tiny["wan-t2v"].resolve()) in k]
    assert not list(tmp_path.iterdir())
    with pytest.raises(InvalidParams) as invalid:  # bad input is never worth a retry
        generate(tiny["wan-t2v"], tmp_path / "x.mp4")
    assert not invalid.value.retryable


def test_a_second_job_on_the_same_model_finds_it_warm(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    model_cache().clear()
    size = {"prompt": PROMPT, "frames": 5, "width": 32, "height": 32}
    cold = generate(tiny["ltx"], tmp_path / "1.mp4", **{**size, "width": 64, "height": 64})
    warm = generate(tiny["ltx"], tmp_path / "2.mp4", **{**size, "width": 64, "height": 64})
    assert (cold.summary["warm"], warm.summary["warm"]) == (False, True)
    assert warm.summary["load_s"] < cold.summary["load_s"]
    keys = [k for k in model_cache().cached() if str(tiny["ltx"].resolve()) in k]
    assert len(keys) == 1 and "float32" in keys[0]


def test_plan_only_plans_and_writes_nothing(tiny: dict[str, Path], tmp_path: Path) -> None:
    result = generate(tiny["wan-t2v"], tmp_path / "x.mp4", prompt=PROMPT, plan_only=True)
    assert result.outputs == {}
    assert result.summary["plan"].startswith("cpu: float32 (VAE float32), offload none")
    assert result.summary["size"] == "832x480" and result.summary["frames"] == 81  # defaults
    assert not list(tmp_path.iterdir())


def test_missing_models_say_what_to_place_where(tiny: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelMissing, match="neither a catalog model, a folder, nor a Hub repo"):
        generate(tmp_path / "nowhere", tmp_path / "x.mp4", prompt=PROMPT)
    with pytest.raises(ModelMissing, match="not downloaded: fetch the Hugging Face repo") as got:
        generate("wan2.1-t2v-1.3b", tmp_path / "x.mp4", prompt=PROMPT)
    assert "models/wan2.1-t2v-1.3b" in got.value.message
    with pytest.raises(ModelMissing, match="not in the local Hugging Face cache"):
        generate("nobody/no-such-model", tmp_path / "x.mp4", prompt=PROMPT)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelMissing, match=r"no model_index.json"):
        generate(tmp_path / "empty", tmp_path / "x.mp4", prompt=PROMPT)
    broken = shutil.copytree(tiny["wan-t2v"], tmp_path / "broken")
    shutil.rmtree(broken / "vae")
    with pytest.raises(ModelMissing, match=r"lacks the component folder.s. vae"):
        generate(broken, tmp_path / "x.mp4", prompt=PROMPT)


def test_a_hub_repo_in_the_local_cache_is_used_without_a_download(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--tiny-org--wan-t2v"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny["wan-t2v"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a download attempt would fail loudly
    out = tmp_path / "hub.mp4"
    result = generate("tiny-org/wan-t2v", out, prompt=PROMPT, frames=5, width=32, height=32)
    assert json.loads(result.outputs["metadata"].read_text())["revision"] == commit


def test_requirements_give_routing_the_models_memory() -> None:
    flow = get_workflow("generate")
    catalog = flow.requirements({"model": "wan2.1-i2v-14b-480p", "output": "x.mp4"})
    assert (catalog.memory_gb, catalog.models, catalog.extras) == (
        6.0,
        ("wan2.1-i2v-14b-480p",),
        ("gen",),
    )
    elsewhere = flow.requirements({"model": "/on/the/worker/only", "output": "x.mp4"})
    assert elsewhere.models == () and elsewhere.memory_gb == 1.0


def test_importing_the_workflow_imports_neither_torch_nor_diffusers() -> None:
    code = (
        "import sys, vfxmocap.workflows.generate; from vfxmocap.workflows import all_workflows;"
        "all_workflows(); print('torch' in sys.modules, 'diffusers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_cli_plan_only_prints_the_plan(tiny: dict[str, Path], tmp_path: Path) -> None:
    result = run_vfx(
        "generate",
        "--model",
        tiny["wan-t2v"],
        "--prompt",
        PROMPT,
        "--frames",
        "10",
        "--output",
        tmp_path / "x.mp4",
        "--plan-only",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "offload none" in result.stdout and "frames 10 -> 9" in result.stdout
    assert not (tmp_path / "x.mp4").exists()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The API with one spawned worker process, as `vfx serve` runs it."""
    from fastapi.testclient import TestClient

    from vfxmocap.api.app import create_app
    from vfxmocap.core.config import Settings
    from vfxmocap.jobs.service import JobService

    data = tmp_path_factory.mktemp("gen_server")
    service = JobService(Settings(data_dir=data, models_dir=data / "models", workers=1))
    with TestClient(create_app(service), base_url="http://127.0.0.1:8420") as client:
        yield client


def served_model(server: Any, folder: Path) -> str:
    """A model folder copied into the server's models folder, and the name a client gives it
    (over the API a model folder must lie in there)."""
    models = server.app.state.service.settings.models_dir
    shutil.copytree(folder, models / folder.name, dirs_exist_ok=True)
    return folder.name


def tiny_job(
    server: Any, workflow: str, folder: Path, timeout: float = 180, **inputs: Any
) -> tuple[str, dict[str, Any]]:
    """A job on a tiny model at 32x32, 2 steps, seed 3, waited for: its id and its record
    (it must succeed)."""
    from tests.test_api import submit, wait

    small = {"width": 32, "height": 32, "steps": 2, "seed": 3}
    job_id = submit(server, workflow, model=served_model(server, folder), **small, **inputs)
    job = wait(server, job_id, timeout=timeout)
    assert job["state"] == "succeeded", job
    return job_id, job


def test_a_generate_job_through_the_api(tiny: dict[str, Path], server: Any) -> None:
    job_id, job = tiny_job(server, "generate", tiny["wan-t2v"], prompt=PROMPT, frames=5)
    video = server.get(f"/api/jobs/{job_id}/outputs/video")
    assert video.status_code == 200 and len(video.content) > 0
    meta = server.get(f"/api/jobs/{job_id}/outputs/metadata").json()
    assert (meta["frames"], meta["seed"], meta["width"]) == (5, 3, 32)
    assert job["summary"]["plan"].startswith("cpu: float32 (VAE float32), offload none")
    assert meta["plan"]["offload"] == "none" and meta["step_downs"] == []


def test_a_chained_schedule_job_through_the_api(
    tiny: dict[str, Path], server: Any, astronaut: Path
) -> None:
    """A schedule in the prompt and an uploaded first frame; the job's summary and sidecar
    carry the segments and the prompts as worded."""
    from tests.test_api import upload

    job_id, job = tiny_job(
        server,
        "generate",
        tiny["wan-i2v"],
        prompt="0s: a red cat runs, 1s: a dog runs in the snow",
        image=upload(server, astronaut),
        negative="fog",
        frames=13,
        fps=8,
        segment_frames=9,
        seam_frames=1,
    )
    assert (job["summary"]["segments"], job["summary"]["frames"]) == (2, 13)
    assert (job["summary"]["prompt"], job["summary"]["negative"]) == ("a red cat runs", "fog")
    meta = server.get(f"/api/jobs/{job_id}/outputs/metadata").json()
    assert [(s["start"], s["kept"], s["prompt"]) for s in meta["segments"]] == [
        (0, 8, "a red cat runs"),
        (7, 6, "a dog runs in the snow"),
    ]


def _one_component_folder(folder: Path) -> Path:
    """A diffusers folder whose transformer has real safetensors weights (a 256x256 tensor)."""
    from safetensors.numpy import save_file

    (folder / "transformer").mkdir(parents=True)
    index = {"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    save_file({"w": np.ones((256, 256), np.float32)}, str(weights))
    return weights


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda data: data[:-100], "truncated"),
        (lambda data: data[:5], "shorter than a header"),
        (lambda data: data[:8] + b"{not json" + data[17:], "header cannot be read"),
        (lambda data: (2**62).to_bytes(8, "little") + data[8:], "header cannot be read"),
    ],
)
def test_a_corrupt_safetensors_file_is_a_model_error_naming_it(
    tmp_path: Path, damage: Any, says: str
) -> None:
    """Weights cut short or with a broken header: the model error says which file and to
    fetch it again, not an internal error."""
    from vfxmocap.generation.loader import resolve

    weights = _one_component_folder(tmp_path / "model")
    assert resolve(str(tmp_path / "model"), files=False).weights_gb == 0.0001  # 2 B x 65536
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(ModelMissing, match=says) as info:
        resolve(str(tmp_path / "model"), files=False)
    assert str(weights) in info.value.message and "fetch it again" in info.value.hint


def test_an_hf_model_is_looked_up_in_the_hub_cache_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hf:org/name` (how the API stores a repo id) never reads as a folder, even where a
    folder of that name exists: a client cannot probe paths relative to a worker."""
    from huggingface_hub import constants

    from vfxmocap.generation.loader import resolve

    _one_component_folder(tmp_path / "org" / "name")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve("org/name", files=False).class_name == "WanPipeline"  # the CLI's folder
    with pytest.raises(ModelMissing, match="not in the local Hugging Face cache"):
        resolve("hf:org/name", files=False)


def test_a_pose_transfer_job_through_the_api(
    tiny: dict[str, Path], server: Any, carphone: Path, astronaut: Path
) -> None:
    """Uploaded driver and reference; the job records the plan and serves all three outputs."""
    from tests.test_api import upload

    job_id, job = tiny_job(
        server,
        "pose-transfer",
        tiny["wan-vace"],
        timeout=240,
        driving=upload(server, carphone),
        reference=upload(server, astronaut),
        prompt=PROMPT,
        frames=5,
    )
    assert job["summary"]["pipeline"] == "WanVACEPipeline"
    assert job["summary"]["plan"].startswith("cpu: float32")
    for name in ("video", "metadata", "pose_video"):
        assert server.get(f"/api/jobs/{job_id}/outputs/{name}").status_code == 200, name


# --- bench/generate.py --random-weights -----------------------------------------------------


def _bench() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "generate.py"
    spec = importlib.util.spec_from_file_location("bench_generate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_builds_a_model_from_its_configs_alone_and_runs_it(tiny, tmp_path) -> None:
    """`--random-weights CONFIG`: a tiny Wan folder with its weight files removed (what a
    Hub repo is without them) is built with random weights, sized on the meta device as
    our loader sizes the saved weights, planned, and run for the asked size and steps."""
    from vfxmocap.generation.loader import _safetensors_elements

    configs = tmp_path / "configs"
    shutil.copytree(tiny["wan-t2v"], configs, ignore=shutil.ignore_patterns("*.safetensors"))
    row = _bench().random_weights(configs, 32, 32, 9, 3)
    assert (row["model"], row["video"], row["steps"]) == ("WanPipeline", "32x32x9", 3)
    saved = {
        name: sum(_safetensors_elements(f) for f in (tiny["wan-t2v"] / name).glob("*.safetensors"))
        for name in ("transformer", "text_encoder", "vae")
    }
    assert row["parameters"] == saved
    assert row["s_per_step"] > 0 and row["peak_gb"] > 0 and row["plan"].startswith("cpu: ")


def test_a_full_size_config_is_sized_on_the_meta_device_against_its_published_size(
    tmp_path,
) -> None:
    """Wan 2.1 T2V 1.3B's published transformer config (its Hub repo's
    transformer/config.json) counts the 1.3B parameters its name says, without allocating
    them."""
    folder = tmp_path / "wan-1.3b"
    (folder / "transformer").mkdir(parents=True)
    index = {"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    config = {
        "_class_name": "WanTransformer3DModel",
        "added_kv_proj_dim": None,
        "attention_head_dim": 128,
        "cross_attn_norm": True,
        "eps": 1e-06,
        "ffn_dim": 8960,
        "freq_dim": 256,
        "image_dim": None,
        "in_channels": 16,
        "num_attention_heads": 12,
        "num_layers": 30,
        "out_channels": 16,
        "patch_size": [1, 2, 2],
        "qk_norm": "rms_norm_across_heads",
        "rope_max_seq_len": 1024,
        "text_dim": 4096,
    }
    (folder / "transformer" / "config.json").write_text(json.dumps(config))
    bench = _bench()
    counts = bench.parameters(folder, bench._index(folder))
    assert counts["transformer"] / 1e9 == pytest.approx(1.3, abs=0.15)


ANIMATEDIFF_ENTRY = """
[[models]]
name = "tiny-animatediff"
task = "text-to-video"
backend = "diffusers"
description = "A toy AnimateDiff laid out as the catalog's animatediff-v1-5-2."
license = "test"
memory_gb = 1.0
pipeline = "AnimateDiffPipeline"
snapshot = true
source = { kind = "huggingface", repo = "example/tiny-sd-base" }
components = { motion_adapter = "example/tiny-motion-adapter" }
"""


def test_a_catalog_model_with_a_component_repo_says_what_to_place_then_generates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AnimateDiff's catalog layout: a Stable Diffusion 1.5 base (its index naming the safety
    checker it leaves out) with the motion adapter's own repo in motion_adapter/. Without the
    adapter the model is missing and the message names both repos and folders; placed, the
    catalog's pipeline class runs over the base, counting the adapter's weights."""
    from tests.tiny_pipelines import animatediff_catalog_layout
    from vfxmocap.core.config import reload_settings
    from vfxmocap.generation.loader import resolve
    from vfxmocap.models.store import ModelStore

    catalog = tmp_path / "catalog.toml"
    catalog.write_text(ANIMATEDIFF_ENTRY)
    monkeypatch.setenv("VFX_CATALOG", str(catalog))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reload_settings()
    store = ModelStore()
    folder = store.directory(store.catalog.get("tiny-animatediff"))
    animatediff_catalog_layout(folder)
    shutil.rmtree(folder / "motion_adapter")
    state = store.status("tiny-animatediff")
    assert state.missing == [
        "motion_adapter/config.json",
        "motion_adapter/diffusion_pytorch_model.safetensors",
    ]
    with pytest.raises(ModelMissing) as missing:
        resolve("tiny-animatediff")
    assert f"example/tiny-sd-base into {folder}" in missing.value.message
    assert f"example/tiny-motion-adapter into {folder / 'motion_adapter'}" in missing.value.message

    animatediff_catalog_layout(folder)
    ref = resolve("tiny-animatediff")
    assert (ref.class_name, ref.family.name, ref.parts) == (
        "AnimateDiffPipeline",
        "animatediff",
        {"motion_adapter": folder / "motion_adapter"},
    )
    out = tmp_path / "ad.mp4"
    result = generate("tiny-animatediff", out, prompt=PROMPT, frames=8, width=64, height=64)
    assert result.summary["pipeline"] == "AnimateDiffPipeline"
    assert (probe(out).width, probe(out).frame_count) == (64, 8)
