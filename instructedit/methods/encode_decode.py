"""DDIM encode-decode: invert the input with the source caption, regenerate it with the target caption.

The inversion is diffusers' ``DDIMInverseScheduler``; the regeneration is the DDIM loop of
``StableDiffusionPipeline``. With source = target and guidance 1 the input comes back up to the DDIM
discretisation error. ``strength`` is the encoding ratio: how far along the schedule to invert.
"""

from __future__ import annotations

from .base import (
    ETA,
    GUIDANCE,
    INVERSION_GUIDANCE,
    STEPS,
    EditContext,
    Method,
    MethodOutput,
    Param,
    trajectory_original,
)


class EncodeDecode(Method):
    def run(self, ctx: EditContext, *, strength, num_inference_steps, guidance_scale, inversion_guidance_scale, eta
            ) -> MethodOutput:
        from ..engine.latents import sample_latents
        from ..engine.sampling import make_scheduler, strength_timesteps

        template = ctx.components.scheduler
        original = sample_latents(ctx.encode(), ctx.generator, ctx.vae)
        trajectory = ctx.invert(ctx.source or "", inversion_guidance_scale, original, num_inference_steps, strength)
        sched = make_scheduler(template, "ddim")
        timesteps = strength_timesteps(sched, num_inference_steps, strength)
        return ctx.denoise_outside_kept(
            ctx.text_denoiser(ctx.target, guidance_scale), sched, trajectory[-1], timesteps,
            eta=eta, original_at=trajectory_original(trajectory, original),
        )


METHOD = EncodeDecode(
    name="encode-decode",
    description="DDIM encode-decode: deterministic inversion with the source caption, decoding with the target",
    needs=frozenset({"target"}),
    params=(
        Param("strength", 1.0, "encoding ratio: fraction of the schedule to invert and regenerate", 0.0, 1.0),
        STEPS, GUIDANCE, INVERSION_GUIDANCE, ETA,
    ),
    strength_param="strength",
    aliases=("ddim", "ddim-inversion"),
)
