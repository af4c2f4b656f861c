"""Capturing and controlling attention, through diffusers attention processors, on any diffusers UNet.

One processor (:class:`ControlledAttnProcessor`) replaces every attention layer's processor for the span of a
``with controlled_attention(unet, controller):`` block. It computes attention as diffusers' ``AttnProcessor``
does, and lets a :class:`AttentionController` act at the two places methods need:

* ``keys_values``: the keys and values a layer attends to — shared or injected ones (cross-frame attention for
  video, mutual self-attention);
* ``probabilities``: the attention probabilities — captured (per-token cross-attention maps for grounding,
  UIP2P's attention loss) or edited (Prompt-to-Prompt's replace, refine and reweight).

Controllers keep state across calls (step counters, stored maps), so their processors say ``traceable = False``
and :class:`~instructedit.engine.traced.TracedUNet` never freezes them into a trace: a trace would run the
controller once, at recording time, and replay without it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AttentionSite:
    """Where an attention layer sits: its processor name, self- or cross-attention, UNet part and head count."""

    name: str
    is_cross: bool
    place: str  # "down", "mid" or "up"
    heads: int


class AttentionController:
    """Acts on every attention call inside :func:`controlled_attention`; the base class changes nothing.

    ``call`` counts UNet forward calls (one per denoising step when guidance is batched), starting at 0, so a
    controller can act on some steps only (Prompt-to-Prompt's ``cross_replace_steps``).
    """

    call: int = -1

    def begin_call(self) -> None:
        """Called before each UNet forward."""
        self.call += 1

    def reset(self) -> None:
        """Forget the calls seen so far (before a new denoising loop)."""
        self.call = -1

    def keys_values(self, site: AttentionSite, key: torch.Tensor, value: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (batch, tokens, channels) before splitting into heads; return the ones to attend to."""
        return key, value

    def probabilities(self, site: AttentionSite, probs: torch.Tensor) -> torch.Tensor:
        """Attention probabilities (batch, heads, queries, keys); return the ones to apply."""
        return probs


class ControlledAttnProcessor:
    """diffusers' ``AttnProcessor`` arithmetic with the controller's two hooks in it (see the module docstring)."""

    traceable = False  # stateful: never recorded into a TorchScript trace

    def __init__(self, controller: AttentionController, site: AttentionSite) -> None:
        self.controller, self.site = controller, site

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args, **kwargs
                 ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch, length = context.shape[:2]
        attention_mask = attn.prepare_attention_mask(attention_mask, length, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key, value = self.controller.keys_values(self.site, attn.to_k(context), attn.to_v(context))
        query, key, value = (attn.head_to_batch_dim(t) for t in (query, key, value))
        probs = attn.get_attention_scores(query, key, attention_mask)
        heads = attn.heads
        probs = probs.view(-1, heads, *probs.shape[1:])
        probs = self.controller.probabilities(self.site, probs).reshape(-1, *probs.shape[2:])
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs.to(value.dtype), value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def attention_sites(unet) -> dict[str, AttentionSite]:
    """Every attention layer of ``unet`` by processor name (``…attn1.processor`` self, ``…attn2.processor`` cross)."""
    modules = dict(unet.named_modules())
    sites = {}
    for name in unet.attn_processors:
        module = modules[name.removesuffix(".processor")]
        place = "mid" if name.startswith("mid_block") else ("down" if name.startswith("down_blocks") else "up")
        sites[name] = AttentionSite(name, bool(module.is_cross_attention), place, int(module.heads))
    return sites


@contextmanager
def controlled_attention(unet, controller: AttentionController) -> Iterator[AttentionController]:
    """Route every attention layer of ``unet`` through ``controller`` inside the block; restore afterwards.

    ``unet`` is the module itself or a :class:`~instructedit.engine.traced.TracedUNet` around it.
    """
    module = getattr(unet, "unet", unet)
    saved = dict(module.attn_processors)
    sites = attention_sites(module)
    module.set_attn_processor({name: ControlledAttnProcessor(controller, site) for name, site in sites.items()})
    handle = module.register_forward_pre_hook(lambda *_: controller.begin_call())
    try:
        yield controller
    finally:
        handle.remove()
        module.set_attn_processor(saved)


class CrossAttentionStore(AttentionController):
    """Captures cross-attention maps per text token, summed over heads, layers and calls (Prompt-to-Prompt's
    ``AttentionStore``; attention-based grounding and UIP2P's attention loss read it).

    Only layers whose query count is at most ``max_resolution``² are kept (the paper uses 32x32 of a 64x64
    latent; finer layers cost memory and say little). ``calls`` limits capture to those UNet calls, ``places``
    to those parts of the UNet (``"down"``, ``"mid"``, ``"up"``).
    """

    def __init__(self, max_resolution: int = 32, calls: Sequence[int] | None = None,
                 places: Sequence[str] | None = None) -> None:
        self.max_resolution = max_resolution
        self.calls = None if calls is None else set(calls)
        self.places = None if places is None else set(places)
        self.sums: dict[int, torch.Tensor] = {}  # query count -> (batch, queries, tokens) summed over heads
        self.counts: dict[int, int] = {}  # query count -> number of (layer, call, head) maps summed

    def reset(self) -> None:
        super().reset()
        self.sums.clear()
        self.counts.clear()

    def probabilities(self, site: AttentionSite, probs: torch.Tensor) -> torch.Tensor:
        queries = probs.shape[-2]
        wanted = (self.calls is None or self.call in self.calls) and (self.places is None or site.place in self.places)
        if site.is_cross and queries <= self.max_resolution**2 and wanted:
            summed = probs.detach().float().sum(dim=1)
            self.sums[queries] = self.sums[queries] + summed if queries in self.sums else summed
            self.counts[queries] = self.counts.get(queries, 0) + probs.shape[1]
        return probs

    def maps(self, size: tuple[int, int] | None = None, item: int | None = -1) -> torch.Tensor:
        """Mean cross-attention per token, (tokens, h, w), of batch ``item`` (the last: the conditional branch
        when guidance batches unconditional first; ``None``: the mean over the batch); every stored resolution
        is resized to ``size`` (default: the largest stored) and averaged, weighted by how many maps each holds."""
        if not self.sums:
            raise RuntimeError("no cross-attention was captured: run the UNet inside controlled_attention first")
        largest = max(self.sums)
        side = math.isqrt(largest)
        size = size or (side, side)
        total, weight = None, 0
        for queries, summed in self.sums.items():
            h = w = math.isqrt(queries)
            chosen = summed.mean(dim=0) if item is None else summed[item]
            grid = chosen.T.reshape(-1, 1, h, w)
            resized = F.interpolate(grid, size=size, mode="bilinear", align_corners=False)[:, 0]
            total = resized if total is None else total + resized
            weight += self.counts[queries]
        return total / weight


class SharedSelfAttention(AttentionController):
    """Self-attention layers attend to the keys and values of batch item ``source`` as well as their own
    (cross-frame attention for video editing, mutual self-attention for consistent edits); with
    ``replace=True`` to the source's only."""

    def __init__(self, source: int = 0, replace: bool = False) -> None:
        self.source, self.replace = source, replace

    def keys_values(self, site: AttentionSite, key: torch.Tensor, value: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        if site.is_cross:
            return key, value
        shared_k = key[self.source : self.source + 1].expand_as(key)
        shared_v = value[self.source : self.source + 1].expand_as(value)
        if self.replace:
            return shared_k, shared_v
        return torch.cat([key, shared_k], dim=1), torch.cat([value, shared_v], dim=1)
