"""Tiny random-weight diffusers pipelines built from small configs, saved as diffusers folders.

The Hub's `hf-internal-testing/*` models cannot be fetched here, so every component is made
locally, as diffusers' own tests' `get_dummy_components` do: the VAE and denoiser from small
configs, a T5 / UMT5 text encoder from a config, and a WordLevel tokenizer wrapped in
`PreTrainedTokenizerFast`. Each folder has the `save_pretrained` layout a user's model has.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

WORDS = ["<pad>", "</s>", "<unk>", "a", "cat", "dog", "runs", "in", "the", "snow", "red", "sky"]


def tokenizer() -> Any:
    """A word-level tokenizer with T5's special tokens (pad 0, eos 1, unk 2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
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


def _wan_transformer(in_channels: int, image_dim: int | None) -> Any:
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=in_channels,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=image_dim,
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


def wan_i2v() -> Any:
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
    return WanImageToVideoPipeline(
        transformer=_wan_transformer(36, 4),
        vae=_wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder=_umt5(),
        tokenizer=tokenizer(),
        image_encoder=CLIPVisionModel(vision).eval(),
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
    )


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


BUILDERS: dict[str, Callable[[], Any]] = {"wan-t2v": wan_t2v, "wan-i2v": wan_i2v, "ltx": ltx}


def build(name: str, folder: Path) -> Path:
    """Build pipeline `name` with random weights and save it as a diffusers folder."""
    BUILDERS[name]().save_pretrained(folder)
    return folder


def build_all(root: Path) -> dict[str, Path]:
    return {name: build(name, root / name) for name in BUILDERS}
