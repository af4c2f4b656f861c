"""VAE latents for diffusion training: encoding (optionally cached once for the whole dataset), reparameterised
sampling with an explicit generator, and the latent scaling factor.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch.utils.data import DataLoader, Dataset

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
def latent_std(
    vae: AutoencoderKL, dataset: Dataset, max_samples: int = 1024, batch_size: int = 64, seed: int = 0
) -> float:
    """Standard deviation of unscaled posterior samples over (the first ``max_samples`` of) ``dataset``."""
    generator = torch.Generator().manual_seed(seed)
    count = min(len(dataset), max_samples)
    subset = torch.utils.data.Subset(dataset, range(count))
    samples = []
    for batch in DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=collate):
        samples.append(posterior_sample(encode_parameters(vae, batch["pixel_values"]), generator).float().cpu())
    return float(torch.cat(samples).std())


def scaling_factor_for(std: float) -> float:
    """The ``scaling_factor`` that gives latents unit variance (SD computed 0.18215 this way)."""
    return 1.0 / max(std, 1e-8)
