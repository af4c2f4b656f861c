"""Attention capture and control (engine/attention.py): exact by default, never frozen into a trace."""

from __future__ import annotations

import pytest
import torch

from instructedit.engine.attention import (
    AttentionController,
    ControlledAttnProcessor,
    CrossAttentionStore,
    SharedSelfAttention,
    attention_sites,
    controlled_attention,
)
from instructedit.engine.traced import TracedUNet
from instructedit.models.tiny import tiny_components


@pytest.fixture()
def unet():
    return tiny_components("t2i")["unet"].eval().requires_grad_(False)


def _inputs(batch: int = 2, tokens: int = 7):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 4, 16, 16, generator=generator), torch.randn(batch, tokens, 32, generator=generator)


def test_sites_name_every_self_and_cross_attention_layer(unet):
    sites = attention_sites(unet)
    assert set(sites) == set(unet.attn_processors)
    assert {s.is_cross for s in sites.values()} == {True, False}
    assert all(s.is_cross == name.endswith("attn2.processor") for name, s in sites.items())
    assert {s.place for s in sites.values()} <= {"down", "mid", "up"}


def test_a_controller_that_changes_nothing_gives_the_unets_output_and_restores_processors(unet):
    sample, hidden = _inputs()
    before = {name: type(p) for name, p in unet.attn_processors.items()}
    with torch.inference_mode():
        expected = unet(sample, 10, encoder_hidden_states=hidden).sample
        with controlled_attention(unet, AttentionController()) as controller:
            out = unet(sample, 10, encoder_hidden_states=hidden).sample
            unet(sample, 20, encoder_hidden_states=hidden)
        assert controller.call == 1  # two UNet calls seen, counted from 0
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    assert {name: type(p) for name, p in unet.attn_processors.items()} == before
    assert not unet._forward_pre_hooks


def test_cross_attention_maps_are_per_token_distributions(unet):
    sample, hidden = _inputs(tokens=5)
    store = CrossAttentionStore()
    with torch.inference_mode(), controlled_attention(unet, store):
        unet(sample, 10, encoder_hidden_states=hidden)
    maps = store.maps()
    assert maps.shape[0] == 5 and maps.shape[1] == maps.shape[2]
    # each query's attention over the tokens sums to one, so the token maps sum to one at every pixel
    torch.testing.assert_close(maps.sum(dim=0), torch.ones(maps.shape[1:]), rtol=0, atol=1e-5)
    # a token whose embedding is boosted draws more attention than the others
    boosted = hidden.clone()
    boosted[:, 2] *= 8
    store.reset()
    with torch.inference_mode(), controlled_attention(unet, store):
        unet(sample, 10, encoder_hidden_states=boosted)
    assert store.maps().mean(dim=(1, 2)).argmax() != store.maps().mean(dim=(1, 2)).argmin()
    assert store.call == 0


def test_probabilities_edited_by_a_controller_change_the_output(unet):
    class Uniform(AttentionController):
        def probabilities(self, site, probs):
            return torch.full_like(probs, 1 / probs.shape[-1]) if site.is_cross else probs

    sample, hidden = _inputs()
    with torch.inference_mode():
        plain = unet(sample, 10, encoder_hidden_states=hidden).sample
        with controlled_attention(unet, Uniform()):
            uniform = unet(sample, 10, encoder_hidden_states=hidden).sample
            # uniform cross-attention averages the tokens: permuting them changes nothing
            permuted = unet(sample, 10, encoder_hidden_states=hidden.flip(1)).sample
    assert not torch.allclose(plain, uniform, atol=1e-4)
    torch.testing.assert_close(uniform, permuted, rtol=0, atol=1e-5)


def test_shared_self_attention_leaves_the_source_frame_and_identical_frames_unchanged(unet):
    sample, hidden = _inputs(batch=1)
    frames = torch.cat([sample, sample, torch.randn_like(sample)])
    context = hidden.expand(3, -1, -1)
    with torch.inference_mode():
        plain = unet(frames, 10, encoder_hidden_states=context).sample
        with controlled_attention(unet, SharedSelfAttention(source=0)):
            shared = unet(frames, 10, encoder_hidden_states=context).sample
    # frames 0 and 1 attend to [own, frame 0] = the same keys twice: softmax over duplicated keys is unchanged
    torch.testing.assert_close(shared[:2], plain[:2], rtol=0, atol=1e-5)
    assert not torch.allclose(shared[2], plain[2], atol=1e-4)


def test_a_stateful_processor_is_never_frozen_into_a_trace(unet):
    """Replaying a trace would run the controller once, at recording time; every call must reach it."""
    traced = TracedUNet(unet, trace_after=0)
    sample, hidden = _inputs()
    store = CrossAttentionStore()
    with torch.inference_mode():
        traced(sample, 10, encoder_hidden_states=hidden)  # a plain call records a trace
        assert len(traced._traces) == 1
        with controlled_attention(traced, store):
            outs = [traced(sample, t, encoder_hidden_states=hidden).sample for t in (10, 20, 30)]
        expected = [unet(sample, t, encoder_hidden_states=hidden).sample for t in (10, 20, 30)]
    assert store.call == 2 and sum(store.counts.values()) > 0
    per_call = sum(store.counts.values()) / 3
    assert per_call == int(per_call)  # every call contributed the same number of maps
    assert len(traced._traces) == 1  # nothing recorded while the controller was installed
    for out, ref in zip(outs, expected, strict=True):
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    with torch.inference_mode():  # processors restored: replay again
        traced(sample, 10, encoder_hidden_states=hidden)
    assert len(traced._traces) == 1

    # The processors alone (no forward hook on the UNet, which would also stop tracing) keep the trace away too.
    other = CrossAttentionStore()
    sites = attention_sites(unet)
    unet.set_attn_processor({name: ControlledAttnProcessor(other, site) for name, site in sites.items()})
    with torch.inference_mode():
        for _ in range(3):
            traced(sample, 10, encoder_hidden_states=hidden)
    assert sum(other.counts.values()) == 3 * per_call and len(traced._traces) == 1
