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
from vfxmocap.generation import planner
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
    # On CPU the planner counts this process's warm pipelines back as free: none here
    # (earlier tests in the session may have left some in the model cache).
    monkeypatch.setattr(planner, "_held_gb", lambda kind: 0.0)

    def install(
        kind: str,
        memory_gb: float,
        *,
        compute: int = 8,
        others_gb: float = 0.0,
        backends: tuple[str, ...] = (),
    ) -> DeviceReport:
        """`others_gb`: memory other processes hold there; `backends`: the quantization
        backends installed."""
        gpus = (SimpleNamespace(name="GPU", total_memory=int(memory_gb * GIB), major=compute),)
        torch = fake_torch(gpus if kind == "cuda" else (), mps=kind == "mps")
        # What device.py reads for free memory: CUDA's driver figure and this process's
        # cached blocks (none yet); Metal's working set (3/4 of RAM); the OS's available RAM.
        total = int(memory_gb * GIB)
        torch.cuda.mem_get_info = lambda i: (total - int(others_gb * GIB), total)
        torch.cuda.memory_reserved = lambda i: 0
        torch.mps = SimpleNamespace(
            recommended_max_memory=lambda: int(0.75 * total), driver_allocated_memory=lambda: 0
        )
        ram = memory_gb if kind != "cuda" else 64.0
        available = ram - (others_gb if kind != "cuda" else 0.0)
        monkeypatch.setattr(device, "_available_memory_gb", lambda: available)
        monkeypatch.setattr(planner, "installed_quant_backends", lambda: backends)
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
        # 8-bit figures for the resident tiers, each below its bf16 figure.
        int8 = figures(spec.name).int8
        assert set(int8) == {Offload.NONE, Offload.MODEL}, spec.name
        assert all(int8[t] < figures(spec.name).gb[t] for t in int8), spec.name
        assert int8[Offload.NONE] >= int8[Offload.MODEL], spec.name
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


# --- free memory --------------------------------------------------------------------------


def test_a_process_holding_gpu_memory_makes_the_planner_take_a_lighter_tier(machine) -> None:
    """A 24 GB card holds Wan 1.3B's 17 GB resident; with 8 GB taken by another process
    16 GB are free (90%: 14.4 usable) and model offload's 11 GB is what fits."""
    idle, shared = machine("cuda", 24), machine("cuda", 24, others_gb=8)
    assert (idle.free_memory_gb, shared.free_memory_gb) == (24.0, 16.0)
    wan = figures("wan2.1-t2v-1.3b")
    assert plan(idle, wan, Wan()).offload is Offload.NONE
    busy = plan(shared, wan, Wan())
    assert (busy.offload, busy.need_gb, busy.usable_gb, busy.free_gb) == (
        Offload.MODEL,
        11.0,
        14.4,
        16.0,
    )
    assert "16 GB of 24 GB free" in busy.notes[0] and "16 GB free" in busy.describe()
    assert busy.to_dict()["free_gb"] == 16.0  # the job's sidecar records it


def test_what_this_process_already_holds_on_the_gpu_counts_as_free(machine) -> None:
    """Our own warm pipelines sit in torch's cache: a second job on them must plan as the
    first did, so device.py adds what this process reserved back to the driver's figure."""
    gpu = machine("cuda", 24, others_gb=17)
    import vfxmocap.device as probe

    torch = probe._torch()
    torch.cuda.memory_reserved = lambda i: 17 * GIB  # the 17 GB are this process's
    again = resolve_device("cuda")
    assert (gpu.free_memory_gb, again.free_memory_gb) == (7.0, 24.0)
    assert plan(again, figures("wan2.1-t2v-1.3b"), Wan()).offload is Offload.NONE


def test_mps_free_memory_is_metals_working_set_less_what_other_processes_take(machine) -> None:
    """A 64 GB Mac: Metal's working set is 48 GB, enough for Wan 14B resident; with 20 GB
    of unified memory taken by other programs 44 GB are left and model offload it is."""
    wan_14b = figures("wan2.1-i2v-14b-480p")
    idle, busy = machine("mps", 64), machine("mps", 64, others_gb=20)
    assert (idle.free_memory_gb, busy.free_memory_gb) == (48.0, 44.0)
    assert plan(idle, wan_14b, Wan()).offload is Offload.NONE
    assert plan(busy, wan_14b, Wan()).offload is Offload.MODEL


