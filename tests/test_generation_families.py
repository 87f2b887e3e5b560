"""Every video family through `generate`, on tiny random-weight pipelines of its real
diffusers classes (tests/tiny_pipelines.py): Wan 2.2's two transformers, Wan first-last-frame,
Wan VACE, LTX conditioning, Stable Video Diffusion, CogVideoX and AnimateDiff (plain,
video->video and ControlNet). Each runs 2 steps at toy sizes; the control videos are real
carphone frames. The weights are random: the tests check which pipeline ran with what,
frame counts, sizes, the rules' rounding and refusals, not picture quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import encode_test_video
from tests.test_generate import PROMPT, frames_of, generate
from vfxmocap.core.errors import InvalidParams
from vfxmocap.media.video import probe

SMALL = {"prompt": PROMPT, "width": 32, "height": 32}


def camera_image() -> str:
    import skimage

    return str(Path(skimage.__file__).parent / "data" / "camera.png")


def previews(result: Any) -> int:
    return sum(e.preview is not None for e in result.events)


def test_wan_2_2_denoises_with_both_of_its_transformers(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wan 2.2 A14B's layout: the high-noise transformer, then the low-noise one."""
    from diffusers import WanTransformer3DModel

    used: list[int] = []
    forward = WanTransformer3DModel.forward

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        used.append(id(self))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(WanTransformer3DModel, "forward", spy)
    result = generate(tiny["wan2.2-t2v"], tmp_path / "w.mp4", frames=5, **SMALL)
    assert result.summary["pipeline"] == "WanPipeline"
    assert probe(result.outputs["video"]).frame_count == 5
    assert len(set(used)) == 2 and used[0] != used[-1]


def test_wan_first_last_frame_takes_a_last_image_only_where_trained_for_it(
    tiny: dict[str, Path], tmp_path: Path, astronaut: Path
) -> None:
    """An FLF2V checkpoint needs both frames (and each changes the video); Wan 2.1 I2V has
    no place for a last frame, a text->video model none for any image."""
    both = {"image": str(astronaut), "last_image": camera_image(), "frames": 5, **SMALL}
    flf = generate(tiny["wan-flf"], tmp_path / "flf.mp4", **both)
    other = generate(tiny["wan-flf"], tmp_path / "o.mp4", **{**both, "last_image": both["image"]})
    assert flf.summary["pipeline"] == "WanImageToVideoPipeline"
    a, b = frames_of(flf.outputs["video"]), frames_of(other.outputs["video"])
    assert len(a) == 5 and not all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    sidecar = json.loads(flf.outputs["metadata"].read_text())
    assert sidecar["last_image"] == camera_image() and sidecar["image"] == str(astronaut)
    with pytest.raises(InvalidParams, match=r"^last_image: .* needs a last frame"):
        generate(tiny["wan-flf"], tmp_path / "x.mp4", **{**both, "last_image": None})
    with pytest.raises(InvalidParams, match=r"^last_image: .* not trained with a last frame"):
        generate(tiny["wan-i2v"], tmp_path / "x.mp4", **both)
    with pytest.raises(InvalidParams, match=r"^last_image: .*text-to-video and takes no last"):
        generate(tiny["wan-t2v"], tmp_path / "x.mp4", last_image=camera_image(), **SMALL)


