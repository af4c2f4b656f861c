"""SDEdit (Meng et al., 2022): noise the input to ``strength``, denoise towards the target caption.

Equals diffusers' ``StableDiffusionImg2ImgPipeline`` given the same components, scheduler, seed and settings.
With a mask, the region outside it is put back (forward-noised with the same noise) after every step.
"""

from __future__ import annotations

from .base import ETA, GUIDANCE, STEPS, EditContext, Method, MethodOutput, Param, noised_original
from .base import scheduler_param as _scheduler


class SDEdit(Method):
    def run(self, ctx: EditContext, *, strength, num_inference_steps, guidance_scale, eta, scheduler) -> MethodOutput:
        from diffusers.utils.torch_utils import randn_tensor

        from ..engine.latents import sample_latents
        from ..engine.sampling import make_scheduler, strength_timesteps

        sched = make_scheduler(ctx.components.scheduler, scheduler)
        timesteps = strength_timesteps(sched, num_inference_steps, strength)
        original = sample_latents(ctx.encode(), ctx.generator, ctx.vae)
        noise = randn_tensor(original.shape, generator=ctx.generator, device=original.device, dtype=original.dtype)
        return ctx.denoise_outside_kept(
            ctx.text_denoiser(ctx.target, guidance_scale), sched, sched.add_noise(original, noise, timesteps[:1]),
            timesteps, eta=eta, original_at=noised_original(sched, original, noise, timesteps),
        )


METHOD = SDEdit(
    name="sdedit",
    description="SDEdit: add noise up to `strength`, then denoise conditioned on the target caption",
    needs=frozenset({"target"}),
    params=(
        Param("strength", 0.8, "how far to noise the input (0 keeps it, 1 ignores it)", 0.0, 1.0),
        STEPS, GUIDANCE, ETA, _scheduler("ddim"),
    ),
    strength_param="strength",
    aliases=("img2img",),
)
