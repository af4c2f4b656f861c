"""Latent mask blending: keep the original where the mask says "do not edit"."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mask_to_latent(mask: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """A 1x1xHxW 0/1 pixel mask -> 1x1xhxw latent mask; a latent cell is editable if any of its pixels is."""
    if tuple(mask.shape[-2:]) == tuple(latent_size):
        return mask
    return F.adaptive_max_pool2d(mask, latent_size)


def blend(edited: torch.Tensor, original: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mask * edited + (1 - mask) * original`` (DiffEdit's masked decoding, Blended Latent Diffusion)."""
    mask = mask.to(edited.dtype)
    return edited * mask + original * (1 - mask)


def mask_to_pixels(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A latent-resolution mask -> pixel resolution (nearest), for saving and for pixel metrics."""
    return F.interpolate(mask.float(), size=size, mode="nearest")
