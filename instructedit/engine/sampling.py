"""The denoising loop and the pieces of scheduler bookkeeping every method shares."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from ..errors import InvalidRequestError

StepCallback = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]
Progress = Callable[[int], object]  # called with the number of steps about to run; returns a tqdm-like object


def make_scheduler(template, kind: str | None = None):
    """A fresh scheduler from ``template``'s config (schedulers carry state; edits must not share it).

    ``kind`` picks another scheduler class on the same noise schedule: ``"ddim"``, ``"euler-ancestral"``,
    ``"euler"``, ``"dpm++"``, and the few-step samplers of consistency-distilled models and LoRAs, ``"lcm"``
    (LCMScheduler) and ``"tcd"`` (TCDScheduler; its ``eta`` is the paper's gamma, 0.3 in diffusers' examples);
    ``None`` keeps the template's class.
    """
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        LCMScheduler,
        TCDScheduler,
    )

    classes = {"ddim": DDIMScheduler, "euler-ancestral": EulerAncestralDiscreteScheduler,
               "euler": EulerDiscreteScheduler, "dpm++": DPMSolverMultistepScheduler, "lcm": LCMScheduler,
               "tcd": TCDScheduler}
    cls = type(template) if kind is None else classes[kind]
    return cls.from_config(template.config)




def steps_for_strength(num_inference_steps: int, strength: float) -> int:
    """How many of ``num_inference_steps`` a run at ``strength`` takes: ``int(steps * strength)``, as diffusers."""
    count = min(int(num_inference_steps * strength), num_inference_steps)
    if count < 1:
        raise InvalidRequestError(
            f"strength {strength} with {num_inference_steps} steps leaves no denoising step: "
            "raise strength or num_inference_steps"
        )
    return count


def strength_timesteps(scheduler, num_inference_steps: int, strength: float) -> torch.Tensor:
    """The last ``int(num_inference_steps * strength)`` timesteps of the schedule (diffusers' ``get_timesteps``)."""
    scheduler.set_timesteps(num_inference_steps)
    t_start = num_inference_steps - steps_for_strength(num_inference_steps, strength)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * scheduler.order)
    return scheduler.timesteps[t_start * scheduler.order :]


def step_kwargs(scheduler, generator: torch.Generator | None, eta: float = 0.0) -> dict:
    """Extra arguments of ``scheduler.step`` that this scheduler accepts (``eta`` for DDIM, ``generator``)."""
    params = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "eta" in params:
        kwargs["eta"] = eta
    if "generator" in params:
        kwargs["generator"] = generator
    return kwargs


def denoise(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    eta: float = 0.0,
    after_step: StepCallback | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Run ``scheduler`` over ``timesteps`` from ``latents`` with ``denoiser``; return the final latents.

    ``after_step(i, t, latents)`` may replace the latents after step ``i`` (DiffEdit's masked blending does).
    """
    extra = step_kwargs(scheduler, generator, eta)
    bar = progress(len(timesteps)) if progress else None
    for i, t in enumerate(timesteps):
        model_input = scheduler.scale_model_input(latents, t)
        output = denoiser(model_input, t)
        latents = scheduler.step(output, t, latents, **extra, return_dict=False)[0]
        if after_step is not None:
            latents = after_step(i, t, latents)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return latents
