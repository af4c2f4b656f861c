"""Deterministic DDIM inversion: run the DDIM map backwards, from the clean latent towards noise."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .sampling import Progress, steps_for_strength


def inversion_timesteps(inverse_scheduler, num_inference_steps: int, strength: float) -> torch.Tensor:
    """The first ``int(num_inference_steps * strength)`` ascending timesteps (diffusers' DiffEdit convention)."""
    inverse_scheduler.set_timesteps(num_inference_steps)
    return inverse_scheduler.timesteps[: steps_for_strength(num_inference_steps, strength)]


def ddim_invert(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler_template,
    latents: torch.Tensor,
    num_inference_steps: int,
    strength: float = 1.0,
    progress: Progress | None = None,
    prefix: list[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Invert clean ``latents`` to the noise level of ``strength``; return the trajectory, least noisy first.

    ``prefix``: the first steps of this same inversion, already computed (a cached shorter one); the inversion
    goes on from its last latent, exactly as if it had run them.

    ``trajectory[k]`` is the latent at the k-th ascending timestep, so ``trajectory[-1]`` is the starting point
    for decoding. Timesteps and noise schedule come from diffusers' ``DDIMInverseScheduler``; the step is
    :func:`inverse_ddim_step`, which fixes its v-prediction conversion.
    """
    from diffusers import DDIMInverseScheduler

    inverse = DDIMInverseScheduler.from_config(scheduler_template.config)
    timesteps = inversion_timesteps(inverse, num_inference_steps, strength)
    trajectory = list(prefix or [])[: len(timesteps)]
    if trajectory:
        latents = trajectory[-1]
    bar = progress(len(timesteps) - len(trajectory)) if progress else None
    for t in timesteps[len(trajectory):]:
        output = denoiser(inverse.scale_model_input(latents, t), t)
        latents = inverse_ddim_step(inverse, output, t, latents)
        trajectory.append(latents)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return trajectory


def to_epsilon(
    output: torch.Tensor, sample: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """The noise a model predicted, whatever it was trained to predict, at noise level ``alpha_bar``."""
    if prediction_type == "epsilon":
        return output
    if prediction_type == "v_prediction":
        return alpha_bar.sqrt() * output + (1 - alpha_bar).sqrt() * sample
    if prediction_type == "sample":
        return (sample - alpha_bar.sqrt() * output) / (1 - alpha_bar).sqrt()
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def inverse_ddim_step(inverse, output: torch.Tensor, t, sample: torch.Tensor) -> torch.Tensor:
    """One deterministic DDIM step from the level below ``t`` up to ``t`` (``output`` = model at ``(sample, t)``).

    Equals ``DDIMInverseScheduler.step`` for epsilon models. For v- and x0-prediction, diffusers converts the
    output to noise with the coefficients of the lower level, although the model was evaluated at ``t``; that
    inconsistency makes inversion drift on SD 2.x. We convert with the level the model saw (a test with the exact
    Gaussian denoiser shows reconstruction error falling from ~5% to ~0.1%).
    """
    t = int(t)
    lower = t - inverse.config.num_train_timesteps // inverse.num_inference_steps
    alpha_low = inverse.alphas_cumprod[lower] if lower >= 0 else inverse.initial_alpha_cumprod
    alpha_low = torch.as_tensor(alpha_low, dtype=torch.float32)
    alpha_high = inverse.alphas_cumprod[min(t, inverse.config.num_train_timesteps - 1)]
    eps = to_epsilon(output, sample, alpha_high.to(sample.device), inverse.config.prediction_type)
    alpha_low, alpha_high = alpha_low.to(sample.device), alpha_high.to(sample.device)
    original = (sample - (1 - alpha_low).sqrt() * eps) / alpha_low.sqrt()
    if inverse.config.clip_sample:
        original = original.clamp(-inverse.config.clip_sample_range, inverse.config.clip_sample_range)
    return (alpha_high.sqrt() * original + (1 - alpha_high).sqrt() * eps).to(sample.dtype)


def null_text_optimise(
    unet,
    scheduler_template,
    original: torch.Tensor,
    trajectory: list[torch.Tensor],
    cond: torch.Tensor,
    uncond: torch.Tensor,
    guidance_scale: float = 7.5,
    *,
    num_inner_steps: int = 10,
    early_stop_epsilon: float = 1e-5,
    learning_rate: float = 1e-2,
    progress: Progress | None = None,
) -> list[torch.Tensor]:
    """Null-text inversion (Mokady et al. 2023): one unconditional embedding per DDIM step, optimised so that the
    guided step from the current latent lands on the pivot (the DDIM inversion ``trajectory`` of ``original``).

    As the authors' ``null_text_w_ptp.ipynb``: the embedding starts from ``uncond`` (then from the previous step's
    result), Adam with learning rate ``learning_rate * (1 - i / 100)`` at step i, at most ``num_inner_steps``
    updates, stopping early once the MSE falls below ``early_stop_epsilon + i * 2e-5``; the next step starts from
    the latent the optimised guidance gives. Returns the embeddings in denoising order (one per timestep of the
    full schedule, noisiest first). A loss that turns NaN stops with a clear error.
    """
    from diffusers import DDIMScheduler

    from ..errors import NumericalError

    scheduler = DDIMScheduler.from_config(scheduler_template.config)
    scheduler.set_timesteps(len(trajectory))
    pivots = [original, *trajectory]
    embeddings: list[torch.Tensor] = []
    bar = progress(num_inner_steps * len(trajectory)) if progress else None
    # the editor runs under inference mode; optimising needs autograd and tensors made outside it
    with torch.inference_mode(False), torch.enable_grad():
        latent = pivots[-1].clone()
        cond, embedding = cond.clone(), uncond.clone()
        for i, t in enumerate(scheduler.timesteps):
            target = pivots[-i - 2].clone()
            embedding = embedding.detach().clone().requires_grad_(True)  # Adam updates in place
            optimiser = torch.optim.Adam([embedding], lr=learning_rate * (1.0 - i / 100.0))
            with torch.no_grad():
                cond_out = unet(latent, t, encoder_hidden_states=cond, return_dict=False)[0]
            done = 0
            for _ in range(num_inner_steps):
                uncond_out = unet(latent, t, encoder_hidden_states=embedding, return_dict=False)[0]
                guided = uncond_out + guidance_scale * (cond_out - uncond_out)
                rebuilt = scheduler.step(guided, t, latent, return_dict=False)[0]
                loss = torch.nn.functional.mse_loss(rebuilt, target)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                done += 1
                value = loss.item()
                if not math.isfinite(value):
                    raise NumericalError(
                        f"null-text inversion diverged at step {i} (loss {value}): lower null_text_learning_rate "
                        "or use inversion='negative-prompt'"
                    )
                if value < early_stop_epsilon + i * 2e-5:
                    break
            if bar is not None:
                bar.update(num_inner_steps)  # the authors' bar counts the skipped updates too
            embedding = embedding.detach()
            embeddings.append(embedding[:1])
            with torch.no_grad():
                hidden = torch.cat([embedding, cond])
                out = unet(torch.cat([latent, latent]), t, encoder_hidden_states=hidden, return_dict=False)[0]
                uncond_out, cond_out = out.chunk(2)
                guided = uncond_out + guidance_scale * (cond_out - uncond_out)
                latent = scheduler.step(guided, t, latent, return_dict=False)[0]
    if bar is not None:
        bar.close()
    return embeddings