def test_wan_vace_follows_a_control_video_with_a_mask_and_a_reference(
    tiny: dict[str, Path], tmp_path: Path, carphone: Path, astronaut: Path, carphone_frames: Any
) -> None:
    def steered_by(mask: Path) -> dict[str, Any]:
        return {"video": str(carphone), "mask": str(mask), "reference": [str(astronaut)]}

    vace = generate(tiny["wan-vace"], tmp_path / "v.mp4", frames=5, **SMALL, **steered_by(carphone))
    plain = generate(tiny["wan-vace"], tmp_path / "t.mp4", frames=5, **SMALL)
    assert vace.summary["pipeline"] == plain.summary["pipeline"] == "WanVACEPipeline"
    a, b = frames_of(vace.outputs["video"]), frames_of(plain.outputs["video"])
    assert len(a) == 5 and not all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert previews(vace) == 2
    with pytest.raises(InvalidParams, match=r"^mask: "):
        generate(tiny["wan-vace"], tmp_path / "x.mp4", mask=str(carphone), **SMALL)
    short = encode_test_video(tmp_path / "short.mp4", carphone_frames[:3])
    with pytest.raises(InvalidParams, match=r"^mask: .*short.mp4 has 3 frames, the request 5"):
        generate(tiny["wan-vace"], tmp_path / "x.mp4", frames=5, **SMALL, **steered_by(short))


def test_a_control_video_sets_the_frames_never_more_than_it_has(
    tiny: dict[str, Path], tmp_path: Path, carphone: Path
) -> None:
    """carphone has 120 frames: in one segment Wan's nearest 4k+1 is 121, one too many, so
    117; in segments of Wan's 81 (a chain), exactly 120."""
    one = {"video": str(carphone), "plan_only": True, "segment_frames": 121, **SMALL}
    planned = generate(tiny["wan-vace"], tmp_path / "x.mp4", **one)
    assert (planned.summary["frames"], planned.summary["segments"]) == (117, 1)
    assert "frames 121 -> 117: the video has 120" in planned.summary["rounded"]
    chained = generate(
        tiny["wan-vace"], tmp_path / "x.mp4", video=str(carphone), plan_only=True, **SMALL
    )
    assert (chained.summary["frames"], chained.summary["segments"]) == (120, 2)
    with pytest.raises(InvalidParams, match=r"^video: .* has 120 frames, fewer than the 121"):
        generate(tiny["wan-vace"], tmp_path / "x.mp4", video=str(carphone), frames=121, **SMALL)


def test_ltx_conditions_on_a_video_or_first_and_last_keyframes(
    tiny: dict[str, Path], tmp_path: Path, carphone: Path, astronaut: Path
) -> None:
    size = {"prompt": PROMPT, "frames": 9, "width": 64, "height": 64}
    video = generate(tiny["ltx"], tmp_path / "v.mp4", video=str(carphone), **size)
    keys = generate(
        tiny["ltx"], tmp_path / "k.mp4", image=str(astronaut), last_image=camera_image(), **size
    )
    assert video.summary["pipeline"] == keys.summary["pipeline"] == "LTXConditionPipeline"
    assert probe(video.outputs["video"]).frame_count == probe(keys.outputs["video"]).frame_count
    assert probe(keys.outputs["video"]).frame_count == 9


def test_stable_video_diffusion_makes_its_checkpoints_frames_from_an_image_only(
    tiny: dict[str, Path], tmp_path: Path, astronaut: Path
) -> None:
    """The tiny SVD is a 14-frame checkpoint (img2vid's): 10 asked is rounded, and said, 25
    is a chain of 14-frame segments; its VAE decodes in chunks, as the plan says."""
    out = tmp_path / "svd.mp4"
    result = generate(
        tiny["svd"], out, image=str(astronaut), frames=10, width=64, height=70, steps=2
    )
    assert probe(out).frame_count == 14 and result.summary["size"] == "64x64"
    assert result.summary["rounded"] == (
        "frames 10 -> 14: this Stable Video Diffusion checkpoint makes 14 frames; "
        "height 70 -> 64: Stable Video Diffusion needs multiples of 64"
    )
    assert "decoding 8 frames at once" in result.summary["plan"]
    sidecar = json.loads(result.outputs["metadata"].read_text())
    assert sidecar["plan"]["decode_chunk"] == 8
    long = generate(tiny["svd"], out, image=str(astronaut), frames=25, plan_only=True)
    assert (long.summary["frames"], long.summary["segments"]) == (25, 3)  # 14 + 10 + 1 new
    with pytest.raises(InvalidParams, match=r"^prompt: .*image-to-video and takes no prompt"):
        generate(tiny["svd"], tmp_path / "x.mp4", image=str(astronaut), prompt=PROMPT)
    with pytest.raises(InvalidParams, match=r"^image: .* needs an image"):
        generate(tiny["svd"], tmp_path / "x.mp4")


