"""Architectures of the built-in models (standard diffusers classes, small configurations) and the
InstructPix2Pix UNet surgery (4 extra zero-initialised input channels).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from ..errors import InvalidModelError


def small_vae(
    block_out_channels: tuple[int, ...] = (32, 64, 64),
    latent_channels: int = 4,
    layers_per_block: int = 1,
    norm_num_groups: int | None = None,
    sample_size: int = 64,
    mid_block_attention: bool = True,
    seed: int = 0,
) -> AutoencoderKL:
    """A small AutoencoderKL; it downsamples by 2^(len(block_out_channels) − 1) (4 with three blocks: 64 → 16).

    ``norm_num_groups`` defaults to min(32, smallest channel count). Without ``mid_block_attention`` the VAE is
    fully convolutional, so training on random crops matches full-image use exactly (up to borders).
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * len(block_out_channels),
            up_block_types=("UpDecoderBlock2D",) * len(block_out_channels),
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            latent_channels=latent_channels,
            norm_num_groups=norm_num_groups or min(32, min(block_out_channels)),
            sample_size=sample_size,
            mid_block_add_attention=mid_block_attention,
        )


def vae_downsample_factor(vae: AutoencoderKL) -> int:
    """Pixels per latent along one side (8 for Stable Diffusion's VAE)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def small_unet(
    cross_attention_dim: int,
    sample_size: int = 16,
    in_channels: int = 4,
    out_channels: int = 4,
    block_out_channels: tuple[int, ...] = (64, 128, 128),
    layers_per_block: int = 1,
    attention_head_dim: int = 8,
    seed: int = 0,
) -> UNet2DConditionModel:
    """A small caption-conditioned UNet2DConditionModel (SD's layout: plain first block, cross-attention below)."""
    depth = len(block_out_channels)
    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (depth - 1)
    up = ("CrossAttnUpBlock2D",) * (depth - 1) + ("UpBlock2D",)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return UNet2DConditionModel(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=out_channels,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            cross_attention_dim=cross_attention_dim,
            attention_head_dim=attention_head_dim,
            norm_num_groups=min(32, min(block_out_channels)),
        )


def expand_unet_for_ip2p(unet: UNet2DConditionModel, extra_channels: int = 4) -> UNet2DConditionModel:
    """Turn a text-to-image UNet into an InstructPix2Pix UNet in place: ``conv_in`` gains ``extra_channels`` input
    channels (for the encoded input image) whose weights are zero, so the expanded UNet initially computes exactly
    what the text-to-image UNet computed. A UNet that already has the extra channels is returned unchanged.
    """
    old = unet.conv_in
    latent_channels = unet.config.out_channels
    if old.in_channels == latent_channels + extra_channels:
        return unet
    if old.in_channels != latent_channels:
        raise InvalidModelError(
            f"cannot build an InstructPix2Pix UNet from a UNet with {old.in_channels} input channels: expected "
            f"{latent_channels} (text-to-image) or {latent_channels + extra_channels} (already InstructPix2Pix)."
        )
    new = torch.nn.Conv2d(
        old.in_channels + extra_channels,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels].copy_(old.weight)
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=old.in_channels + extra_channels)
    return unet


def count_parameters(module: torch.nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())
