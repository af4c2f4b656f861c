"""The denoising objective's draws, shared by the trainers and by per-image fine-tuning (DAC): noise and a uniform
timestep from an explicit generator, the noisy latents and the regression target for the model's prediction type.
Every draw is on the CPU generator given, so a run is a pure function of its seed and step (resuming is exact)."""

from __future__ import annotations

import torch

from ..errors import InvalidRequestError

PREDICTION_TYPES = ("epsilon", "v_prediction")


def check_prediction_type(prediction_type: str) -> str:
    """Return ``prediction_type`` if supported, else raise InvalidRequestError."""
    if prediction_type not in PREDICTION_TYPES:
        raise InvalidRequestError(
            f"prediction type '{prediction_type}' is not supported: use one of {', '.join(PREDICTION_TYPES)}.",
            field="prediction_type",
        )
    return prediction_type


def sample_timesteps(batch_size: int, scheduler, generator: torch.Generator) -> torch.Tensor:
    """Uniform integer timesteps in [0, num_train_timesteps) on the CPU."""
    return torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=generator).long()


def noisy_latents_and_target(
    latents: torch.Tensor, scheduler, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw noise and timesteps; return (noisy latents, timesteps, regression target) for the scheduler's type."""
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents.device, latents.dtype)
    timesteps = sample_timesteps(latents.shape[0], scheduler, generator).to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    prediction_type = check_prediction_type(scheduler.config.prediction_type)
    target = noise if prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, timesteps)
    return noisy, timesteps, target