def test_cogvideox_text_and_image_to_video(
    tiny: dict[str, Path], tmp_path: Path, astronaut: Path
) -> None:
    text = generate(tiny["cogvideox-t2v"], tmp_path / "t.mp4", frames=8, **SMALL)
    image = generate(
        tiny["cogvideox-i2v"], tmp_path / "i.mp4", frames=9, image=str(astronaut), **SMALL
    )
    assert text.summary["rounded"] == "frames 8 -> 9: CogVideoX needs 4k+1 frames"
    assert (text.summary["pipeline"], image.summary["pipeline"]) == (
        "CogVideoXPipeline",
        "CogVideoXImageToVideoPipeline",
    )
    assert probe(text.outputs["video"]).frame_count == probe(image.outputs["video"]).frame_count
    assert previews(text) == previews(image) == 2


def test_animatediff_text_video_to_video_and_controlnet(
    tiny: dict[str, Path], tmp_path: Path, carphone: Path
) -> None:
    """One AnimateDiff checkpoint runs text->video, and video->video when given a video;
    a ControlNet checkpoint follows its control video and refuses to run without one."""
    text = generate(tiny["animatediff"], tmp_path / "t.mp4", frames=4, **SMALL)
    v2v = generate(tiny["animatediff"], tmp_path / "v.mp4", frames=4, video=str(carphone), **SMALL)
    pose = generate(
        tiny["animatediff-controlnet"], tmp_path / "c.mp4", frames=4, video=str(carphone), **SMALL
    )
    pipelines = [r.summary["pipeline"] for r in (text, v2v, pose)]
    assert pipelines == [
        "AnimateDiffPipeline",
        "AnimateDiffVideoToVideoPipeline",
        "AnimateDiffControlNetPipeline",
    ]
    assert all(probe(r.outputs["video"]).frame_count == 4 for r in (text, v2v, pose))
    with pytest.raises(InvalidParams, match=r"^video: .*control-to-video and needs a video"):
        generate(tiny["animatediff-controlnet"], tmp_path / "x.mp4", **SMALL)
    long = generate(tiny["animatediff"], tmp_path / "x.mp4", frames=40, plan_only=True, **SMALL)
    assert long.summary["frames"] == 32
    assert "frames 40 -> 32: AnimateDiff takes at most 32 frames" in long.summary["rounded"]


def test_pose_transfer_renders_the_drivers_pose_at_its_timing_with_its_audio(
    tiny: dict[str, Path], tmp_path: Path, video_with_audio: Path, astronaut: Path
) -> None:
    """carphone (with audio) drives a tiny Wan VACE: our mocap draws the OpenPose video,
    which VACE follows with the astronaut as its reference; the MP4 keeps the driver's
    frame rate and audio, and the pose video is kept beside it."""
    from vfxmocap.workflows import get_workflow

    out = tmp_path / "dance.mp4"
    inputs = {"driving": str(video_with_audio), "prompt": PROMPT, "output": out}
    size = {"frames": 5, "width": 32, "height": 32, "steps": 2, "seed": 1}
    result = get_workflow("pose-transfer")(
        {**inputs, **size, "model": str(tiny["wan-vace"]), "reference": str(astronaut)}
    )
    driver, made = probe(video_with_audio), probe(out)
    assert (made.frame_count, made.width, made.height) == (5, 32, 32)
    assert made.fps == driver.fps and made.has_audio
    pose = result.outputs["pose_video"]
    assert pose == out.with_suffix(".pose.mp4") and probe(pose).frame_count == 5
    assert probe(pose).width == driver.width  # drawn at the driver's size
    assert frames_of(pose)[0].max() > 0  # a skeleton was drawn
    sidecar = json.loads(result.outputs["metadata"].read_text())
    assert sidecar["pipeline"] == "WanVACEPipeline" and sidecar["reference"] == [str(astronaut)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dance.json",
        "dance.mp4",
        "dance.pose.mp4",
    ]  # the mocap pass's own files went with its folder
    ad = get_workflow("pose-transfer")(
        {
            **inputs,
            **size,
            "model": str(tiny["animatediff-controlnet"]),
            "output": tmp_path / "a.mp4",
        }
    )
    assert ad.summary["pipeline"] == "AnimateDiffControlNetPipeline"
    before = sorted(tmp_path.iterdir())
    with pytest.raises(InvalidParams, match=r"^reference: .*AnimateDiff.* takes no reference"):
        get_workflow("pose-transfer")(
            {**inputs, "model": str(tiny["animatediff-controlnet"]), "reference": str(astronaut)}
        )
    with pytest.raises(InvalidParams, match=r"^video: .*text-to-video and takes no video"):
        get_workflow("pose-transfer")({**inputs, "model": str(tiny["wan-t2v"])})
    assert sorted(tmp_path.iterdir()) == before  # refused before the mocap pass


