"""Image <-> latent: pixel tensors, VAE encoding and decoding, exactly as diffusers' pipelines do them."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..errors import NumericalError
from .memory import execution_device


def image_to_tensor(image: Image.Image, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """RGB PIL image -> 1x3xHxW float32 tensor with values in ``value_range``.

    The default [-1, 1] is what VAEs read (diffusers' ``VaeImageProcessor.preprocess``); metrics and feature
    encoders usually want (0, 1).
    """
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)
    low, high = value_range
    if (low, high) == (0.0, 1.0):
        return tensor
    return tensor * (high - low) + low  # for [-1, 1]: x * 2 - 1, diffusers' arithmetic to the bit


def tensor_to_image(pixels: torch.Tensor) -> Image.Image:
    """1x3xHxW tensor in [-1, 1] -> RGB PIL image (diffusers' ``postprocess``: clamp, scale, round)."""
    if not torch.isfinite(pixels).all():
        raise NumericalError(
            "the decoded image contains NaN/inf values: the model overflowed, try float32 (--dtype float32) "
            "or a lower guidance scale"
        )
    array = (pixels[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).float().cpu().numpy()
    return Image.fromarray((array * 255).round().astype(np.uint8))


def mask_to_tensor(mask: Image.Image) -> torch.Tensor:
    """Mode-'L' mask -> 1x1xHxW float tensor of 0/1 (white = edit)."""
    array = (np.asarray(mask.convert("L"), dtype=np.float32) >= 127.5).astype(np.float32)
    return torch.from_numpy(array)[None, None]


def _scale(vae, latents: torch.Tensor) -> torch.Tensor:
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def encode_distribution(vae, pixels: torch.Tensor):
    """The VAE posterior of ``pixels`` (a ``DiagonalGaussianDistribution``)."""
    return vae.encode(pixels.to(execution_device(vae), vae.dtype)).latent_dist


def sample_latents(distribution, generator: torch.Generator | None, vae, repeats: int = 1) -> torch.Tensor:
    """Scaled latents drawn from ``distribution`` (``latent_dist.sample(generator)``), ``repeats`` draws at once.

    Repeating the posterior parameters and drawing once equals diffusers encoding a repeated image batch, but
    runs the encoder once.
    """
    from diffusers.utils.torch_utils import randn_tensor

    mean = distribution.mean.repeat_interleave(repeats, dim=0)
    std = distribution.std.repeat_interleave(repeats, dim=0)
    noise = randn_tensor(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return _scale(vae, mean + std * noise)


def mode_latents(distribution, vae, scaled: bool = True) -> torch.Tensor:
    """The posterior mode; InstructPix2Pix conditions on it unscaled (as the original model was trained)."""
    mode = distribution.mode()
    return _scale(vae, mode) if scaled else mode


def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> pixel tensor in [-1, 1]."""
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor + shift, return_dict=False)[0]
