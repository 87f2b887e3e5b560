"""Tiny random-weight diffusers pipelines built from small configs, saved as diffusers folders.

The Hub's `hf-internal-testing/*` models cannot be fetched here, so every component is made
locally, as diffusers' own tests' `get_dummy_components` do: the VAE and denoiser from small
configs, a T5 / UMT5 text encoder from a config, and a WordLevel tokenizer wrapped in
`PreTrainedTokenizerFast`. Each folder has the `save_pretrained` layout a user's model has.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

WORDS = ["<pad>", "</s>", "<unk>", "a", "cat", "dog", "runs", "in", "the", "snow", "red", "sky"]


def tokenizer(max_length: int | None = None) -> Any:
    """A word-level tokenizer with T5's special tokens (pad 0, eos 1, unk 2); CLIP-style
    pipelines pad to `max_length` (their text encoder's positions)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    extra = {} if max_length is None else {"model_max_length": max_length}
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", **extra
    )


def _t5_config(config_cls: Any) -> Any:
    return config_cls(
        vocab_size=len(WORDS),
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )


def _umt5() -> Any:
    from transformers import UMT5Config, UMT5EncoderModel

    return UMT5EncoderModel(_t5_config(UMT5Config)).eval()


def _t5() -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(_t5_config(T5Config)).eval()


def _wan_vae() -> Any:
    from diffusers import AutoencoderKLWan

    # Temporal 4x and spatial 8x compression, as the real Wan 2.1 VAE.
    return AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )


def _wan_transformer(in_channels: int, image_dim: int | None, **extra: Any) -> Any:
    """A two-layer Wan transformer; `vace=True` adds VACE's control blocks."""
    import diffusers

    vace = extra.pop("vace", False)
    config = {"image_dim": image_dim, "num_layers": 2, **extra}
    if vace:  # control latents (2 x 16) + the 8x8 mask folded into 64 channels
        config = {"num_layers": 3, "vace_layers": [0, 2], "vace_in_channels": 96}
    cls = diffusers.WanVACETransformer3DModel if vace else diffusers.WanTransformer3DModel
    return cls(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=in_channels,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        **config,
    )


def wan_t2v() -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    torch.manual_seed(0)
    return WanPipeline(
        transformer=_wan_transformer(16, None),
        vae=_wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder=_umt5(),
        tokenizer=tokenizer(),
    )


def wan_i2v(first_last: bool = False) -> Any:
    """Wan 2.1 image->video; `first_last`: the FLF2V layout, whose image embedding has
    positions for the CLIP tokens of two frames (first and last)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    vision = CLIPVisionConfig(
        hidden_size=4,
        projection_dim=4,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        intermediate_size=16,
        patch_size=1,
    )
    extra = {"pos_embed_seq_len": 2 * (32 * 32 + 1)} if first_last else {}
    return WanImageToVideoPipeline(
        transformer=_wan_transformer(36, 4, **extra),
        vae=_wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder=_umt5(),
        tokenizer=tokenizer(),
        image_encoder=CLIPVisionModel(vision).eval(),
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
    )


def wan_flf() -> Any:
    return wan_i2v(first_last=True)


def wan22_t2v() -> Any:
    """Wan 2.2 A14B's layout: a high-noise and a low-noise transformer, switched at the
    boundary."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    torch.manual_seed(0)
    return WanPipeline(
        transformer=_wan_transformer(16, None),
        transformer_2=_wan_transformer(16, None),
        boundary_ratio=0.875,
        vae=_wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder=_umt5(),
        tokenizer=tokenizer(),
    )


def wan_vace() -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, WanVACEPipeline

    torch.manual_seed(0)
    return WanVACEPipeline(
        transformer=_wan_transformer(16, None, vace=True),
        vae=_wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder=_umt5(),
        tokenizer=tokenizer(),
    )


def svd() -> Any:
    """A 14-frame Stable Video Diffusion (img2vid's count); the VAE at 4x, the UNet 2x."""
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=8,
        projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
        num_frames=14,
    )
    scheduler = EulerDiscreteScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 32, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3,
        latent_channels=4,
        layers_per_block=1,
    )
    # SVD resizes its image to CLIP's 224 itself: the encoder takes 224, in 7x7 patches.
    vision = CLIPVisionConfig(
        hidden_size=32,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=224,
        intermediate_size=37,
        patch_size=32,
    )
    return StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=CLIPVisionModelWithProjection(vision).eval(),
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
    )


