"""Where two texts disagree about an image: DiffEdit's noise-difference map, shared by DiffEdit and grounding.

Noise the image's latents to ``encode_strength`` with ``num_maps`` noises, predict the noise under a query and a
reference text (guided), and take the mean absolute difference: large where the texts describe the image
differently. The map is clamped at ``thresholding_ratio`` times its mean, rescaled to [0, 1], and (for a mask)
thresholded at 0.5, as diffusers' ``StableDiffusionDiffEditPipeline.generate_mask`` does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .guidance import guided_predictions
from .latents import sample_latents
from .sampling import make_scheduler, strength_timesteps


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a Nx1xHxW map, replicate-padded."""
    radius = max(1, int(round(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    padded = F.pad(image, (radius, radius, radius, radius), mode="replicate")
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(blurred, kernel.view(1, 1, -1, 1))


def noise_difference_map(
    unet, scheduler_template, vae, distribution, generator: torch.Generator | None, *, reference: torch.Tensor,
    query: torch.Tensor, uncond: torch.Tensor, num_inference_steps: int, guidance_scale: float,
    encode_strength: float, num_maps: int, thresholding_ratio: float, smoothing: float = 0.0,
) -> torch.Tensor:
    """The 1x1xhxw difference map in [0, 1] (latent resolution) between ``query`` and ``reference`` embeddings."""
    from diffusers.utils.torch_utils import randn_tensor

    sched = make_scheduler(scheduler_template, "ddim")
    encode_timestep = strength_timesteps(sched, num_inference_steps, encode_strength)[0]
    latents = sample_latents(distribution, generator, vae, repeats=num_maps)
    noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    noisy = sched.scale_model_input(sched.add_noise(latents, noise, encode_timestep), encode_timestep)
    batch = [e.expand(num_maps, -1, -1) for e in (reference, query)]
    from_reference, from_query = guided_predictions(
        unet, noisy, encode_timestep, batch, uncond.expand(num_maps, -1, -1), guidance_scale
    )
    difference = (from_query - from_reference).abs().mean(dim=(0, 1), keepdim=True)
    if smoothing > 0:
        difference = gaussian_blur(difference, smoothing)
    clamp = difference.mean() * thresholding_ratio
    return difference.clamp(0, clamp) / clamp


def noise_difference_mask(unet, scheduler_template, vae, distribution, generator, **kwargs) -> torch.Tensor:
    """:func:`noise_difference_map` thresholded at 0.5: DiffEdit's 0/1 edit mask."""
    soft = noise_difference_map(unet, scheduler_template, vae, distribution, generator, **kwargs)
    return (soft > 0.5).to(soft.dtype)