def test_cpu_plans_with_the_ram_the_os_reports_available(machine) -> None:
    """Wan 1.3B in float32 (34 GB) fits a 64 GB machine, not one where other programs
    leave 24 GB; the refusal says what was free."""
    assert plan(machine("cpu", 64), figures("wan2.1-t2v-1.3b"), Wan()).free_gb == 64.0
    with pytest.raises(InsufficientMemory, match=r"19.2 GB usable there \(24 GB free\)"):
        plan(machine("cpu", 64, others_gb=40), figures("wan2.1-t2v-1.3b"), Wan())


def test_a_device_that_cannot_say_what_is_free_plans_with_its_memory(machine) -> None:
    from dataclasses import replace

    unknown = replace(machine("cuda", 24, others_gb=8), free_memory_gb=None)
    chosen = plan(unknown, figures("wan2.1-t2v-1.3b"), Wan())
    assert (chosen.offload, chosen.usable_gb, chosen.free_gb) == (Offload.NONE, 21.6, None)


# --- quantization -------------------------------------------------------------------------


def test_8bit_weights_keep_the_model_resident_where_unquantized_it_would_be_offloaded(
    machine,
) -> None:
    """16 GB card: Wan 1.3B needs model offload in bf16 (17 GB resident > 14.4); with a
    backend installed its 9.9 GB int8 figure runs it resident instead."""
    wan = figures("wan2.1-t2v-1.3b")
    assert plan(machine("cuda", 16), wan, Wan()).rung == (Offload.MODEL, False)
    quanto = plan(machine("cuda", 16, backends=("quanto",)), wan, Wan())
    assert (quanto.offload, quanto.quantize, quanto.quant_backend, quanto.need_gb) == (
        Offload.NONE,
        "int8",
        "quanto",
        9.9,
    )
    assert "int8 weights (quanto)" in quanto.describe()
    assert quanto.key() != plan(machine("cuda", 16), wan, Wan()).key()  # a separate load


def test_bitsandbytes_is_preferred_on_cuda_and_lets_a_lighter_offload_tier_fit(machine) -> None:
    """24 GB card, Wan 14B: bf16 needs group offload (model offload's 35 GB > 21.6); 8-bit
    weights bring model offload to 21 GB."""
    wan_14b = figures("wan2.1-i2v-14b-480p")
    assert plan(machine("cuda", 24), wan_14b, Wan()).rung == (Offload.GROUP, False)
    both = plan(machine("cuda", 24, backends=("bitsandbytes", "quanto")), wan_14b, Wan())
    assert (both.offload, both.quantize, both.quant_backend) == (
        Offload.MODEL,
        "int8",
        "bitsandbytes",
    )
    # Where no 8-bit tier fits, nothing is quantized: group offload streams the bf16 weights.
    small = plan(machine("cuda", 16, backends=("bitsandbytes",)), wan_14b, Wan())
    assert (small.rung, small.quant_backend) == ((Offload.GROUP, False), None)


def test_quantization_makes_a_model_fit_a_mac_where_no_unquantized_tier_does(machine) -> None:
    """A 32 GB Mac (24 GB for Metal): Wan 14B's 35 GB with model offload is refused; quanto's
    int8 weights run it in 21 GB. bitsandbytes alone (CUDA's) is never used on MPS."""
    wan_14b = figures("wan2.1-i2v-14b-480p")
    with pytest.raises(InsufficientMemory, match="offload model") as refused:
        plan(machine("mps", 32, backends=("bitsandbytes",)), wan_14b, Wan())
    assert "install optimum-quanto" in (refused.value.hint or "")
    mac = plan(machine("mps", 32, backends=("bitsandbytes", "quanto")), wan_14b, Wan())
    assert (mac.rung, mac.quant_backend, mac.need_gb) == ((Offload.MODEL, True), "quanto", 21.0)


def test_cpu_quantizes_with_quanto_only(machine) -> None:
    """32 GB of RAM (25.6 usable): Wan 1.3B's 34 GB in float32 does not fit, its int8
    weights (19.8 GB in float32 activations) do; bitsandbytes never runs on a CPU."""
    wan = figures("wan2.1-t2v-1.3b")
    with pytest.raises(InsufficientMemory):
        plan(machine("cpu", 32, backends=("bitsandbytes",)), wan, Wan())
    cpu = plan(machine("cpu", 32, backends=("quanto", "bitsandbytes")), wan, Wan())
    assert (cpu.rung, cpu.quant_backend, cpu.need_gb, cpu.dtype) == (
        (Offload.NONE, True),
        "quanto",
        19.8,
        "float32",
    )


