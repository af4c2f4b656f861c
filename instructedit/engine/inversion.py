"""Deterministic DDIM inversion: run the DDIM map backwards, from the clean latent towards noise."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import InvalidRequestError
from .sampling import Progress


def inversion_timesteps(inverse_scheduler, num_inference_steps: int, strength: float) -> torch.Tensor:
    """The first ``int(num_inference_steps * strength)`` ascending timesteps (diffusers' DiffEdit convention)."""
    inverse_scheduler.set_timesteps(num_inference_steps)
    init_timestep = min(int(num_inference_steps * strength), num_inference_steps)
    if init_timestep < 1:
        raise InvalidRequestError(
            f"strength {strength} with {num_inference_steps} steps leaves no inversion step: "
            "raise strength or num_inference_steps"
        )
    t_start = max(num_inference_steps - init_timestep, 0)
    return inverse_scheduler.timesteps[: num_inference_steps - t_start]


def ddim_invert(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler_template,
    latents: torch.Tensor,
    num_inference_steps: int,
    strength: float = 1.0,
    progress: Progress | None = None,
) -> list[torch.Tensor]:
    """Invert clean ``latents`` to the noise level of ``strength``; return the trajectory, least noisy first.

    ``trajectory[k]`` is the latent at the k-th ascending timestep, so ``trajectory[-1]`` is the starting point
    for decoding. ``DDIMInverseScheduler`` converts every prediction type (epsilon, v, sample) to noise before
    stepping, which is why inversion works on v-prediction models (SD 2.x) too.
    """
    from diffusers import DDIMInverseScheduler

    inverse = DDIMInverseScheduler.from_config(scheduler_template.config)
    timesteps = inversion_timesteps(inverse, num_inference_steps, strength)
    trajectory = []
    bar = progress(len(timesteps)) if progress else None
    for t in timesteps:
        output = denoiser(inverse.scale_model_input(latents, t), t)
        latents = inverse.step(output, t, latents, return_dict=False)[0]
        trajectory.append(latents)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return trajectory