def _cogvideox(pipeline: str, in_channels: int) -> Any:
    import diffusers
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4,
        attention_head_dim=8,
        in_channels=in_channels,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=1,
        sample_width=4,
        sample_height=4,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=226,  # the pipeline's default prompt length
    )
    # Temporal 4x and spatial 8x compression, as the real CogVideoX VAE.
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    return getattr(diffusers, pipeline)(
        transformer=transformer,
        vae=vae,
        scheduler=CogVideoXDDIMScheduler(),
        text_encoder=_t5(),
        tokenizer=tokenizer(),
    )


def cogvideox_t2v() -> Any:
    return _cogvideox("CogVideoXPipeline", 4)


def cogvideox_i2v() -> Any:
    return _cogvideox("CogVideoXImageToVideoPipeline", 8)  # noise + the image's latents


def _animatediff_parts() -> dict[str, Any]:
    """SD 1.5's layout at toy size (VAE at 2x), a CLIP text encoder and a motion adapter."""
    from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8,
        norm_num_groups=2,
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 16],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=2,
    )
    text = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=0,
        hidden_size=8,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(WORDS),
        max_position_embeddings=16,
    )
    adapter = MotionAdapter(
        block_out_channels=(8, 16),
        motion_layers_per_block=1,
        motion_norm_num_groups=2,
        motion_num_attention_heads=4,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False
    )
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": CLIPTextModel(text).eval(),
        "tokenizer": tokenizer(16),
        "motion_adapter": adapter,
        "scheduler": scheduler,
        "feature_extractor": None,
        "image_encoder": None,
    }


def animatediff() -> Any:
    from diffusers import AnimateDiffPipeline

    return AnimateDiffPipeline(**_animatediff_parts())


def animatediff_catalog_layout(folder: Path) -> Path:
    """AnimateDiff as its catalog entry places it: a Stable Diffusion 1.5 base folder whose
    model_index.json names the safety checker that the entry's snapshot patterns leave out
    (as the real repo's does), and the motion adapter, saved as
    its own repo, in motion_adapter/."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPImageProcessor

    parts = _animatediff_parts()
    adapter = parts.pop("motion_adapter")
    parts.pop("image_encoder")
    parts["feature_extractor"] = CLIPImageProcessor()
    base = StableDiffusionPipeline(**parts, safety_checker=None, requires_safety_checker=False)
    base.save_pretrained(folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
    (folder / "model_index.json").write_text(json.dumps(index))
    adapter.save_pretrained(folder / "motion_adapter")
    return folder


def animatediff_controlnet() -> Any:
    """AnimateDiff with a ControlNet (an OpenPose one, at full size) on the same base."""
    from diffusers import AnimateDiffControlNetPipeline, ControlNetModel

    parts = _animatediff_parts()
    controlnet = ControlNetModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        in_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        cross_attention_dim=8,
        conditioning_embedding_out_channels=(8, 16),  # control image -> latent size (2x)
        norm_num_groups=2,
    )
    return AnimateDiffControlNetPipeline(**parts, controlnet=controlnet)


def ltx() -> Any:
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=128,
        out_channels=128,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=1,
        caption_channels=32,
    )
    # Temporal 8x and spatial 32x compression into 128 channels, as the real LTX-Video VAE.
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=128,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    return LTXPipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=_t5(),
        tokenizer=tokenizer(),
    )


BUILDERS: dict[str, Callable[[], Any]] = {
    "wan-t2v": wan_t2v,
    "wan-i2v": wan_i2v,
    "wan-flf": wan_flf,
    "wan2.2-t2v": wan22_t2v,
    "wan-vace": wan_vace,
    "ltx": ltx,
    "svd": svd,
    "cogvideox-t2v": cogvideox_t2v,
    "cogvideox-i2v": cogvideox_i2v,
    "animatediff": animatediff,
    "animatediff-controlnet": animatediff_controlnet,
}


def build(name: str, folder: Path) -> Path:
    """Build pipeline `name` with random weights and save it as a diffusers folder."""
    BUILDERS[name]().save_pretrained(folder)
    return folder


class Built(dict[str, Path]):
    """Tiny pipelines as diffusers folders under `root`, each built when first asked for."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def __missing__(self, name: str) -> Path:
        self[name] = build(name, self.root / name)
        return self[name]
