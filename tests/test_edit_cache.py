"""Reuse across edits of one image: inversions cached per (model, latents, text, schedule), outputs unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instructedit import Editor, EditRequest
from instructedit.engine.cache import EditCache, digest

STRENGTHS = (0.4, 1.0, 0.6, 0.8, 0.2)


@pytest.mark.parametrize(("method", "strength_param"), [("encode-decode", "strength"),
                                                        ("diffedit", "inpaint_strength")])
def test_a_strength_sweep_inverts_once_and_equals_separate_edits(tiny_pipeline_dir, test_image, method,
                                                                 strength_param):
    model = tiny_pipeline_dir("t2i")
    cached, fresh = Editor(device="cpu"), Editor(device="cpu", cache_bytes=0)
    texts = {"source": "a red square", "target": "a blue square"}
    calls = {"cached": 0, "fresh": 0}
    for strength in STRENGTHS:
        request = EditRequest(test_image, method=method, model=model, seed=4, **texts,
                              params={"num_inference_steps": 10, strength_param: strength})
        a, b = cached.edit(request), fresh.edit(request)
        np.testing.assert_array_equal(np.asarray(a.image), np.asarray(b.image))
        calls["cached"] += a.record.unet_calls
        calls["fresh"] += b.record.unet_calls
    inversion_steps = sum(int(10 * s) for s in STRENGTHS)
    mask_calls = 1 if method == "diffedit" else 0  # DiffEdit's mask: one batched UNet call, estimated once
    # only the longest inversion ran, once; the VAE encoding and DiffEdit's mask came from the cache after the first
    assert calls["fresh"] - calls["cached"] == inversion_steps - 10 + mask_calls * (len(STRENGTHS) - 1)
    assert cached.cache.hits >= (2 + mask_calls) * (len(STRENGTHS) - 1) and fresh.cache is None


def test_the_cache_is_bounded_and_never_serves_another_model():
    cache = EditCache(max_bytes=3 * 4 * 16)
    owner, other = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    steps = [torch.full((4, 4), float(i)) for i in range(3)]
    cache.store("a", steps, owner)
    assert [t[0, 0].item() for t in cache.trajectory("a", 2, owner)] == [0.0, 1.0]
    assert cache.trajectory("a", 2, other) == []
    cache.store("b", steps[:1], owner)  # over the bound: the least recently used goes
    assert cache.bytes <= cache.max_bytes and cache.trajectory("a", 3, owner) == []
    assert digest(torch.ones(2), "x") == digest(torch.ones(2), "x") != digest(torch.ones(2, 1), "x")
