"""Memory options on the Stable-Diffusion-style methods: each equals diffusers' pipeline with the same option."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instructedit import Editor, EditRequest
from instructedit.engine import load_components
from instructedit.engine.memory import MemoryOptions, execution_device, offload
from instructedit.errors import InvalidModelError

ATOL = 2 / 255


def _pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) / 255.0


def _pipeline(cls, folder: str, dtype=torch.float32):
    return cls.from_pretrained(folder, dtype=dtype, safety_checker=None, requires_safety_checker=False)


@pytest.fixture(scope="module")
def large_image(test_image):
    return test_image.resize((64, 64))  # beyond the tiny VAE's 32-pixel tile, so tiling is exercised


def test_vae_tiling_equals_pipeline_with_tiling(tiny_pipeline_dir, large_image):
    from diffusers import StableDiffusionImg2ImgPipeline

    model = tiny_pipeline_dir("t2i")
    params = {"strength": 0.8, "num_inference_steps": 4, "guidance_scale": 3.0}
    tiled = Editor(device="cpu", cache_bytes=0, memory=MemoryOptions(vae_tiling=True))
    ours = tiled.edit(EditRequest(large_image, target="a red square", method="sdedit", model=model, seed=2,
                                  params=params))
    assert ours.record.memory["vae_tiling"] is True
    pipe = _pipeline(StableDiffusionImg2ImgPipeline, model)
    pipe.vae.enable_tiling()  # diffusers 0.42 moved the switch from the pipeline to its VAE
    ref = pipe("a red square", image=large_image, generator=torch.Generator().manual_seed(2), **params).images[0]
    np.testing.assert_allclose(_pixels(ours.image), _pixels(ref), atol=ATOL)
    plain = Editor(device="cpu", cache_bytes=0).edit(
        EditRequest(large_image, target="a red square", method="sdedit", model=model, seed=2, params=params))
    assert plain.record.memory["vae_tiling"] is False
    assert not np.array_equal(np.asarray(plain.image), np.asarray(ours.image))  # tiles blend at their seams


def test_attention_slicing_equals_pipeline_and_plain(tiny_pipeline_dir, test_image):
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    model = tiny_pipeline_dir("ip2p")
    params = {"num_inference_steps": 4, "guidance_scale": 4.0, "image_guidance_scale": 1.5}
    request = EditRequest(test_image, instruction="make it red", model=model, seed=5, params=params)
    sliced_editor = Editor(device="cpu", cache_bytes=0, memory=MemoryOptions(attention_slicing=True))
    sliced = sliced_editor.edit(request)
    unet = sliced_editor.load(model).unet
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"SlicedAttnProcessor"}
    pipe = _pipeline(StableDiffusionInstructPix2PixPipeline, model)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)  # ours, as in the paper
    pipe.enable_attention_slicing()
    ref = pipe("make it red", image=test_image, generator=torch.Generator().manual_seed(5), **params).images[0]
    np.testing.assert_allclose(_pixels(sliced.image), _pixels(ref), atol=ATOL)
    plain = Editor(device="cpu", cache_bytes=0).edit(request)
    np.testing.assert_allclose(_pixels(sliced.image), _pixels(plain.image), atol=ATOL)  # the same maths, in slices


@pytest.mark.parametrize("mode", ["model", "sequential"])
def test_offloaded_components_give_the_same_edit(tiny_pipeline_dir, test_image, mode):
    """accelerate's hooks as the pipelines install them, with the CPU as execution device (no GPU here): the
    weights move in only while they run and the edit is unchanged."""
    model = tiny_pipeline_dir("t2i")
    request = dict(target="a red square", method="sdedit", seed=1,
                   params={"strength": 0.7, "num_inference_steps": 3, "guidance_scale": 3.0})
    plain = Editor(device="cpu", cache_bytes=0).edit(EditRequest(test_image, model=model, **request))
    components = load_components(model, device="cpu")
    components.name = "offloaded"
    offload(components, torch.device("cpu"), mode)
    if mode == "sequential":  # weights wait on the meta device; hooks bring each layer in for its forward
        assert next(components.unet.parameters()).device.type == "meta"
    assert execution_device(components.unet) == torch.device("cpu") and components.device == torch.device("cpu")
    editor = Editor(device="cpu", cache_bytes=0)
    editor.add_model(components)
    ours = editor.edit(EditRequest(test_image, model="offloaded", **request))
    np.testing.assert_array_equal(np.asarray(ours.image), np.asarray(plain.image))


def test_bfloat16_on_cpu_equals_pipeline_in_bfloat16(tiny_pipeline_dir, test_image):
    from diffusers import StableDiffusionImg2ImgPipeline

    model = tiny_pipeline_dir("t2i")
    params = {"strength": 0.75, "num_inference_steps": 4, "guidance_scale": 3.0}
    ours = Editor(device="cpu", dtype="bfloat16", cache_bytes=0).edit(
        EditRequest(test_image, target="a red square", method="sdedit", model=model, seed=4, params=params))
    assert ours.record.dtype == "bfloat16"
    pipe = _pipeline(StableDiffusionImg2ImgPipeline, model, torch.bfloat16)
    ref = pipe("a red square", image=test_image, generator=torch.Generator().manual_seed(4), **params).images[0]
    # bfloat16 keeps 8 mantissa bits: batching the guidance branches rounds some pixels up to four levels apart
    difference = np.abs(_pixels(ours.image) - _pixels(ref))
    assert difference.max() <= 4 / 255 and difference.mean() < 1 / 255


def test_offload_needs_a_gpu_and_no_lora(tiny_pipeline_dir, test_image):
    model = tiny_pipeline_dir("t2i")
    editor = Editor(device="cpu", cache_bytes=0, memory=MemoryOptions(offload="model"))
    with pytest.raises(InvalidModelError, match="use offload='none' on CPU") as error:
        editor.edit(EditRequest(test_image, target="a red square", method="sdedit", model=model))
    assert error.value.field == "offload"
    with pytest.raises(InvalidModelError, match="LoRA cannot yet be fused into an offloaded model") as error:
        editor.load(model, lora="some/lora")
    assert error.value.field == "offload"
