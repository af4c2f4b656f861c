"""DiffEdit (Couairon et al., ICLR 2023): infer the edit mask from noise predictions, then edit inside it.

1. Mask: noise the input to ``mask_encode_strength`` with ``num_maps_per_mask`` noises; the mean absolute
   difference of the guided predictions under target and source captions, clamped at ``mask_thresholding_ratio``
   times its mean, rescaled to [0, 1] and thresholded at 0.5 (diffusers' ``generate_mask``).
2. DDIM inversion of the input to ``inpaint_strength``.
3. DDIM decoding with the target caption; outside the mask the inverted latents are put back after each step.

diffusers runs these as three calls (``generate_mask``, ``invert``, ``__call__``); one request reproduces them
when the three share one generator seeded with the request's seed, the mask's step count is
``mask_num_inference_steps`` (diffusers' ``generate_mask`` default is 50) and ``blend_alignment="diffusers"``.

Given the same components and seed this equals diffusers' ``StableDiffusionDiffEditPipeline`` with
``blend_alignment="diffusers"``. Two deliberate differences, both tested:
- The input is encoded once for all noise maps (diffusers encodes the repeated image once per map); the draws
  from the generator are identical, so the result is too.
- ``blend_alignment="aligned"`` (default) fixes an off-by-one in diffusers: after step i its latents sit at the
  next timestep, but diffusers blends them with the inverted latent of the current one, and finishes on the
  inverted latent of the first timestep rather than the clean input. We blend at matching noise levels and end
  on the clean input latents, so the unedited region decodes to exactly the VAE reconstruction of the input.
- ``inversion_guidance_scale`` defaults to 1 (the paper encodes without guidance); diffusers' ``invert``
  defaults to 7.5. Pass 7.5 to reproduce it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    import torch


def diffedit_mask(
    ctx: EditContext, distribution, *, num_inference_steps: int, guidance_scale: float, mask_encode_strength: float,
    num_maps_per_mask: int, mask_thresholding_ratio: float, mask_smoothing: float,
) -> torch.Tensor:
    """The 1x1xhxw 0/1 latent-resolution edit mask of DiffEdit's first step (target vs source caption), from the
    edit cache when this image, these captions and settings met the same generator state before (a sweep of
    ``inpaint_strength`` estimates it once)."""
    from ..engine.localize import noise_difference_mask

    settings = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
                "encode_strength": mask_encode_strength, "num_maps": num_maps_per_mask,
                "thresholding_ratio": mask_thresholding_ratio, "smoothing": mask_smoothing}
    texts = (ctx.prompts(ctx.source or ""), ctx.prompts(ctx.target), ctx.prompts(""))

    def compute() -> torch.Tensor:
        return noise_difference_mask(ctx.unet, ctx.components.scheduler, ctx.vae, distribution, ctx.generator,
                                     reference=texts[0], query=texts[1], uncond=texts[2], **settings)

    key = ("diffedit-mask", ctx.components.name, id(ctx.components.unet), distribution.parameters, *texts,
           sorted(settings.items()), sorted(dict(ctx.components.scheduler.config).items()))
    return ctx.cached_with_generator(key, compute)


class DiffEdit(Method):
    def run(
        self, ctx: EditContext, *, num_inference_steps, guidance_scale, mask_num_inference_steps, mask_encode_strength,
        num_maps_per_mask, mask_thresholding_ratio, mask_smoothing, inpaint_strength, inversion_guidance_scale, eta,
        blend_alignment,
    ) -> MethodOutput:
        from ..engine.latents import sample_latents
        from ..engine.sampling import make_scheduler, strength_timesteps

        distribution = ctx.encode()
        mask = ctx.latent_mask(distribution.mean.shape[-2:])
        produced = mask is None
        if produced:
            mask = diffedit_mask(
                ctx, distribution, num_inference_steps=mask_num_inference_steps or num_inference_steps,
                guidance_scale=guidance_scale,
                mask_encode_strength=mask_encode_strength, num_maps_per_mask=num_maps_per_mask,
                mask_thresholding_ratio=mask_thresholding_ratio, mask_smoothing=mask_smoothing,
            )
        template = ctx.components.scheduler
        original = sample_latents(distribution, ctx.generator, ctx.vae)
        trajectory = ctx.invert(ctx.source or "", inversion_guidance_scale, original, num_inference_steps,
                                inpaint_strength)
        if blend_alignment == "diffusers":
            descending = trajectory[::-1]
            original_at = descending.__getitem__
        else:
            original_at = trajectory_original(trajectory, original)
        sched = make_scheduler(template, "ddim")
        timesteps = strength_timesteps(sched, num_inference_steps, inpaint_strength)
        return ctx.denoise_outside_kept(
            ctx.text_denoiser(ctx.target, guidance_scale), sched, trajectory[-1], timesteps,
            eta=eta, original_at=original_at, mask=mask, produced_mask=produced,
        )


METHOD = DiffEdit(
    name="diffedit",
    description="DiffEdit: mask from noise-prediction differences, DDIM inversion, masked decoding",
    needs=frozenset({"target"}),
    params=(
        STEPS, GUIDANCE,
        Param("mask_num_inference_steps", None, "denoising steps of the schedule the mask is estimated on (diffusers' "
              "generate_mask num_inference_steps); unset = num_inference_steps", 1, 1000, kind=int),
        Param("mask_encode_strength", 0.5, "noise level at which the mask is estimated", 0.0, 1.0),
        Param("num_maps_per_mask", 10, "number of noises averaged into the mask", 1, 256),
        Param("mask_thresholding_ratio", 3.0, "clamp the difference map at this multiple of its mean", 1e-6, 1e6),
        Param("mask_smoothing", 0.0, "Gaussian sigma (latent pixels) applied to the map before thresholding; 0 = off",
              0.0, 16.0),
        Param("inpaint_strength", 0.8, "encoding ratio: fraction of the schedule to invert and regenerate", 0.0, 1.0),
        INVERSION_GUIDANCE, ETA,
        Param("blend_alignment", "aligned", "'aligned' (fixed) or 'diffusers' (reproduces diffusers' off-by-one)",
              choices=("aligned", "diffusers")),
    ),
    produces_mask=True,
    strength_param="inpaint_strength",
)