def test_bitsandbytes_is_refused_off_cuda_before_diffusers_is_asked(machine, tmp_path) -> None:
    from dataclasses import replace

    from vfxmocap.generation.loader import _bitsandbytes_config

    cpu_plan = plan(machine("cpu", 64), figures("wan2.1-t2v-1.3b"), Wan())
    forced = replace(cpu_plan, quantize="int8", quant_backend="bitsandbytes")
    with pytest.raises(DeviceError, match="CUDA only"):
        _bitsandbytes_config(tmp_path, forced)


def test_out_of_memory_tries_8bit_weights_before_offloading_more(machine) -> None:
    wan = figures("wan2.1-t2v-1.3b")
    asked = Request("a cat", "", 81, 832, 480, 50, 5.0, 0)
    placed = plan(machine("cuda", 24, backends=("quanto",)), wan, Wan())
    rungs = []
    while (step := step_down(placed, asked, asked, wan, Wan())) is not None:
        if step.plan is placed:
            break
        placed = step.plan
        rungs.append((placed.offload.value, placed.quant_backend, placed.need_gb))
    assert rungs == [
        ("none", "quanto", 9.9),
        ("model", None, 11.0),
        ("model", "quanto", 7.0),
        ("group", None, 8.2),
        ("sequential", None, 5.0),
    ]


def test_estimated_8bit_figures_halve_the_denoiser_and_text_encoder_only() -> None:
    estimate = MemoryFigures.from_weights({"transformer": 2.8, "text_encoder": 11.4, "vae": 0.3})
    # activations: 1 + 11.4 / 4 = 3.85 at every tier
    assert estimate.gb[Offload.NONE] == 18.35 and estimate.int8[Offload.NONE] == 11.25
    assert estimate.int8[Offload.MODEL] == 9.55 and set(estimate.int8) == {
        Offload.NONE,
        Offload.MODEL,
    }
    with pytest.raises(ValueError, match="only none, model"):
        MemoryFigures.from_tiers({t.value: 1.0 for t in Offload}, "x", {"group": 0.5})


def test_a_tiny_pipeline_loads_with_int8_weights_on_the_cpu_and_still_generates(
    machine, tiny
) -> None:
    """optimum-quanto on the CPU: the transformer's and text encoder's linear layers hold
    int8 weights after loading through our loader, and the video comes out at the asked
    size and length, close to the unquantized one's."""
    from dataclasses import replace

    import numpy as np

    from tests.conftest import require
    from vfxmocap.core.progress import CancelToken, Progress
    from vfxmocap.generation.loader import load, resolve
    from vfxmocap.generation.render import render

    require("optimum.quanto")
    import torch
    from optimum.quanto import QLinear

    ref = resolve(str(tiny["wan-t2v"]))
    base = plan(machine("cpu", 64, backends=("quanto",)), ref.figures, ref.family)
    assert base.quantize is None  # it fits unquantized: quantizing is for when it must
    int8 = replace(base, quantize="int8", quant_backend="quanto")
    request = Request("a red cat runs in the snow", "", 9, 32, 32, 2, 5.0, 3)
    videos = {}
    for placed in (base, int8):
        pipe = load(ref, ref.class_name, placed).pipe
        videos[placed.quantize] = render(
            pipe, ref.family, request, Progress(), CancelToken(), ref.class_name
        ).frames
    quantized = load(ref, ref.class_name, int8).pipe
    for component in (quantized.transformer, quantized.text_encoder):
        layers = [m for m in component.modules() if isinstance(m, torch.nn.Linear)]
        assert layers and all(isinstance(m, QLinear) for m in layers)
        assert all(m.weight._data.dtype == torch.int8 for m in layers)
    assert not any(isinstance(m, QLinear) for m in quantized.vae.modules())
    assert not any(
        isinstance(m, QLinear) for m in load(ref, ref.class_name, base).pipe.transformer.modules()
    )
    frames = videos["int8"]
    assert len(frames) == 9 and frames[0].shape == (32, 32, 3) and frames[0].dtype == np.uint8
    difference = np.mean(
        [np.abs(a.astype(int) - b).mean() for a, b in zip(videos[None], frames, strict=True)]
    )
    assert np.stack(frames).std() > 5 and difference < 2  # a picture, moved little by 8 bits


def test_this_linux_machine_reports_the_ram_it_has_available() -> None:
    """The CPU probe reads /proc/meminfo's MemAvailable: some, and no more than the RAM."""
    available = device._available_memory_gb()
    assert available is not None and 0 < available <= device._system_memory_gb() + 0.1
