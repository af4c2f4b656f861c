"""The diffusion objective shared by the text-to-image and InstructPix2Pix trainers.

Follows diffusers' ``train_text_to_image.py`` / ``train_instruct_pix2pix.py``: a DDPMScheduler adds noise at a
uniformly drawn timestep, the UNet predicts the noise (``epsilon``) or the velocity (``v_prediction``), the loss
is the MSE to that target, optionally Min-SNR weighted. Every random draw takes an explicit generator so that a
run is a pure function of its seed and step (which makes resuming exact).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.training_utils import compute_snr

from ..engine.objective import PREDICTION_TYPES, check_prediction_type, noisy_latents_and_target, sample_timesteps

__all__ = ["PREDICTION_TYPES", "check_prediction_type", "noisy_latents_and_target", "sample_timesteps"]


def make_noise_scheduler(prediction_type: str = "epsilon", num_train_timesteps: int = 1000) -> DDPMScheduler:
    """The training noise scheduler: Stable Diffusion's scaled-linear betas (0.00085 → 0.012 over 1000 steps)."""
    check_prediction_type(prediction_type)
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        prediction_type=prediction_type,
    )


def inference_scheduler(noise_scheduler: DDPMScheduler) -> DDIMScheduler:
    """The DDIM scheduler saved with a pipeline: the same betas and prediction type as training (SD's settings)."""
    return DDIMScheduler.from_config(noise_scheduler.config, clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def diffusion_loss(
    model_pred: torch.Tensor,
    target: torch.Tensor,
    timesteps: torch.Tensor,
    scheduler: DDPMScheduler,
    snr_gamma: float | None = None,
) -> torch.Tensor:
    """MSE between prediction and target; with ``snr_gamma``, Min-SNR-γ weighting (Hang et al. 2023) as diffusers."""
    if snr_gamma is None:
        return F.mse_loss(model_pred.float(), target.float(), reduction="mean")
    snr = compute_snr(scheduler, timesteps)
    weights = torch.clamp(snr, max=snr_gamma)
    if scheduler.config.prediction_type == "epsilon":
        weights = weights / snr
    else:  # v_prediction
        weights = weights / (snr + 1)
    per_sample = F.mse_loss(model_pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * weights).mean()


def caption_dropout_mask(batch_size: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Boolean mask (B,) of captions to replace by the empty prompt, each dropped with ``probability``."""
    return torch.rand(batch_size, generator=generator) < probability


def ip2p_dropout_masks(
    batch_size: int, probability: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """InstructPix2Pix conditioning dropout: (drop_text, drop_image) boolean masks of shape (B,).

    With p = ``probability`` (the paper's 0.05) a sample loses only its text with probability p, both text and
    image with probability p, and only its image with probability p — exactly diffusers' construction from one
    uniform draw u: text dropped when u < 2p, image dropped when p ≤ u < 3p.
    """
    u = torch.rand(batch_size, generator=generator)
    drop_text = u < 2 * probability
    drop_image = (u >= probability) & (u < 3 * probability)
    return drop_text, drop_image
