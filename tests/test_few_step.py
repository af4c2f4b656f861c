"""Few-step editing with LCM and TCD schedulers and LoRAs, equal to diffusers' pipelines using them."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from instructedit import Editor, EditRequest
from instructedit.errors import InvalidRequestError, ModelNotFoundError

ATOL = 2 / 255


def _pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) / 255.0


@pytest.fixture(scope="module")
def editor():
    return Editor(device="cpu", cache_bytes=0)


def _make_lora(unet, directory, seed: int = 0):
    """A rank-4 LoRA on the attention projections with random (non-zero) weights, saved as diffusers saves one."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = copy.deepcopy(unet)
    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():
        for name, weight in unet.named_parameters():
            if "lora_B" in name:
                weight.mul_(4.0)  # large enough to change a tiny model's output visibly
    StableDiffusionPipeline.save_lora_weights(directory, unet_lora_layers=get_peft_model_state_dict(unet))
    return str(directory)


def _pipeline(cls, components, scheduler, lora):
    pipe = cls(vae=components.vae, text_encoder=copy.deepcopy(components.text_encoder),
               tokenizer=components.tokenizer, unet=copy.deepcopy(components.unet), scheduler=scheduler,
               safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.load_lora_weights(lora)  # diffusers' documented LCM-LoRA use: loaded, not fused
    return pipe


def test_sdedit_with_lcm_lora_equals_img2img_pipeline(editor, tiny_pipeline_dir, test_image, tmp_path):
    from diffusers import LCMScheduler, StableDiffusionImg2ImgPipeline

    model = tiny_pipeline_dir("t2i")
    lora = _make_lora(editor.load(model).unet, tmp_path / "lcm-lora")
    params = {"strength": 0.75, "num_inference_steps": 4, "guidance_scale": 1.0, "scheduler": "lcm"}
    ours = editor.edit(EditRequest(test_image, target="a red square", method="sdedit", params=params, seed=3,
                                   model=model, lora=lora))
    base = editor.load(model)
    pipe = _pipeline(StableDiffusionImg2ImgPipeline, base, LCMScheduler.from_config(base.scheduler.config), lora)
    reference = {k: v for k, v in params.items() if k != "scheduler"}
    ref = pipe("a red square", image=test_image, generator=torch.Generator().manual_seed(3), **reference).images[0]
    np.testing.assert_allclose(_pixels(ours.image), _pixels(ref), atol=ATOL)
    assert ours.record.unet_calls == 3 and ours.record.unet_evals == 3  # guidance 1: one branch, int(4 * 0.75)
    assert ours.record.lora == lora and ours.record.lora_scale == 1.0
    plain = editor.edit(EditRequest(test_image, target="a red square", method="sdedit", params=params, seed=3,
                                    model=model))
    assert not np.array_equal(np.asarray(plain.image), np.asarray(ours.image))  # the LoRA changed the edit
    assert plain.record.lora is None


def test_ip2p_with_tcd_lora_equals_pipeline(editor, tiny_pipeline_dir, test_image, tmp_path):
    from diffusers import StableDiffusionInstructPix2PixPipeline, TCDScheduler

    model = tiny_pipeline_dir("ip2p")
    lora = _make_lora(editor.load(model).unet, tmp_path / "tcd-lora", seed=1)
    params = {"num_inference_steps": 4, "guidance_scale": 2.0, "image_guidance_scale": 1.5, "scheduler": "tcd",
              "eta": 0.3}
    ours = editor.edit(EditRequest(test_image, instruction="make it blue", params=params, seed=5, model=model,
                                   lora=lora, lora_scale=0.8))
    base = editor.load(model)
    pipe = _pipeline(StableDiffusionInstructPix2PixPipeline, base, TCDScheduler.from_config(base.scheduler.config),
                     lora)
    reference = {k: v for k, v in params.items() if k != "scheduler"}
    ref = pipe("make it blue", image=test_image, generator=torch.Generator().manual_seed(5),
               cross_attention_kwargs={"scale": 0.8}, **reference).images[0]
    np.testing.assert_allclose(_pixels(ours.image), _pixels(ref), atol=ATOL)
    assert ours.record.unet_calls == 4 and ours.record.unet_evals == 12


def test_lora_at_scale_zero_is_the_base_model_and_the_base_stays_untouched(editor, tiny_pipeline_dir, test_image,
                                                                           tmp_path):
    model = tiny_pipeline_dir("t2i")
    base = editor.load(model)
    before = {k: v.clone() for k, v in base.unet.state_dict().items()}
    lora = _make_lora(base.unet, tmp_path / "lora")
    request = EditRequest(test_image, target="a red square", method="sdedit", seed=1, model=model,
                          params={"num_inference_steps": 4})
    plain = editor.edit(request)
    zero = editor.edit(EditRequest(**{**request.__dict__, "lora": lora, "lora_scale": 0.0}))
    assert np.array_equal(np.asarray(plain.image), np.asarray(zero.image))
    assert editor.load(model, lora, 0.0) is editor.load(model, lora, 0.0)  # fused once, cached
    assert editor.load(model, lora, 1.0) is not editor.load(model, lora, 0.0)
    assert all(torch.equal(before[k], v) for k, v in editor.load(model).unet.state_dict().items())


def test_bad_loras_are_clear_errors(editor, tiny_pipeline_dir, test_image, tmp_path):
    from safetensors.torch import save_file

    model = tiny_pipeline_dir("t2i")
    request = EditRequest(test_image, target="a red square", method="sdedit", model=model,
                          params={"num_inference_steps": 2})
    with pytest.raises(ModelNotFoundError, match="does not exist") as missing:
        editor.edit(EditRequest(**{**request.__dict__, "lora": str(tmp_path / "nowhere")}))
    assert missing.value.field == "lora"
    not_lora = tmp_path / "other.safetensors"
    save_file({"something.weight": torch.zeros(2, 2)}, str(not_lora))
    with pytest.raises(InvalidRequestError) as wrong:
        editor.edit(EditRequest(**{**request.__dict__, "lora": str(not_lora)}))
    assert wrong.value.field == "lora"
    for scale in (math.nan, "strong"):
        with pytest.raises(InvalidRequestError, match="lora_scale") as bad_scale:
            editor.edit(EditRequest(**{**request.__dict__, "lora": str(not_lora), "lora_scale": scale}))
        assert bad_scale.value.field == "lora_scale"
    with pytest.raises(InvalidRequestError, match="must be a number"):
        EditRequest.from_dict({"image": "x.png", "lora": "a/b", "lora_scale": "high"})


def test_lora_hub_id_offline_says_how_to_fetch_it(editor, tiny_pipeline_dir, test_image, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    request = EditRequest(test_image, target="a red square", method="sdedit", model=tiny_pipeline_dir("t2i"),
                          lora="latent-consistency/lcm-lora-sdv1-5", params={"num_inference_steps": 2})
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download latent-consistency/lcm-lora-sdv1-5") as exc:
        editor.edit(request)
    assert exc.value.field == "lora"
