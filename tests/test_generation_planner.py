"""The memory planner's decisions on simulated machines, against published memory figures.

Machines are simulated as tests/test_device.py does (fake torch and platform probes given
to device.py, the only module that probes devices); the figures are the catalog's (Wan 2.1
1.3B ~8.2 GB with its model offloaded, 11 GB with model offload per diffusers' docs; Wan 14B
~13 GB with group offload, 35 GB with model offload) and CogVideoX-5B's model card (20.7 GB
with model offload and VAE tiling, 26 GB with everything resident).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tests.test_device import fake_ort, fake_torch
from vfxmocap import device
from vfxmocap.core.config import reload_settings
from vfxmocap.core.errors import DeviceError, InsufficientMemory
from vfxmocap.device import DeviceReport, resolve_device
from vfxmocap.generation.families import FAMILIES, LTX, CogVideoX, Request, Wan, family_of
from vfxmocap.generation.loader import catalog_figures
from vfxmocap.generation.planner import MemoryFigures, Offload, plan, step_down
from vfxmocap.models.catalog import load_catalog

GIB = 1024**3


def figures(name: str) -> MemoryFigures:
    return catalog_figures(load_catalog().get(name))


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """`machine("cuda", 24)` -> the DeviceReport of a simulated 24 GB CUDA machine."""
    monkeypatch.delenv("VFX_DEVICE", raising=False)
    reload_settings()

    def install(kind: str, memory_gb: float, *, compute: int = 8) -> DeviceReport:
        gpus = (SimpleNamespace(name="GPU", total_memory=int(memory_gb * GIB), major=compute),)
        torch = fake_torch(gpus if kind == "cuda" else (), mps=kind == "mps")
        ram = memory_gb if kind != "cuda" else 64.0
        monkeypatch.setattr(device, "_torch", lambda: torch)
        monkeypatch.setattr(device, "_onnxruntime", lambda: fake_ort("CPUExecutionProvider"))
        monkeypatch.setattr(device, "_is_apple_silicon", lambda: kind == "mps")
        monkeypatch.setattr(device, "_nvidia_driver_present", lambda: kind == "cuda")
        monkeypatch.setattr(device, "_nvidia_gpu_count", lambda: None)
        monkeypatch.setattr(device, "_system_memory_gb", lambda: ram)
        return resolve_device(kind)

    return install


@pytest.mark.parametrize(
    ("memory_gb", "wan_1_3b", "wan_14b", "ltx", "cogvideox"),
    [
        (8, Offload.SEQUENTIAL, Offload.SEQUENTIAL, Offload.GROUP, Offload.SEQUENTIAL),
        (16, Offload.MODEL, Offload.GROUP, Offload.MODEL, Offload.GROUP),
        (24, Offload.NONE, Offload.GROUP, Offload.NONE, Offload.MODEL),
        (80, Offload.NONE, Offload.NONE, Offload.NONE, Offload.NONE),
    ],
)
def test_cuda_takes_the_lightest_offload_that_fits(
    machine, memory_gb: float, wan_1_3b: Offload, wan_14b: Offload, ltx: Offload, cogvideox: Offload
) -> None:
    gpu = machine("cuda", memory_gb)
    chosen = {
        "wan 1.3b": plan(gpu, figures("wan2.1-t2v-1.3b"), Wan()).offload,
        "wan 14b": plan(gpu, figures("wan2.1-i2v-14b-480p"), Wan()).offload,
        "ltx": plan(gpu, figures("ltx-video"), LTX()).offload,
        "cogvideox": plan(gpu, figures("cogvideox-5b"), CogVideoX()).offload,
    }
    assert chosen == {"wan 1.3b": wan_1_3b, "wan 14b": wan_14b, "ltx": ltx, "cogvideox": cogvideox}


def test_published_figures_decide_the_boundaries(machine) -> None:
    """Wan 1.3B's 8.2 GB does not fit an 8 GB card (90% usable) but does a 10 GB one; Wan
    14B's 13 GB group-offload figure fits 16 GB; CogVideoX's 20.7 GB fits 24 GB, its 26 not."""
    assert plan(machine("cuda", 10), figures("wan2.1-t2v-1.3b"), Wan()).offload is Offload.GROUP
    wan_14b = plan(machine("cuda", 16), figures("wan2.1-i2v-14b-480p"), Wan())
    assert (wan_14b.offload, wan_14b.need_gb, wan_14b.usable_gb) == (Offload.GROUP, 13.0, 14.4)
    cog = plan(machine("cuda", 24), figures("cogvideox-5b"), CogVideoX())
    assert (cog.offload, cog.need_gb) == (Offload.MODEL, 20.7)


def test_cuda_dtype_is_bf16_where_the_gpu_has_it_else_fp16_with_a_warning(machine) -> None:
    ampere = plan(machine("cuda", 24, compute=8), figures("wan2.1-t2v-1.3b"), Wan())
    turing = plan(machine("cuda", 24, compute=7), figures("wan2.1-t2v-1.3b"), Wan())
    assert (ampere.dtype, ampere.notes) == ("bfloat16", ())
    assert turing.dtype == "float16" and "black frames" in turing.notes[0]
    assert ampere.vae_dtype == turing.vae_dtype == "float32"  # Wan's VAE overflows in half
    assert plan(machine("cuda", 24), figures("ltx-video"), LTX()).vae_dtype == "bfloat16"


def test_vae_tiling_when_memory_is_tight_or_the_video_is_larger_than_the_reference(
    machine,
) -> None:
    roomy, tight = machine("cuda", 80), machine("cuda", 8)
    wan = figures("wan2.1-t2v-1.3b")
    assert not plan(roomy, wan, Wan(), 832 * 480 * 81).vae_tiling
    assert plan(tight, wan, Wan(), 832 * 480 * 81).vae_tiling
    big = plan(roomy, wan, Wan(), 1280 * 720 * 81)
    assert big.vae_tiling and big.vae_slicing and "VAE tiling on" in big.notes[0]


@pytest.mark.parametrize(
    ("memory_gb", "wan_1_3b", "wan_14b"),
    [(16, Offload.MODEL, None), (64, Offload.NONE, Offload.NONE)],
)
def test_mps_plans_within_metals_share_in_the_familys_dtype(
    machine, memory_gb: float, wan_1_3b: Offload, wan_14b: Offload | None
) -> None:
    mac = machine("mps", memory_gb)
    small = plan(mac, figures("wan2.1-t2v-1.3b"), Wan())
    assert (small.offload, small.dtype, small.device) == (wan_1_3b, "bfloat16", "mps")
    assert small.usable_gb == memory_gb * 0.75
    if wan_14b is None:  # unified memory: group or sequential offload would save nothing
        with pytest.raises(InsufficientMemory, match="offload model"):
            plan(mac, figures("wan2.1-i2v-14b-480p"), Wan())
    else:
        assert plan(mac, figures("wan2.1-i2v-14b-480p"), Wan()).offload is wan_14b


def test_cpu_runs_fp32_without_offload_and_refuses_what_its_memory_cannot_hold(machine) -> None:
    cpu = machine("cpu", 64)
    small = plan(cpu, figures("wan2.1-t2v-1.3b"), Wan())
    assert (small.dtype, small.vae_dtype, small.offload, small.vae_tiling) == (
        "float32",
        "float32",
        Offload.NONE,
        False,
    )
    assert small.need_gb == 34.0  # the half-precision figure, doubled
    with pytest.raises(InsufficientMemory) as refused:
        plan(cpu, figures("wan2.1-i2v-14b-480p"), Wan())
    assert "96 GB" in refused.value.message and "51.2 GB usable" in refused.value.message


def test_model_offload_on_a_cpu_is_refused_before_diffusers_is_asked(machine) -> None:
    """diffusers raises a bare RuntimeError ('requires accelerator'); we say what it is."""
    from dataclasses import replace

    from vfxmocap.generation.loader import _place

    cpu_plan = plan(machine("cpu", 64), figures("wan2.1-t2v-1.3b"), Wan())
    with pytest.raises(DeviceError, match="needs an accelerator"):
        _place(object(), replace(cpu_plan, offload=Offload.MODEL))


def test_estimates_from_weights_rank_the_tiers() -> None:
    estimate = MemoryFigures.from_weights({"transformer": 2.8, "text_encoder": 11.4, "vae": 0.3})
    tiers = [estimate.gb[t] for t in Offload]
    assert tiers == sorted(tiers, reverse=True) and estimate.least_gb == tiers[-1]
    assert estimate.source == "estimated from the weights"


@pytest.mark.parametrize(
    ("tier", "call"),
    [
        (Offload.NONE, "to"),
        (Offload.MODEL, "enable_model_cpu_offload"),
        (Offload.GROUP, "enable_group_offload"),
        (Offload.SEQUENTIAL, "enable_sequential_cpu_offload"),
    ],
)
def test_each_tier_installs_its_diffusers_switch_on_the_plans_device(
    machine, tier: Offload, call: str
) -> None:
    """No GPU here: a recording stand-in for the pipeline shows which switch each tier uses."""
    from dataclasses import replace

    from vfxmocap.generation.loader import _place

    calls: list[tuple[str, Any]] = []

    class Recorder:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kwargs: calls.append((name, kwargs.get("device", args)))

    gpu_plan = plan(machine("cuda", 80), figures("wan2.1-t2v-1.3b"), Wan())
    _place(Recorder(), replace(gpu_plan, offload=tier))
    assert [name for name, _ in calls] == [call]
    if tier in (Offload.MODEL, Offload.SEQUENTIAL):
        assert calls[0][1] == "cuda:0"


def test_out_of_memory_steps_down_the_offload_tier_then_the_resolution_then_the_frames(
    machine,
) -> None:
    """On a 24 GB card Wan 1.3B starts with everything on the GPU; each out-of-memory takes
    the next lighter tier (with its figure), then a quarter off the sides (to half the
    asked), then half the frames (to a quarter of the asked), then gives up."""
    wan = figures("wan2.1-t2v-1.3b")
    asked = Request("a cat", "", 81, 832, 480, 50, 5.0, 0)
    placed, request = plan(machine("cuda", 24), wan, Wan()), asked
    notes, needs = [], []
    while (step := step_down(placed, request, asked, wan, Wan())) is not None:
        placed, request = step.plan, step.request
        notes.append(step.note.partition(": ")[2])
        needs.append(placed.need_gb)
    assert notes == [
        "offload model",
        "offload group",
        "offload sequential",
        "624x368",
        "464x272",
        "41 frames",
        "21 frames",
    ]
    assert needs[:3] == [11.0, 8.2, 5.0] and placed.vae_tiling
    assert (request.width, request.height, request.frames) == (464, 272, 21)
    assert step_down(plan(machine("mps", 64), wan, Wan()), asked, asked, wan, Wan()).note == (
        "out of memory at 832x480x81, offload none: offload model"
    )


def test_every_video_model_in_the_catalog_is_a_family_the_planner_can_place(machine) -> None:
    """Each diffusers entry names a pipeline class a family runs, a license, its weights and
    figures for every tier that shrink as more is offloaded; each plans on an 80 GB card."""
    gpu = machine("cuda", 80)
    entries = [s for s in load_catalog() if s.backend == "diffusers"]
    assert {family_of(s.pipeline or "", s.name).name for s in entries} >= {
        f.name for f in FAMILIES if f.name != "animatediff"
    }
    for spec in entries:
        tiers = [figures(spec.name).gb[t] for t in Offload]
        assert tiers == sorted(tiers, reverse=True), spec.name
        assert spec.license.strip() and spec.weights_gb and spec.source.repo, spec.name
        assert plan(gpu, figures(spec.name), family_of(spec.pipeline or "", spec.name))


def test_stable_video_diffusion_decodes_fewer_frames_at_once_when_memory_is_tight(
    machine,
) -> None:
    from vfxmocap.generation.families import StableVideoDiffusion

    svd, xt = StableVideoDiffusion(), figures("svd-img2vid-xt")
    roomy, tight = plan(machine("cuda", 24), xt, svd), plan(machine("cuda", 12), xt, svd)
    assert (roomy.offload, roomy.decode_chunk) == (Offload.NONE, 8)
    assert (tight.offload, tight.decode_chunk) == (Offload.GROUP, 2)
    assert roomy.call_kwargs() == {"decode_chunk_size": 8}
    assert plan(machine("cuda", 24), figures("wan2.1-t2v-1.3b"), Wan()).call_kwargs() == {}
