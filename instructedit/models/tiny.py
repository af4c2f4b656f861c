"""Tiny randomly initialised Stable Diffusion components, built from configs with no download.

They have the architecture of the real models at a fraction of the size, so tests and benchmarks can run every
method and compare it with diffusers' reference pipelines on a CPU in milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from .tokenizer import build_clip_tokenizer

Kind = Literal["t2i", "ip2p"]


def tiny_components(
    kind: Kind = "t2i", prediction_type: str = "epsilon", seed: int = 0, tokenizer_dir: str | Path | None = None
) -> dict:
    """``unet``, ``vae``, ``text_encoder``, ``tokenizer`` and ``scheduler`` of a tiny SD-style pipeline.

    ``kind="ip2p"`` gives the UNet 8 input channels (noisy latents + image latents) as InstructPix2Pix has.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=8 if kind == "ip2p" else 4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=16,
        sample_size=32,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=49408,
            max_position_embeddings=77,
            projection_dim=32,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
    )
    tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir else Path.home() / ".cache" / "instructedit" / "clip-tokenizer"
    tokenizer = build_clip_tokenizer(tokenizer_dir)
    for module in (unet, vae, text_encoder):
        module.eval()
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "scheduler": scheduler}


def save_tiny_pipeline(
    path: str | Path, kind: Kind = "t2i", prediction_type: str = "epsilon", seed: int = 0
) -> Path:
    """Write a tiny random pipeline folder in diffusers layout (text-to-image or InstructPix2Pix) to ``path``."""
    from diffusers import StableDiffusionInstructPix2PixPipeline, StableDiffusionPipeline

    path = Path(path)
    parts = tiny_components(kind, prediction_type, seed)
    cls = StableDiffusionInstructPix2PixPipeline if kind == "ip2p" else StableDiffusionPipeline
    pipe = cls(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(path)
    return path
