"""DAC (Doubly Abductive Counterfactual inference, CVPR 2024): two LoRAs fitted to the input image, then
sampling from noise with the target caption and the text-encoder LoRA subtracted. See
:mod:`instructedit.engine.dac`; defaults are the authors' (xuesong39/DAC: UNet LoRA rank 512 and text-encoder LoRA
rank 4, 1000 steps each at learning rate 1e-4, annealing 0.8, guidance 4, 30 steps). The LoRAs are cached per
image and captions, the UNet LoRA per image and source caption (another annealing reuses it).
"""

from __future__ import annotations

from .base import EditContext, Method, MethodOutput, Param


class DoublyAbductive(Method):
    def run(self, ctx: EditContext, *, annealing, unet_rank, text_rank, unet_steps, text_steps, dac_learning_rate,
            num_inference_steps, guidance_scale) -> MethodOutput:
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        from ..engine import dac
        from ..engine.cache import digest
        from ..engine.guidance import CFGDenoiser
        from ..engine.latents import sample_latents
        from ..engine.prompts import encode_text
        from ..engine.sampling import denoise, make_scheduler

        dac.require_peft()
        components = ctx.components
        unet, text_encoder, tokenizer = components.unet, components.text_encoder, components.tokenizer
        settings = dac.DacSettings(unet_rank, text_rank, unet_steps, text_steps, dac_learning_rate, annealing)
        original = sample_latents(ctx.encode(), ctx.generator, ctx.vae)
        train_scheduler = make_scheduler(components.scheduler, "ddim")
        # the abductions draw from their own generator, so a cached edit samples the same noise as a fresh one
        training = torch.Generator().manual_seed(
            int(torch.randint(0, 2**62, (1,), generator=ctx.generator, device=ctx.generator.device)))
        owner = components.unet
        image_key = digest("dac-unet", components.name, id(owner), original, ctx.source, unet_rank, unet_steps,
                           dac_learning_rate)
        full_key = digest("dac", image_key, ctx.target, text_rank, text_steps, annealing)
        cached = ctx.cache.trajectory(full_key, 10**9, owner) if ctx.cache is not None else []
        dac.remove(unet, text_encoder)
        try:
            if cached:
                dac.attach(unet, text_encoder, settings, cached)
            else:
                first = ctx.cache.trajectory(image_key, 10**9, owner) if ctx.cache is not None else []
                loras = dac.abduct(unet, text_encoder, tokenizer, train_scheduler, original, ctx.source, ctx.target,
                                   settings, training, ctx.progress, unet_lora=first or None, forward=ctx.unet)
                if ctx.cache is not None:
                    ctx.cache.store(image_key, list(loras.unet.values()), owner)
                    ctx.cache.store(full_key, [*loras.unet.values(), *loras.text_encoder.values()], owner)
            dac.set_lora_scale(text_encoder, dac.TEXT_ADAPTER, -1.0)
            with torch.no_grad():
                cond = encode_text(tokenizer, text_encoder, ctx.target)
                uncond = encode_text(tokenizer, text_encoder, "") if guidance_scale > 1 else None
            scheduler = make_scheduler(components.scheduler, "ddim")
            scheduler.set_timesteps(num_inference_steps)
            noise = randn_tensor(tuple(original.shape), generator=ctx.generator, device=original.device,
                                 dtype=original.dtype)
            last = int(components.scheduler.config.num_train_timesteps) - 1
            with ctx.unet.eager():  # the LoRA weight changes every step: a trace would freeze it
                annealed = dac.AnnealedUNet(unet, ctx.unet, annealing, last)
                latents = denoise(CFGDenoiser(annealed, cond, uncond, guidance_scale), scheduler,
                                  noise * scheduler.init_noise_sigma, scheduler.timesteps, generator=ctx.generator,
                                  progress=ctx.progress)
        finally:
            dac.remove(unet, text_encoder)
        return MethodOutput(latents)


METHOD = DoublyAbductive(
    name="dac",
    description="DAC: a UNet LoRA and a text-encoder LoRA fitted to the image, then sampling from noise with the "
    "target caption and the text-encoder LoRA subtracted (slow: two fine-tunes per image, cached)",
    needs=frozenset({"source", "target"}),
    params=(
        Param("annealing", 0.8, "eta: the UNet LoRA's weight at the noisiest step (1 at the cleanest)", 0.0, 1.0),
        Param("unet_rank", 512, "rank of the UNet LoRA (abduction 1)", 1, 4096),
        Param("text_rank", 4, "rank of the text-encoder LoRA (abduction 2)", 1, 1024),
        Param("unet_steps", 1000, "training steps of abduction 1", 1, 100000),
        Param("text_steps", 1000, "training steps of abduction 2", 1, 100000),
        Param("dac_learning_rate", 1e-4, "AdamW learning rate of both abductions", 0.0, 1.0),
        Param("num_inference_steps", 30, "number of denoising steps", 1, 1000),
        Param("guidance_scale", 4.0, "classifier-free guidance scale on the target caption", 0, 100),
    ),
    accepts_mask=False,
)
