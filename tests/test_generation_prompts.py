"""Prompts for `generate`: family templates and default negatives, prompt schedules, long
videos chained from segments with cross-faded seams, and prompt expansion by a local text
model, on tiny random-weight pipelines (tests/tiny_pipelines.py) and a tiny random GPT-2.

The weights are random: the tests check which prompts, frames and conditioning each
pipeline call got, how the segments were cut and joined, and what was recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import run_vfx
from tests.test_generate import PROMPT, generate
from vfxmocap.core.config import reload_settings
from vfxmocap.core.errors import InvalidParams, ModelMissing
from vfxmocap.generation.chain import blend
from vfxmocap.generation.prompts import (
    EXPAND_MAX_CHARS,
    Scene,
    parse_schedule,
    scene_frames,
    template_for,
    word,
)
from vfxmocap.media.video import probe
from vfxmocap.workflows import generate as generate_module

SMALL = {"width": 32, "height": 32}
WAN_NEGATIVE = template_for("wan").negative  # type: ignore[union-attr]


# --- schedules -----------------------------------------------------------------------


def test_a_schedule_is_split_at_its_times_keeping_commas_inside_a_scene() -> None:
    scenes = parse_schedule("0s: a man walks, slowly, 4s: he starts running; 6.5 s: he stops")
    assert scenes == [
        Scene(0.0, "a man walks, slowly"),
        Scene(4.0, "he starts running"),
        Scene(6.5, "he stops"),
    ]
    assert scene_frames(scenes, 16, 8 * 16, "prompt") == [0, 64, 104]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a man walks, 4s: he runs", r"starts with a time"),
        ("0s: a man walks, 4s:", r"entry at 4s has no prompt"),
        ("1s: a man walks, 4s: he runs", r"starts at 1s; it must start at 0s"),
        ("0s: a man walks, 4s: he runs, 2s: he stops", r"must increase: 2s comes after 4s"),
        ("0s: a man walks, 0s: he runs", r"must increase: 0s comes after 0s"),
    ],
)
def test_a_malformed_schedule_is_invalid_and_says_why(text: str, says: str) -> None:
    with pytest.raises(InvalidParams, match=says) as error:
        parse_schedule(text)
    assert error.value.message.startswith("prompt: ") and error.value.hint


def test_a_schedule_past_the_clip_or_within_one_frame_is_invalid() -> None:
    with pytest.raises(InvalidParams, match=r"entry at 3s is beyond the clip's 2s"):
        scene_frames([Scene(0, "a"), Scene(3, "b")], 8, 16, "prompt")
    with pytest.raises(InvalidParams, match=r"1s and 1.05s fall on the same frame at 8 fps"):
        scene_frames([Scene(0, "a"), Scene(1, "b"), Scene(1.05, "c")], 8, 80, "prompt")


# --- templates -----------------------------------------------------------------------


def test_templates_wrap_the_prompt_and_a_users_negative_replaces_the_default() -> None:
    worded = word("animatediff", "a cat", "")
    assert worded.prompt == "masterpiece, best quality, a cat" and worded.default_negative
    assert worded.negative == template_for("animatediff").negative  # type: ignore[union-attr]
    assert word("animatediff", "a cat", "fog").negative == "fog"
    raw = word("animatediff", "a cat", "", use_template=False)
    assert (raw.prompt, raw.negative, raw.template) == ("a cat", "", None)
    assert word("svd", "", "").template is None  # it takes no text


def test_a_users_template_file_replaces_a_familys_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "prompts.toml"
    mine.write_text('[wan]\ntemplate = "film still, {prompt}"\nnegative = "text"\n')
    monkeypatch.setenv("VFX_PROMPT_TEMPLATES", str(mine))
    reload_settings()
    assert (word("wan", "a cat", "").prompt, word("wan", "a cat", "").negative) == (
        "film still, a cat",
        "text",
    )
    assert word("ltx", "a cat", "").negative.startswith("worst quality")  # the built-in table
    mine.write_text('[wan]\ntemplate = "no place for the prompt"\n')
    with pytest.raises(InvalidParams, match=r"needs a `template` string containing \{prompt\}"):
        word("wan", "a cat", "")


def calls_of(monkeypatch: pytest.MonkeyPatch, pipeline: str) -> list[dict[str, Any]]:
    """Every call of a diffusers pipeline class: its arguments and the frames it returned
    (as the uint8 frames our renderer makes of them)."""
    import diffusers

    cls = getattr(diffusers, pipeline)
    original = cls.__call__
    calls: list[dict[str, Any]] = []

    def spy(self: Any, **kwargs: Any) -> Any:
        result = original(self, **kwargs)
        frames = (np.clip(np.asarray(result.frames[0]), 0, 1) * 255).round().astype(np.uint8)
        calls.append({**kwargs, "made": list(frames)})
        return result

    monkeypatch.setattr(cls, "__call__", spy)
    return calls


def written_frames(monkeypatch: pytest.MonkeyPatch) -> list[list[np.ndarray]]:
    """The frames each run hands the MP4 writer (the encode is lossy; these are exact)."""
    runs: list[list[np.ndarray]] = []
    original = generate_module._write_video

    def spy(path: Path, frames: list[Any], *args: Any) -> None:
        runs.append(list(frames))
        original(path, frames, *args)

    monkeypatch.setattr(generate_module, "_write_video", spy)
    return runs


def test_the_final_prompt_and_negative_are_used_and_recorded(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = calls_of(monkeypatch, "AnimateDiffPipeline")
    result = generate(tiny["animatediff"], tmp_path / "a.mp4", prompt=PROMPT, frames=4, **SMALL)
    final = f"masterpiece, best quality, {PROMPT}"
    negative = template_for("animatediff").negative  # type: ignore[union-attr]
    assert (calls[0]["prompt"], calls[0]["negative_prompt"]) == (final, negative)
    assert (result.summary["prompt"], result.summary["negative"]) == (final, negative)
    sidecar = json.loads(result.outputs["metadata"].read_text())
    assert (sidecar["prompt"], sidecar["negative"], sidecar["prompt_given"]) == (
        final,
        negative,
        PROMPT,
    )
    assert sidecar["template"] == "masterpiece, best quality, {prompt}"
    assert sidecar["default_negative"] is True
    plain = generate(
        tiny["animatediff"], tmp_path / "p.mp4", prompt=PROMPT, template=False, frames=4, **SMALL
    )
    assert (calls[1]["prompt"], calls[1]["negative_prompt"]) == (PROMPT, "")
    assert plain.summary["negative"] == ""
    mine = generate(
        tiny["animatediff"], tmp_path / "n.mp4", prompt=PROMPT, negative="fog", plan_only=True
    )
    assert (mine.summary["prompt"], mine.summary["negative"]) == (final, "fog")


# --- chains --------------------------------------------------------------------------


def test_a_schedule_chains_wan_image_to_video_segments_from_the_previous_frames(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, astronaut: Path
) -> None:
    """20 frames at 8 fps in 9-frame segments with a 2-frame seam, scenes at 0s and 1s:
    8 frames of the first scene, then 12 of the second in two segments."""
    calls = calls_of(monkeypatch, "WanImageToVideoPipeline")
    written = written_frames(monkeypatch)
    schedule = "0s: a red cat runs, 1s: a dog runs in the snow"
    chain = {"frames": 20, "fps": 8, "segment_frames": 9, "seam_frames": 2, **SMALL}
    out = tmp_path / "chain.mp4"
    result = generate(tiny["wan-i2v"], out, prompt=schedule, image=str(astronaut), **chain)
    sidecar = json.loads(result.outputs["metadata"].read_text())
    cut = [(s["start"], s["kept"], s["overlap"], s["generated"]) for s in sidecar["segments"]]
    assert cut == [(0, 8, 0, 9), (6, 9, 2, 9), (13, 7, 2, 9)]
    assert [s["prompt"] for s in sidecar["segments"]] == [
        "a red cat runs",
        "a dog runs in the snow",
        "a dog runs in the snow",
    ]
    assert [s["seed"] for s in sidecar["segments"]] == [7, 8, 9]
    assert [c["num_frames"] for c in calls] == [9, 9, 9]
    assert all(c["negative_prompt"] == WAN_NEGATIVE for c in calls)
    # Each later segment starts from the previous segment's frame where their seam begins.
    first, second, third = (c["made"] for c in calls)
    assert np.array_equal(np.asarray(calls[1]["image"]), first[8 - 2])
    assert np.array_equal(np.asarray(calls[2]["image"]), second[9 - 2])
    # The output: exactly the frames asked for, the seams cross-faded.
    video = written[0]
    assert len(video) == 20 and probe(out).frame_count == 20
    assert np.array_equal(video[5], first[5])
    assert np.array_equal(video[6], blend(first[6], second[0], 1 / 3))
    assert np.array_equal(video[7], blend(first[7], second[1], 2 / 3))
    assert np.array_equal(video[8], second[2])
    assert np.array_equal(video[13], blend(second[7], third[0], 1 / 3))
    assert np.array_equal(video[19], third[6])
    # One denoise stage counts the steps of all three segments.
    denoise = [e for e in result.events if e.stage == "denoise" and e.preview is None]
    assert {e.max for e in denoise} == {6} and denoise[-1].value == 6
    stages = list(dict.fromkeys(e.stage for e in result.events))
    assert stages == ["plan", "load model", "denoise", "decode", "encode"]
    assert (result.summary["segments"], result.summary["frames"]) == (3, 20)
    # The same seed, the same frames.
    generate(
        tiny["wan-i2v"], tmp_path / "again.mp4", prompt=schedule, image=str(astronaut), **chain
    )
    assert all(np.array_equal(a, b) for a, b in zip(video, written[1], strict=True))


def test_a_long_ltx_video_chains_through_ltx_conditioning(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """17 frames in 9-frame segments with a one-frame seam: the second segment is
    conditioned on the first one's last frame, as a keyframe at its frame 0."""
    calls = calls_of(monkeypatch, "LTXConditionPipeline")
    chain = {"frames": 17, "segment_frames": 9, "seam_frames": 1, "width": 64, "height": 64}
    result = generate(tiny["ltx"], tmp_path / "ltx.mp4", prompt=PROMPT, **chain)
    assert result.summary["pipeline"] == "LTXConditionPipeline"
    assert probe(result.outputs["video"]).frame_count == 17
    assert "conditions" not in calls[0]
    (condition,) = calls[1]["conditions"]
    assert condition.frame_index == 0
    assert np.array_equal(np.asarray(condition.image), calls[0]["made"][-1])