def test_pose_transfer_chains_segments_along_the_drivers_pose(
    tiny: dict[str, Path], tmp_path: Path, carphone: Path
) -> None:
    """20 of carphone's frames in 9-frame segments: three segments, each later one
    following its part of the pose video after the previous one's last two frames; the
    output has every frame asked for."""
    from vfxmocap.workflows import get_workflow

    out = tmp_path / "long.mp4"
    chain = {"frames": 20, "segment_frames": 9, "seam_frames": 2, "steps": 2, "seed": 1}
    result = get_workflow("pose-transfer")(
        {"driving": str(carphone), "output": out, "model": str(tiny["wan-vace"]), **chain, **SMALL}
    )
    assert probe(out).frame_count == 20 and result.summary["segments"] == 3
    sidecar = json.loads(result.outputs["metadata"].read_text())
    cut = [(s["start"], s["kept"], s["overlap"]) for s in sidecar["segments"]]
    assert cut == [(0, 9, 0), (7, 9, 2), (14, 6, 2)] and sidecar["seam_frames"] == 2


def test_cli_pose_transfer_names_a_missing_model_and_writes_nothing(
    tmp_path: Path, carphone: Path
) -> None:
    from tests.conftest import run_vfx

    out = tmp_path / "x.mp4"
    args = ("--driving", carphone, "--prompt", PROMPT, "--model", tmp_path / "none")
    result = run_vfx("pose-transfer", *args, "--output", out, timeout=120)
    assert result.returncode == 4, result.stderr
    assert "neither a catalog model, a folder, nor a Hub repo id" in result.stderr
    assert not list(tmp_path.iterdir())


def test_a_wan_checkpoint_with_a_16x_vae_rounds_sides_to_32(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    """Wan 2.2 TI2V-5B's VAE compresses 16x: with 2x2 patches its sides are multiples of 32
    (diffusers would floor them silently); the rule is read from the checkpoint's configs."""
    import shutil

    folder = shutil.copytree(tiny["wan-t2v"], tmp_path / "ti2v")
    config = json.loads((folder / "vae" / "config.json").read_text())
    (folder / "vae" / "config.json").write_text(json.dumps({**config, "scale_factor_spatial": 16}))
    planned = generate(
        folder, tmp_path / "x.mp4", prompt=PROMPT, frames=5, width=48, height=64, plan_only=True
    )
    assert planned.summary["size"] == "64x64"
    assert planned.summary["rounded"] == "width 48 -> 64: Wan needs multiples of 32"
    sixteen = {**SMALL, "width": 48}
    same = generate(tiny["wan-t2v"], tmp_path / "x.mp4", frames=5, plan_only=True, **sixteen)
    assert "rounded" not in same.summary  # 48 is a multiple of 16
