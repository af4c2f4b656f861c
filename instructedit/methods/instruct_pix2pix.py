"""InstructPix2Pix (Brooks et al., CVPR 2023): an instruction-conditioned UNet with dual classifier-free guidance.

Equals diffusers' ``StableDiffusionInstructPix2PixPipeline`` given the same components, scheduler and seed. The
default sampler is Euler ancestral, as in the paper's ``edit_cli.py`` (k-diffusion) and the released model's
scheduler config. With a mask, the region outside it is put back (forward-noised) after every step, or, as
Grounded-InstructPix2Pix does (Shagidanov et al. 2024: latents blended outside the grounded mask only once most of
the edit is made), only after the steps before ``mask_blend_start``.
"""

from __future__ import annotations

from .base import ETA, GUIDANCE, IP2P_MODEL, EditContext, Method, MethodOutput, Param, noised_original
from .base import scheduler_param as _scheduler


class InstructPix2Pix(Method):
    def run(self, ctx: EditContext, *, num_inference_steps, guidance_scale, image_guidance_scale, eta, scheduler,
            mask_blend_start=0.0) -> MethodOutput:
        from diffusers.utils.torch_utils import randn_tensor

        from ..engine.guidance import InstructPix2PixDenoiser
        from ..engine.latents import mode_latents
        from ..engine.sampling import make_scheduler

        sched = make_scheduler(ctx.components.scheduler, scheduler)
        sched.set_timesteps(num_inference_steps)
        distribution = ctx.encode()
        image_latents = mode_latents(distribution, ctx.vae, scaled=False)
        shape = (1, ctx.components.latent_channels, *image_latents.shape[-2:])
        noise = randn_tensor(shape, generator=ctx.generator, device=image_latents.device, dtype=image_latents.dtype)
        denoiser = InstructPix2PixDenoiser(
            ctx.unet, ctx.prompts(ctx.instruction), ctx.prompts(""), image_latents, guidance_scale, image_guidance_scale
        )
        original = mode_latents(distribution, ctx.vae)
        return ctx.denoise_outside_kept(
            denoiser, sched, noise * sched.init_noise_sigma, sched.timesteps,
            eta=eta, original_at=noised_original(sched, original, noise, sched.timesteps),
            start_step=round(mask_blend_start * len(sched.timesteps)),
        )


METHOD = InstructPix2Pix(
    name="ip2p",
    description="InstructPix2Pix: instruction-conditioned UNet, dual guidance on text and image",
    needs=frozenset({"instruction"}),
    params=(
        Param("num_inference_steps", 100, "number of denoising steps", 1, 1000),
        GUIDANCE,
        Param("image_guidance_scale", 1.5, "guidance towards the input image; higher keeps more of it", 0, 100),
        ETA, _scheduler("euler-ancestral"),
        Param("mask_blend_start", 0.0, "with a mask: the share of the steps after which the outside is put back "
              "(0: after every step; Grounded-InstructPix2Pix blends only late, about 0.9)", 0, 1),
    ),
    model_kind="ip2p",
    default_model=IP2P_MODEL,
    aliases=("instruct-pix2pix", "instructpix2pix"),
)
