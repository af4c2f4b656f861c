"""Text-to-image sampling with the engine's own steps: seeded noise, classifier-free-guided DDIM denoising,
decoding. Used to check what a text-to-image model draws from a caption (the built-in quality evaluation)."""

from __future__ import annotations

import torch
from PIL import Image

from .components import Components
from .guidance import CFGDenoiser
from .latents import decode, tensor_to_image
from .prompts import PromptEncoder
from .sampling import denoise, make_scheduler


@torch.inference_mode()
def text_to_image(
    components: Components,
    prompt: str,
    *,
    num_inference_steps: int = 20,
    guidance_scale: float = 5.0,
    seed: int = 0,
) -> Image.Image:
    """One image of ``prompt`` from a text-to-image model, at the UNet's native latent size.

    Noise comes from a ``torch.Generator`` on the model's device seeded with ``seed`` (diffusers'
    ``randn_tensor``); ``guidance_scale`` > 1 guides against the empty prompt; DDIM runs ``num_inference_steps``.
    The same components, prompt and settings give the same image.
    """
    from diffusers.utils.torch_utils import randn_tensor

    prompts = PromptEncoder(components.tokenizer, components.text_encoder)
    scheduler = make_scheduler(components.scheduler, "ddim")
    scheduler.set_timesteps(num_inference_steps)
    side = int(components.unet.config.sample_size)
    generator = torch.Generator(components.device).manual_seed(seed)
    noise = randn_tensor((1, components.latent_channels, side, side), generator=generator,
                         device=components.device, dtype=components.dtype)  # fmt: skip
    uncond = prompts("") if guidance_scale > 1 else None
    denoiser = CFGDenoiser(components.unet_forward, prompts(prompt), uncond, guidance_scale)
    latents = denoise(denoiser, scheduler, noise * scheduler.init_noise_sigma, scheduler.timesteps)
    return tensor_to_image(decode(components.vae, latents))
