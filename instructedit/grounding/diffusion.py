"""Grounding with the diffusion model already loaded: no extra weights, any Stable-Diffusion-style model.

* :class:`CrossAttentionGrounder` — the cross-attention of the phrase's tokens while the UNet denoises the noised
  image (Prompt-to-Prompt's and DiffEdit-style localisation), captured by :mod:`instructedit.engine.attention`.
* :class:`NoiseDifferenceGrounder` — DiffEdit's noise-difference map (:mod:`instructedit.engine.localize`)
  between the phrase and the empty prompt: where naming the phrase changes the predicted noise.

Both read the image at one noise level (``strength``) with ``num_maps`` noises drawn from ``seed``, so they are
deterministic; the soft map is rescaled to [0, 1] and thresholded at ``threshold``. Their score is the map's
peakedness, ``1 - mean / max``: 0 for a flat map (the phrase is nowhere in particular), near 1 for a compact one.
"""

from __future__ import annotations

import torch
from PIL import Image

from ..engine.attention import CrossAttentionStore, controlled_attention
from ..engine.geometry import crop_to, pad_to_multiple
from ..engine.latents import encode_distribution, image_to_tensor, sample_latents
from ..engine.localize import noise_difference_map
from ..engine.prompts import PromptEncoder
from ..engine.sampling import make_scheduler, strength_timesteps
from .base import Grounding, binary_mask, check_phrase

STOP_WORDS = frozenset({"the", "a", "an", "of", "on", "at", "in", "to", "and", "with", "its", "this", "that"})


def _peakedness(soft: torch.Tensor) -> float:
    peak = float(soft.max())
    return 0.0 if peak <= 0 else float(1.0 - soft.mean() / peak)


class _DiffusionGrounder:
    name = "diffusion"

    def __init__(self, components, prompts: PromptEncoder | None = None, *, strength: float = 0.5,
                 num_maps: int = 4, threshold: float = 0.5, seed: int = 0, num_inference_steps: int = 50) -> None:
        self.components = components
        self.prompts = prompts or PromptEncoder(components.tokenizer, components.text_encoder)
        self.strength, self.num_maps, self.threshold, self.seed = strength, num_maps, threshold, seed
        self.num_inference_steps = num_inference_steps

    def ground(self, image: Image.Image, phrase: str) -> Grounding:
        phrase = check_phrase(phrase)
        c = self.components
        padded, size = pad_to_multiple(image.convert("RGB"), c.vae_scale_factor)
        with torch.inference_mode():
            distribution = encode_distribution(c.vae, image_to_tensor(padded).to(c.device, c.dtype))
            generator = torch.Generator(c.device).manual_seed(self.seed)
            soft, details = self._soft_map(distribution, generator, phrase)
        soft = soft.float().cpu()
        low, high = float(soft.min()), float(soft.max())
        normalised = (soft - low) / (high - low) if high > low else torch.zeros_like(soft)
        full = binary_mask(normalised.numpy(), padded.size, self.threshold)
        mask = crop_to(full, size)
        return Grounding(phrase, mask, _peakedness(soft), self.name,
                         {"threshold": self.threshold, "strength": self.strength, **details})

    def _soft_map(self, distribution, generator, phrase: str) -> tuple[torch.Tensor, dict]:  # pragma: no cover
        raise NotImplementedError


class CrossAttentionGrounder(_DiffusionGrounder):
    """Mean cross-attention of the phrase's content tokens (stop words and special tokens left out)."""

    name = "attention"

    def token_indices(self, phrase: str) -> list[int]:
        """Positions of the phrase's content tokens in its encoding (falls back to every non-special token)."""
        tokenizer = self.components.tokenizer
        ids = tokenizer(phrase, truncation=True, max_length=tokenizer.model_max_length).input_ids
        special = set(tokenizer.all_special_ids)
        positions = [i for i, t in enumerate(ids) if t not in special]
        content = [i for i in positions
                   if tokenizer.decode([ids[i]]).strip().lower().removesuffix("</w>") not in STOP_WORDS]
        return content or positions

    def _soft_map(self, distribution, generator, phrase):
        c = self.components
        sched = make_scheduler(c.scheduler, "ddim")
        t = strength_timesteps(sched, self.num_inference_steps, self.strength)[0]
        latents = sample_latents(distribution, generator, c.vae, repeats=self.num_maps)
        from diffusers.utils.torch_utils import randn_tensor

        noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        noisy = sched.scale_model_input(sched.add_noise(latents, noise, t), t)
        text = self.prompts(phrase).expand(self.num_maps, -1, -1)
        store = CrossAttentionStore(max_resolution=max(noisy.shape[-2:]))
        with controlled_attention(c.unet_forward, store):
            c.unet_forward(noisy, t, encoder_hidden_states=text)
        tokens = self.token_indices(phrase)
        maps = store.maps(size=tuple(noisy.shape[-2:]), item=None)
        return maps[tokens].mean(dim=0), {"tokens": tokens}


class NoiseDifferenceGrounder(_DiffusionGrounder):
    """DiffEdit's map between the phrase and the empty prompt (guidance ``guidance_scale``, clamp ratio 3)."""

    name = "noise-difference"

    def __init__(self, components, prompts: PromptEncoder | None = None, *, guidance_scale: float = 7.5,
                 thresholding_ratio: float = 3.0, num_maps: int = 10, **kwargs) -> None:
        super().__init__(components, prompts, num_maps=num_maps, **kwargs)
        self.guidance_scale, self.thresholding_ratio = guidance_scale, thresholding_ratio

    def _soft_map(self, distribution, generator, phrase):
        c = self.components
        soft = noise_difference_map(
            c.unet_forward, c.scheduler, c.vae, distribution, generator, reference=self.prompts(""),
            query=self.prompts(phrase), uncond=self.prompts(""), num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale, encode_strength=self.strength, num_maps=self.num_maps,
            thresholding_ratio=self.thresholding_ratio,
        )
        return soft[0, 0], {"guidance_scale": self.guidance_scale}