def test_a_wan_vace_chain_keeps_the_previous_frames_under_a_black_mask(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = calls_of(monkeypatch, "WanVACEPipeline")
    chain = {"frames": 13, "segment_frames": 9, "seam_frames": 2, **SMALL}
    result = generate(tiny["wan-vace"], tmp_path / "v.mp4", prompt=PROMPT, **chain)
    assert probe(result.outputs["video"]).frame_count == 13 and len(calls) == 2
    video, mask = calls[1]["video"], calls[1]["mask"]
    assert len(video) == len(mask) == 9
    for i in range(2):  # the seam: the first segment's last two frames, kept
        assert np.array_equal(np.asarray(video[i]), calls[0]["made"][7 + i])
        assert np.asarray(mask[i]).max() == 0
    assert np.asarray(mask[2]).min() == 255 and np.asarray(video[2]).max() == 127


def test_a_text_only_model_cannot_chain_and_says_so(tiny: dict[str, Path], tmp_path: Path) -> None:
    two = "0s: a red cat runs, 1s: a dog runs"
    with pytest.raises(InvalidParams, match=r"^prompt: a multi-scene schedule needs a chain") as e:
        generate(tiny["wan-t2v"], tmp_path / "x.mp4", prompt=two, frames=17, **SMALL)
    assert "(WanPipeline) is text-to-video: it cannot start from a frame" in e.value.message
    assert "image-to-video" in (e.value.hint or "")
    with pytest.raises(InvalidParams, match=r"^duration: 160 frames needs a chain"):
        generate(tiny["wan-t2v"], tmp_path / "x.mp4", prompt=PROMPT, duration=10, **SMALL)
    assert not list(tmp_path.iterdir())
    # Not asked for a chain: one pass, as before, saying so.
    long = generate(tiny["wan-t2v"], tmp_path / "x.mp4", prompt=PROMPT, frames=97, plan_only=True)
    assert long.summary["frames"] == 97 and long.summary["segments"] == 1
    assert "cannot chain segments: one pass" in long.summary["rounded"]


def test_a_schedule_past_the_duration_is_invalid_before_anything_runs(
    tiny: dict[str, Path], tmp_path: Path, astronaut: Path
) -> None:
    with pytest.raises(InvalidParams, match=r"^prompt: the schedule's entry at 3s is beyond"):
        generate(
            tiny["wan-i2v"],
            tmp_path / "x.mp4",
            prompt="0s: a cat, 3s: a dog",
            image=str(astronaut),
            duration=2,
            fps=8,
            **SMALL,
        )
    with pytest.raises(InvalidParams, match=r"^seam_frames: a 9-frame seam leaves no new frame"):
        generate(
            tiny["wan-i2v"],
            tmp_path / "x.mp4",
            prompt=PROMPT,
            image=str(astronaut),
            frames=20,
            segment_frames=9,
            seam_frames=9,
            **SMALL,
        )
    assert not list(tmp_path.iterdir())


def test_cli_plans_a_schedule_file_into_segments(
    tiny: dict[str, Path], tmp_path: Path, astronaut: Path
) -> None:
    schedule = tmp_path / "scenes.txt"
    schedule.write_text("# two scenes\n0s: a red cat runs\n2s: a dog runs in the snow\n")
    result = run_vfx(
        "generate",
        "--model",
        tiny["wan-i2v"],
        "--image",
        astronaut,
        "--prompt-schedule",
        schedule,
        "--duration",
        "4",
        "--fps",
        "8",
        "--segment-frames",
        "17",
        "--no-template",
        "--output",
        tmp_path / "x.mp4",
        "--plan-only",
        "--json",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    summary = summary.get("summary", summary)
    assert (summary["segments"], summary["frames"]) == (3, 32)  # 16 + 13 + 3 new frames
    assert summary["prompt"] == "a red cat runs" and summary["negative"] == ""


# --- expansion -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-layer GPT-2 with random weights and the tests' word-level tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from tests.tiny_pipelines import WORDS, tokenizer

    folder = tmp_path_factory.mktemp("tiny_gpt2")
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(WORDS),
        n_positions=256,
        n_embd=16,
        n_layer=1,
        n_head=2,
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=0,
    )
    model = GPT2LMHeadModel(config).eval()
    model.generation_config.suppress_tokens = [0, 2]  # it writes words: no <pad>, no <unk>
    model.save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder


def test_prompt_expansion_runs_the_local_text_model_bounded_and_recorded(
    tiny: dict[str, Path], tiny_text_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.tiny_pipelines import WORDS

    calls = calls_of(monkeypatch, "WanPipeline")
    size = {"prompt": PROMPT, "frames": 5, "expand_prompt": str(tiny_text_model), **SMALL}
    result = generate(tiny["wan-t2v"], tmp_path / "e.mp4", **size)
    sidecar = json.loads(result.outputs["metadata"].read_text())
    expanded = sidecar["expanded"]["prompts"][PROMPT]
    assert sidecar["expanded"]["model"] == str(tiny_text_model)
    assert expanded != PROMPT and 0 < len(expanded) <= EXPAND_MAX_CHARS
    assert set(expanded.split()) <= set(WORDS)  # the tiny model's words, decoded
    assert calls[0]["prompt"] == sidecar["prompt"] == expanded
    assert sidecar["prompt_given"] == PROMPT
    stages = list(dict.fromkeys(e.stage for e in result.events))
    assert stages[:3] == ["plan", "expand prompt", "load model"]
    again = generate(tiny["wan-t2v"], tmp_path / "f.mp4", **size)  # greedy: the same text
    assert again.summary["prompt"] == expanded


def test_a_missing_or_broken_text_model_fails_clearly(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    base = {"prompt": PROMPT, "frames": 5, **SMALL}
    with pytest.raises(ModelMissing, match=r"^expand_prompt: .* neither a catalog model"):
        generate(tiny["wan-t2v"], tmp_path / "x.mp4", expand_prompt=str(tmp_path / "no"), **base)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelMissing, match=r"has no config.json"):
        generate(tiny["wan-t2v"], tmp_path / "x.mp4", expand_prompt=str(tmp_path / "empty"), **base)
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(ModelMissing, match=r"cannot be loaded as a causal language model"):
        generate(tiny["wan-t2v"], tmp_path / "x.mp4", expand_prompt=str(tmp_path / "empty"), **base)
    with pytest.raises(ModelMissing, match=r"qwen2.5-0.5b-instruct.*not in the local Hugging"):
        generate(tiny["wan-t2v"], tmp_path / "x.mp4", expand_prompt="qwen2.5-0.5b-instruct", **base)
    assert not (tmp_path / "x.mp4").exists()
