"""DAC (methods/dac.py, engine/dac.py): deterministic, cached per image and captions, the shared model restored,
LoRAs saved so diffusers' load_lora_weights reads them exactly, divergence stopped with a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instructedit import Editor, EditRequest
from instructedit.engine import dac
from instructedit.engine.sampling import make_scheduler
from instructedit.errors import NumericalError
from instructedit.models.tiny import tiny_components

SMALL = {"unet_rank": 4, "text_rank": 2, "unet_steps": 5, "text_steps": 5, "num_inference_steps": 4}
TEXTS = {"source": "a red square", "target": "a blue square"}


def test_the_unet_lora_weight_is_annealed_from_eta_at_the_noisiest_step_to_one():
    assert dac.annealed_scale(999, 0.8) == pytest.approx(0.8)
    assert dac.annealed_scale(0, 0.8) == pytest.approx(1.0)
    assert 0.8 < dac.annealed_scale(500, 0.8) < 1.0


def test_dac_is_deterministic_cached_and_leaves_the_model_as_it_was(tiny_pipeline_dir, test_image):
    model = tiny_pipeline_dir("t2i")
    cached, fresh = Editor(device="cpu"), Editor(device="cpu", cache_bytes=0)
    plain = EditRequest(test_image, method="encode-decode", model=model, seed=0, **TEXTS,
                        params={"num_inference_steps": 4})
    before = np.asarray(cached.edit(plain).image)
    request = EditRequest(test_image, method="dac", model=model, seed=0, **TEXTS, params=SMALL)
    first, again, other = cached.edit(request), cached.edit(request), fresh.edit(request)
    np.testing.assert_array_equal(np.asarray(first.image), np.asarray(again.image))
    np.testing.assert_array_equal(np.asarray(first.image), np.asarray(other.image))
    assert first.record.unet_calls == 5 + 5 + 4 and again.record.unet_calls == 4  # both abductions, then none
    eta = cached.edit(EditRequest(test_image, method="dac", model=model, seed=0, **TEXTS,
                                  params={**SMALL, "annealing": 0.5}))
    assert eta.record.unet_calls == 5 + 4  # another annealing reuses the UNet LoRA, refits the text-encoder one
    from peft.tuners.lora import LoraLayer

    components = cached.load(model)
    assert not any(isinstance(m, LoraLayer) for part in (components.unet, components.text_encoder)
                   for m in part.modules())
    np.testing.assert_array_equal(np.asarray(cached.edit(plain).image), before)


def test_saved_loras_load_exactly_with_diffusers(tmp_path):
    from diffusers import StableDiffusionPipeline

    parts = tiny_components()
    unet, text_encoder, tokenizer = parts["unet"], parts["text_encoder"], parts["tokenizer"]
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    loras = dac.abduct(unet, text_encoder, tokenizer, make_scheduler(parts["scheduler"], "ddim"), latents,
                       TEXTS["source"], TEXTS["target"], dac.DacSettings(4, 2, 3, 3, 1e-3, 0.8),
                       torch.Generator().manual_seed(1))
    sample, hidden = torch.randn(1, 4, 16, 16), torch.randn(1, 77, 32)
    ids = tokenizer([TEXTS["target"]], padding="max_length", max_length=77, return_tensors="pt").input_ids
    dac.set_lora_scale(text_encoder, dac.TEXT_ADAPTER, -1.0)
    with torch.no_grad():
        ours_unet, ours_text = unet(sample, 10, encoder_hidden_states=hidden).sample, text_encoder(ids)[0]
    dac.remove(unet, text_encoder)
    loras.save(tmp_path)
    assert (tmp_path / "dac.json").is_file()
    pipe = StableDiffusionPipeline(**tiny_components(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.load_lora_weights(tmp_path, adapter_name="dac")
    with torch.no_grad():
        pipe.set_adapters(["dac"], adapter_weights=[1.0])
        theirs_unet = pipe.unet(sample, 10, encoder_hidden_states=hidden).sample
        pipe.set_adapters(["dac"], adapter_weights=[-1.0])
        theirs_text = pipe.text_encoder(ids)[0]
    torch.testing.assert_close(ours_unet, theirs_unet, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours_text, theirs_text, rtol=0, atol=1e-6)
    with torch.no_grad():
        plain = tiny_components()["unet"](sample, 10, encoder_hidden_states=hidden).sample
    assert not torch.allclose(plain, ours_unet)  # the LoRA was trained: it changes the output


def test_an_abduction_that_diverges_stops_with_a_clear_error():
    parts = tiny_components()
    poisoned = torch.full((1, 4, 16, 16), float("nan"))
    with pytest.raises(NumericalError, match="abduction 1.*dac_learning_rate"):
        dac.abduct(parts["unet"], parts["text_encoder"], parts["tokenizer"], make_scheduler(parts["scheduler"], "ddim"),
                   poisoned, "a", "b", dac.DacSettings(2, 2, 2, 2, 1e-3, 0.8), torch.Generator().manual_seed(0))
