"""Prompt-to-Prompt's attention control (Hertz et al. 2022) as an :class:`AttentionController`.

The source and the target prompt are denoised side by side in one batch, ``[source, target]`` (with guidance,
``[u, u, c_source, c_target]`` as the authors' code and diffusers' pipelines lay it out); only the conditional rows
are edited. During the first ``cross_replace_steps`` of the schedule the target's cross-attention is the source's,
carried over to the target's tokens by a word swap, refinement or reweighting map
(:mod:`~instructedit.engine.alignment`); during the first ``self_replace_steps`` the target's self-attention is
the source's in the coarse layers (at most (side/4)² queries: 16x16 of Stable Diffusion's 64x64 latent, as the
authors keep it). :class:`LocalBlend` then keeps the source's latents outside the region the edited words attend
to, after every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .attention import AttentionController, AttentionSite, CrossAttentionStore

CrossEdit = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(base, replace) -> edited``: the source's cross-attention (heads, queries, tokens) and the targets' (targets,
heads, queries, tokens) -> the targets' new cross-attention."""


def word_swap(mapper: torch.Tensor) -> CrossEdit:
    """Replace: the source's attention moved onto the target's tokens by a :func:`replacement_mapper`."""
    mapper = mapper.unsqueeze(0) if mapper.ndim == 2 else mapper
    return lambda base, replace: torch.einsum("hpw,bwn->bhpn", base, mapper.to(base))


def refine(mapper: torch.Tensor, alphas: torch.Tensor) -> CrossEdit:
    """Refine: aligned tokens take the source's attention, new tokens keep their own."""
    mapper = mapper.unsqueeze(0) if mapper.ndim == 1 else mapper
    alphas = (alphas.unsqueeze(0) if alphas.ndim == 1 else alphas)[:, None, None, :]

    def edit(base: torch.Tensor, replace: torch.Tensor) -> torch.Tensor:
        carried = base[:, :, mapper.to(base.device)].permute(2, 0, 1, 3)
        weight = alphas.to(base)
        return carried * weight + replace * (1 - weight)

    return edit


def reweighted(edit: CrossEdit, scale: torch.Tensor) -> CrossEdit:
    """``edit``, then each token's attention scaled (the paper's attention re-weighting on top of a swap)."""
    return lambda base, replace: edit(base, replace) * scale.to(base)[:, None, None, :]


class PromptToPrompt(AttentionController):
    """The attention edit for one denoising loop of ``num_inference_steps`` UNet calls (one per step).

    ``cross_replace_steps`` is one fraction, or a (tokens,) tensor of fractions per target token (the authors'
    per-word ``{"default_": 0.8, "word": 0.2}``).
    """

    def __init__(
        self, cross_edit: CrossEdit, num_inference_steps: int, *, cross_replace_steps: float | torch.Tensor = 0.8,
        self_replace_steps: float = 0.4, self_max_queries: int = 16**2, guided: bool = True,
        store: CrossAttentionStore | None = None,
    ) -> None:
        self.cross_edit, self.guided, self.store = cross_edit, guided, store
        # the authors count cross-attention replacement over steps + 1 entries, self-attention over steps
        if isinstance(cross_replace_steps, torch.Tensor):  # (steps + 1, tokens) weights, made once
            until = (cross_replace_steps * (num_inference_steps + 1)).long()
            self.cross_until = (torch.arange(num_inference_steps + 1)[:, None] < until[None, :]).float()
        else:
            self.cross_until = int(cross_replace_steps * (num_inference_steps + 1))
        self.self_until = int(num_inference_steps * self_replace_steps)
        self.self_max_queries = self_max_queries

    def reset(self) -> None:
        super().reset()
        if self.store is not None:
            self.store.reset()

    def probabilities(self, site: AttentionSite, probs: torch.Tensor) -> torch.Tensor:
        cond = probs[probs.shape[0] // 2 :] if self.guided else probs
        step = self.call
        if site.is_cross:
            if isinstance(self.cross_until, torch.Tensor):  # per token: this step's (tokens,) weights
                alpha = self.cross_until[min(step, len(self.cross_until) - 1), : cond.shape[-1]].to(cond)
            else:
                alpha = 1.0 if step < self.cross_until else 0.0  # the authors' per-step weight, no allocation
            base, replace = cond[0], cond[1:]
            cond[1:] = self.cross_edit(base, replace) * alpha + (1 - alpha) * replace
        elif step < self.self_until and cond.shape[-2] <= self.self_max_queries:
            cond[1:] = cond[0].unsqueeze(0).expand_as(cond[1:])
        if self.store is not None:
            self.store.probabilities(site, cond)
        return probs


class LocalBlend:
    """After each step, the target keeps the source's latents outside where the blend words attend
    (the authors' ``LocalBlend``: their summed cross-attention at the (side/4)² layers of the UNet's down and up
    parts, 3x3 max-pooled, resized, normalised by its maximum, thresholded, the union over source and target).

    ``words`` is (2, tokens): 1 on the tokens of the source's and the target's blend words. ``mask`` holds the last
    mask (1x1xhxw) so the edit can report it.
    """

    def __init__(self, store: CrossAttentionStore, words: torch.Tensor, resolution: int, threshold: float = 0.3,
                 start_step: int = 0) -> None:
        self.store, self.words, self.resolution = store, words, resolution
        self.threshold, self.start_step = threshold, start_step
        self.mask: torch.Tensor | None = None

    def region(self, latent_size: tuple[int, int]) -> torch.Tensor:
        """The blend mask (1x1xhxw of 0/1) from the attention stored so far."""
        queries = min(self.store.sums, key=lambda q: abs(math.isqrt(q) - self.resolution))
        side = math.isqrt(queries)
        summed = self.store.sums[queries]  # (2, queries, tokens)
        maps = (summed * self.words.to(summed)[:, None, :]).sum(-1).reshape(-1, 1, side, side)
        maps = F.max_pool2d(maps, (3, 3), (1, 1), padding=(1, 1))
        maps = F.interpolate(maps, size=latent_size)
        peak = maps.amax(dim=(2, 3), keepdim=True)
        chosen = (maps / peak.clamp_min(torch.finfo(maps.dtype).tiny)).gt(self.threshold)
        return chosen.any(dim=0, keepdim=True).float()

    def __call__(self, i: int, t, latents: torch.Tensor) -> torch.Tensor:
        if i < self.start_step or not self.store.sums:
            return latents
        self.mask = self.region(tuple(latents.shape[-2:])).to(latents)
        source = latents[:1]
        return source + self.mask * (latents - source)


class MaskBlend:
    """After each step, the target keeps the source's latents where ``mask`` (1x1xhxw, white = edit) is 0."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask

    def __call__(self, i: int, t, latents: torch.Tensor) -> torch.Tensor:
        source = latents[:1]
        return source + self.mask.to(latents) * (latents - source)
