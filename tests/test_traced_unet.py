"""The traced UNet forward: the same outputs as the module, replayed only where that is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instructedit import Editor, EditRequest
from instructedit.engine.traced import TracedUNet
from instructedit.models.tiny import tiny_components


@pytest.fixture()
def unet():
    return tiny_components("t2i")["unet"].eval().requires_grad_(False)


def _inputs(batch: int = 2):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 4, 16, 16, generator=generator), torch.randn(batch, 7, 32, generator=generator)


@pytest.mark.parametrize("timestep", [500, 500.0, torch.tensor(500), torch.tensor([500, 500])],
                         ids=["int", "float", "0-d tensor", "per-item tensor"])
def test_replay_equals_the_module_for_every_timestep_form(unet, timestep):
    sample, hidden = _inputs()
    traced = TracedUNet(unet, trace_after=0)
    with torch.inference_mode():
        expected = unet(sample, timestep, encoder_hidden_states=hidden).sample
        first = traced(sample, timestep, encoder_hidden_states=hidden, return_dict=False)[0]
        second = traced(sample, timestep, encoder_hidden_states=hidden).sample
    assert len(traced._traces) == 1 and next(iter(traced._traces.values())) is not None  # recorded and replayed
    torch.testing.assert_close(first, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(second, expected, rtol=0, atol=1e-6)


def test_one_trace_per_signature_and_weights_shared(unet):
    traced = TracedUNet(unet, trace_after=0)
    with torch.inference_mode():
        for batch in (1, 2, 2, 1):
            sample, hidden = _inputs(batch)
            traced(sample, 10, encoder_hidden_states=hidden)
        assert len(traced._traces) == 2
        sample, hidden = _inputs(1)
        unet.conv_in.weight.mul_(0.5)  # in-place update: the existing trace sees it
        torch.testing.assert_close(traced(sample, 10, encoder_hidden_states=hidden).sample,
                                   unet(sample, 10, encoder_hidden_states=hidden).sample, rtol=0, atol=1e-6)
    assert len(traced._traces) == 2


def test_a_new_attention_processor_records_a_new_trace(unet):
    from diffusers.models.attention_processor import AttnProcessor

    traced = TracedUNet(unet, trace_after=0)
    sample, hidden = _inputs()
    with torch.inference_mode():
        traced(sample, 10, encoder_hidden_states=hidden)
        unet.set_attn_processor(AttnProcessor())
        out = traced(sample, 10, encoder_hidden_states=hidden).sample
        torch.testing.assert_close(out, unet(sample, 10, encoder_hidden_states=hidden).sample, rtol=0, atol=1e-6)
    assert len(traced._traces) == 2


def test_calls_a_trace_cannot_reproduce_run_the_module(unet):
    traced = TracedUNet(unet, trace_after=0)
    sample, hidden = _inputs()
    seen = []
    handle = unet.mid_block.register_forward_hook(lambda *args: seen.append(1))
    with torch.inference_mode():
        traced(sample, 10, encoder_hidden_states=hidden)  # a submodule hook would be skipped by a trace
    handle.remove()
    assert seen == [1] and not traced._traces
    with torch.no_grad():
        traced(sample, 10, encoder_hidden_states=hidden, cross_attention_kwargs={"scale": 1.0})
    with torch.enable_grad():
        traced(sample, 10, encoder_hidden_states=hidden)  # gradients (e.g. null-text optimisation)
    unet.train()
    with torch.no_grad():
        traced(sample, 10, encoder_hidden_states=hidden)
    unet.eval()
    with torch.no_grad(), traced.eager():
        traced(sample, 10, encoder_hidden_states=hidden)
    assert not traced._traces and traced.enabled


def test_editor_results_and_call_counts_are_those_of_the_module(tiny_pipeline_dir, test_image):
    editor = Editor(device="cpu")
    model = tiny_pipeline_dir("t2i")
    request = EditRequest(image=test_image, method="diffedit", source="a cat", target="a dog", model=model, seed=3,
                          params={"num_inference_steps": 4})
    editor.load(model).unet_forward.trace_after = 0
    replayed = editor.edit(request)
    unet = editor.load(model).unet
    assert editor.load(model).unet_forward._traces  # the edit above ran on traces
    handle = unet.register_forward_pre_hook(lambda *args: None)  # forces the module itself
    if editor.cache is not None:
        editor.cache.clear()  # the eager edit must run its own inversion too
    try:
        eager = editor.edit(request)
    finally:
        handle.remove()
    assert np.array_equal(np.asarray(replayed.image), np.asarray(eager.image))  # bit-identical
    assert replayed.record.unet_calls == eager.record.unet_calls > 0


def test_a_signature_is_traced_only_after_trace_after_eager_calls(unet):
    """A one-shot edit never pays for recording; the outputs are the module's either way."""
    traced = TracedUNet(unet, trace_after=3)
    sample, hidden = _inputs()
    with torch.inference_mode():
        expected = unet(sample, 10, encoder_hidden_states=hidden).sample
        outs = []
        for call in range(5):
            outs.append(traced(sample, 10, encoder_hidden_states=hidden).sample)
            assert bool(traced._traces) == (call >= 3)  # three eager calls, then recorded on the fourth
        other, _ = _inputs(1)
        traced(other, 10, encoder_hidden_states=hidden[:1])  # another signature starts its own count
    assert len(traced._traces) == 1
    for out in outs:
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
