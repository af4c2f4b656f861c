"""VAE latents for diffusion training: encoding (optionally cached once for the whole dataset), reparameterised
sampling with an explicit generator, the latent scaling factor, and an exact re-centring of the latent space.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch.utils.data import DataLoader, Dataset

from ..errors import InvalidModelError, InvalidRequestError
from .data import collate


@torch.no_grad()
def encode_parameters(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    """The posterior parameters (mean and log-variance stacked on channels, as diffusers stores them)."""
    return vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.parameters


def posterior_sample(parameters: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A reparameterised sample of the posterior; the noise comes from ``generator`` (CPU)."""
    dist = DiagonalGaussianDistribution(parameters)
    noise = torch.randn(dist.mean.shape, generator=generator, dtype=torch.float32)
    return dist.mean + dist.std * noise.to(dist.mean.device, dist.mean.dtype)


def posterior_mode(parameters: torch.Tensor) -> torch.Tensor:
    """The posterior mean (what diffusers' InstructPix2Pix uses for the conditioning image)."""
    return DiagonalGaussianDistribution(parameters).mode()


class LatentCache:
    """Posterior parameters of every image of a dataset, computed once with a frozen VAE (CPU memory).

    ``keys`` names the pixel entries of the dataset items to encode (e.g. ``["pixel_values"]``).
    """

    def __init__(self, vae: AutoencoderKL, dataset: Dataset, keys: list[str], batch_size: int = 64) -> None:
        self.store: dict[str, torch.Tensor] = {}
        chunks: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
        for batch in loader:
            for key in keys:
                chunks[key].append(encode_parameters(vae, batch[key]).float().cpu())
        self.store = {key: torch.cat(parts) for key, parts in chunks.items()}

    def get(self, key: str, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Cached parameters of the samples ``indices``."""
        return self.store[key][indices.cpu()].to(device)


@torch.no_grad()
def latent_samples(
    vae: AutoencoderKL, dataset: Dataset, max_samples: int = 1024, batch_size: int = 64, seed: int = 0
) -> torch.Tensor:
    """Unscaled posterior samples (N, C, h, w) of (the first ``max_samples`` of) ``dataset``."""
    generator = torch.Generator().manual_seed(seed)
    count = min(len(dataset), max_samples)
    subset = torch.utils.data.Subset(dataset, range(count))
    samples = []
    for batch in DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=collate):
        samples.append(posterior_sample(encode_parameters(vae, batch["pixel_values"]), generator).float().cpu())
    return torch.cat(samples)


def latent_std(
    vae: AutoencoderKL, dataset: Dataset, max_samples: int = 1024, batch_size: int = 64, seed: int = 0
) -> float:
    """Standard deviation of unscaled posterior samples over (the first ``max_samples`` of) ``dataset``."""
    return float(latent_samples(vae, dataset, max_samples, batch_size, seed).std())


def scaling_factor_for(std: float) -> float:
    """The ``scaling_factor`` that gives latents unit variance (SD computed 0.18215 this way)."""
    return 1.0 / max(std, 1e-8)


@torch.no_grad()
def standardize_latent_space(vae: AutoencoderKL, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Re-parameterise ``vae`` in place so that its latents become ``(z - mean) / std`` per channel, exactly.

    Why: Stable Diffusion pipelines only multiply latents by ``scaling_factor``; a VAE whose latent channels sit
    far from zero (a small VAE trained on flat-colour images has channel means of several standard deviations)
    leaves the diffusion model a large constant to predict from almost pure noise, where an epsilon-predicting
    UNet amplifies every error by 1/sqrt(alpha_bar) — samples then come out with the wrong global colours. The
    shift and scale are folded into the 1x1 ``quant_conv`` (encoder side: mean and log-variance rows) and
    ``post_quant_conv`` (decoder side: its input columns and bias), so ``decode(encode(x))`` is unchanged and the
    VAE still loads in every standard pipeline.
    """
    if vae.quant_conv is None or vae.post_quant_conv is None:
        raise InvalidModelError(
            "this VAE has no quant_conv/post_quant_conv to fold the latent statistics into: keep its latents as "
            "they are (use_quant_conv and use_post_quant_conv must be true)."
        )
    channels = vae.config.latent_channels
    mean = mean.to(vae.quant_conv.weight).flatten()
    gain = 1.0 / std.to(vae.quant_conv.weight).flatten().clamp_min(1e-8)
    if mean.numel() != channels or gain.numel() != channels:
        raise InvalidRequestError(f"mean and std need {channels} entries (one per latent channel).")
    encoder = vae.quant_conv  # out rows [0, C): mean, [C, 2C): log-variance
    encoder.weight[:channels] *= gain.view(-1, 1, 1, 1)
    encoder.bias[:channels] = (encoder.bias[:channels] - mean) * gain
    encoder.bias[channels:] += 2.0 * torch.log(gain)
    decoder = vae.post_quant_conv  # z = z' / gain + mean
    decoder.bias += decoder.weight[:, :, 0, 0] @ mean
    decoder.weight /= gain.view(1, -1, 1, 1)


def standardize_vae(
    vae: AutoencoderKL, dataset: Dataset, max_samples: int = 1024, seed: int = 0
) -> dict[str, list[float] | float]:
    """Measure the per-channel latent mean and std on ``dataset``, fold them into ``vae``
    (:func:`standardize_latent_space`) and set ``scaling_factor`` for unit variance; returns the statistics."""
    before = latent_samples(vae, dataset, max_samples, seed=seed)
    mean, std = before.mean(dim=(0, 2, 3)), before.std(dim=(0, 2, 3))
    standardize_latent_space(vae, mean, std)
    # the re-parameterisation is exact and the generator's draws repeat, so re-encoding would give these samples
    after = (before - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    vae.register_to_config(scaling_factor=scaling_factor_for(float(after.std())))
    return {
        "latent_channel_mean": mean.tolist(),
        "latent_channel_std": std.tolist(),
        "latent_std": float(before.std()),
        "scaling_factor": vae.config.scaling_factor,
    }
