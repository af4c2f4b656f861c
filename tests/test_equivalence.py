"""Each method equals diffusers' reference pipeline given the same components, scheduler, seed and settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instructedit import Editor, EditRequest
from instructedit.engine import load_components

PREDICTION_TYPES = ["epsilon", "v_prediction"]
ATOL = 2 / 255  # one 8-bit level of rounding either way


def _pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) / 255.0


def _pipeline(cls, components, scheduler=None):
    return cls(
        vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
        unet=components.unet, scheduler=scheduler or components.scheduler, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    ).to("cpu")


@pytest.fixture(scope="module")
def editor():
    # no edit cache: these tests count each edit's UNet calls, and several edit the same image with the same model
    return Editor(device="cpu", cache_bytes=0)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_sdedit_equals_img2img(editor, tiny_pipeline_dir, test_image, prediction_type):
    from diffusers import StableDiffusionImg2ImgPipeline

    model = tiny_pipeline_dir("t2i", prediction_type)
    params = {"strength": 0.7, "num_inference_steps": 10, "guidance_scale": 6.0}
    ours = editor.edit(EditRequest(test_image, target="a red square", method="sdedit", params=params, seed=3,
                                   model=model))
    pipe = _pipeline(StableDiffusionImg2ImgPipeline, editor.load(model))
    ref = pipe("a red square", image=test_image, generator=torch.Generator().manual_seed(3), **params).images[0]
    np.testing.assert_allclose(_pixels(ours.image), _pixels(ref), atol=ATOL)
    assert ours.record.unet_calls == 7 and ours.record.unet_evals == 14


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_instruct_pix2pix_equals_pipeline(editor, tiny_pipeline_dir, test_image, prediction_type):
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    model = tiny_pipeline_dir("ip2p", prediction_type)
    params = {"num_inference_steps": 8, "guidance_scale": 7.5, "image_guidance_scale": 1.5}
    ours = editor.edit(EditRequest(test_image, instruction="make it blue", method="ip2p", params=params, seed=5,
                                   model=model))
    components = editor.load(model)
    scheduler = EulerAncestralDiscreteScheduler.from_config(components.scheduler.config)
    pipe = _pipeline(StableDiffusionInstructPix2PixPipeline, components, scheduler)
    ref = pipe("make it blue", image=test_image, generator=torch.Generator().manual_seed(5), **params).images[0]
    np.testing.assert_allclose(_pixels(ours.image), _pixels(ref), atol=ATOL)
    assert ours.record.unet_calls == 8 and ours.record.unet_evals == 24  # three branches, one call per step


def _fixed_inverse_scheduler(config):
    """diffusers' DDIMInverseScheduler with our one documented change (v-prediction conversion) swapped in."""
    from diffusers import DDIMInverseScheduler
    from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput

    from instructedit.engine.inversion import inverse_ddim_step

    class Fixed(DDIMInverseScheduler):
        def step(self, model_output, timestep, sample, return_dict=True):
            return DDIMSchedulerOutput(prev_sample=inverse_ddim_step(self, model_output, timestep, sample))

    return Fixed.from_config(config)


def _diffedit_pipeline(components):
    """diffusers' DiffEdit pipeline; for v-prediction with the fixed inversion step (epsilon: unchanged)."""
    from diffusers import DDIMInverseScheduler, StableDiffusionDiffEditPipeline

    config = components.scheduler.config
    inverse = (DDIMInverseScheduler.from_config(config) if config.prediction_type == "epsilon"
               else _fixed_inverse_scheduler(config))
    return StableDiffusionDiffEditPipeline(
        vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
        unet=components.unet, scheduler=components.scheduler, inverse_scheduler=inverse,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).to("cpu")


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_diffedit_equals_pipeline(editor, tiny_pipeline_dir, test_image, prediction_type):
    """Mask, inversion and masked decoding equal diffusers' three calls with one generator threaded through."""
    _check_diffedit_three_calls(editor, tiny_pipeline_dir("t2i", prediction_type), test_image, mask_steps=None)


def test_diffedit_mask_has_its_own_step_count(editor, tiny_pipeline_dir, test_image):
    """diffusers' generate_mask takes its own num_inference_steps; mask_num_inference_steps reproduces it."""
    _check_diffedit_three_calls(editor, tiny_pipeline_dir("t2i", "epsilon"), test_image, mask_steps=25)


def _check_diffedit_three_calls(editor, model, test_image, mask_steps):
    steps, strength, inv_g = 10, 0.8, 7.5
    params = {"num_inference_steps": steps, "guidance_scale": 7.5, "num_maps_per_mask": 4,
              "inpaint_strength": strength, "inversion_guidance_scale": inv_g, "blend_alignment": "diffusers"}
    if mask_steps is not None:
        params["mask_num_inference_steps"] = mask_steps
    ours = editor.edit(EditRequest(test_image, source="a red square", target="a blue square", method="diffedit",
                                   params=params, seed=7, model=model))

    pipe = _diffedit_pipeline(editor.load(model))
    generator = torch.Generator().manual_seed(7)
    mask = pipe.generate_mask(image=test_image, source_prompt="a red square", target_prompt="a blue square",
                              num_maps_per_mask=4, num_inference_steps=mask_steps or steps, generator=generator)
    inverted = pipe.invert(prompt="a red square", image=test_image, num_inference_steps=steps,
                           inpaint_strength=strength, guidance_scale=inv_g, generator=generator).latents
    ref = pipe(prompt="a blue square", mask_image=mask, image_latents=inverted, num_inference_steps=steps,
               inpaint_strength=strength, guidance_scale=7.5, generator=generator).images[0]

    latent_mask = np.asarray(ours.mask)[:: 2, :: 2] > 127  # tiny VAE factor 2
    np.testing.assert_array_equal(latent_mask, mask[0] > 0.5)
    assert 0 < latent_mask.mean() < 1, "the test must exercise a mask that is neither empty nor full"
    np.testing.assert_allclose(_pixels(ours.image), _pixels(ref), atol=ATOL)
    # 1 mask call (4 maps x source/target x CFG in one batch) + 8 inversion calls + 8 guided decoding calls
    assert ours.record.unet_calls == 17 and ours.record.mask_source == "produced"


def test_diffedit_aligned_blend_keeps_unmasked_latents_exactly(editor, tiny_pipeline_dir, test_image):
    """Our default fixes diffusers' off-by-one: outside the mask the final latents are the input's latents."""
    from instructedit.engine.latents import encode_distribution, sample_latents
    from instructedit.methods import get_method
    from instructedit.methods.base import EditContext

    components = editor.load(tiny_pipeline_dir("t2i", "epsilon"))
    method = get_method("diffedit")
    pixels = torch.from_numpy(_pixels(test_image)).permute(2, 0, 1)[None] * 2 - 1
    user_mask = torch.zeros(1, 1, 32, 32)
    user_mask[..., 8:20, 10:22] = 1

    def run(alignment):
        ctx = EditContext(components, editor._prompts(components), pixels, torch.Generator().manual_seed(1),
                          source="a red square", target="a blue square", mask=user_mask)
        params = method.resolve({"num_inference_steps": 10, "blend_alignment": alignment})
        with torch.inference_mode():
            return method.run(ctx, **params)

    aligned, shifted = run("aligned"), run("diffusers")
    with torch.inference_mode():
        original = sample_latents(encode_distribution(components.vae, pixels), torch.Generator().manual_seed(1),
                                  components.vae)
    keep = aligned.mask == 0
    assert keep.any() and (~keep).any()
    torch.testing.assert_close(aligned.latents.expand_as(original)[keep.expand_as(original)],
                               original[keep.expand_as(original)], atol=0, rtol=0)
    assert not torch.equal(shifted.latents[keep.expand_as(original)], original[keep.expand_as(original)])


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_encode_decode_equals_inverse_scheduler_and_pipeline(editor, tiny_pipeline_dir, test_image, prediction_type):
    """Inversion = diffusers' DDIMInverseScheduler loop (DiffEdit ``invert``); decoding = StableDiffusionPipeline."""
    from diffusers import StableDiffusionPipeline

    model = tiny_pipeline_dir("t2i", prediction_type)
    steps = 10
    ours = editor.edit(EditRequest(test_image, source="a red square", target="a blue square", method="encode-decode",
                                   params={"num_inference_steps": steps, "guidance_scale": 5.0}, seed=2, model=model))
    components = editor.load(model)
    generator = torch.Generator().manual_seed(2)
    inverted = _diffedit_pipeline(components).invert(
        prompt="a red square", image=test_image, num_inference_steps=steps, inpaint_strength=1.0, guidance_scale=1.0,
        generator=generator).latents[:, 0]
    ref = _pipeline(StableDiffusionPipeline, components)(
        "a blue square", latents=inverted, num_inference_steps=steps, guidance_scale=5.0, height=32, width=32,
        generator=generator).images[0]
    np.testing.assert_allclose(_pixels(ours.image), _pixels(ref), atol=ATOL)
    assert ours.record.unet_calls == 2 * steps


class GaussianOracleUNet(torch.nn.Module):
    """The exact denoiser for unit-Gaussian latents: E[eps | x_t] = sigma_t x_t, E[x_0 | x_t] = alpha_t x_t.

    A random UNet is no smooth function of its input, so inverting it says nothing; with the exact denoiser
    the DDIM ODE is well posed and inversion followed by decoding must return the input up to discretisation.
    """

    def __init__(self, alphas_cumprod: torch.Tensor, prediction_type: str) -> None:
        super().__init__()
        self.register_buffer("alphas_cumprod", alphas_cumprod.float())
        self.prediction_type = prediction_type
        self.config = type("Config", (), {"in_channels": 4})()

    @property
    def device(self):
        return self.alphas_cumprod.device

    @property
    def dtype(self):
        return self.alphas_cumprod.dtype

    def forward(self, sample, timestep, encoder_hidden_states=None, return_dict=False):
        alpha_bar = self.alphas_cumprod[int(timestep)]
        eps = (1 - alpha_bar).sqrt() * sample
        if self.prediction_type == "epsilon":
            return (eps,)
        x0 = alpha_bar.sqrt() * sample
        return (alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0,)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_encode_decode_reconstructs_input(editor, tiny_pipeline_dir, test_image, prediction_type):
    """Source = target and guidance 1: inversion then regeneration returns the input (exact-denoiser model)."""
    from dataclasses import replace

    from instructedit.engine.latents import encode_distribution, image_to_tensor, sample_latents
    from instructedit.methods import get_method
    from instructedit.methods.base import EditContext

    components = load_components(tiny_pipeline_dir("t2i", prediction_type))
    components = replace(components, unet=GaussianOracleUNet(components.scheduler.alphas_cumprod, prediction_type))
    method = get_method("encode-decode")
    pixels = image_to_tensor(test_image)
    with torch.inference_mode():
        original = sample_latents(encode_distribution(components.vae, pixels), torch.Generator().manual_seed(0),
                                  components.vae)

    def relative_error(**params) -> float:
        ctx = EditContext(components, editor._prompts(components), pixels, torch.Generator().manual_seed(0),
                          source="a red square", target="a red square")
        with torch.inference_mode():
            out = method.run(ctx, **method.resolve({"num_inference_steps": 50, "guidance_scale": 1.0, **params}))
        return ((out.latents - original).norm() / original.norm()).item()

    assert relative_error() < 0.005
    assert relative_error(strength=0.3) < 0.005
    assert relative_error(num_inference_steps=5) > relative_error()  # discretisation error shrinks with steps


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_inversion_step_fixes_v_prediction(prediction_type):
    """Our step equals DDIMInverseScheduler for epsilon; for v-prediction it removes its drift."""
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    from instructedit.engine.inversion import ddim_invert

    template = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                             set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)
    oracle = GaussianOracleUNet(template.alphas_cumprod, prediction_type)
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    def regenerate(start):
        sched = DDIMScheduler.from_config(template.config)
        sched.set_timesteps(50)
        for t in sched.timesteps:
            start = sched.step(oracle(start, t)[0], t, start).prev_sample
        return ((start - x0).norm() / x0.norm()).item()

    ours = ddim_invert(lambda x, t: oracle(x, t)[0], template, x0, 50)[-1]
    inverse = DDIMInverseScheduler.from_config(template.config)
    inverse.set_timesteps(50)
    theirs = x0
    for t in inverse.timesteps:
        theirs = inverse.step(oracle(theirs, t)[0], t, theirs).prev_sample
    assert regenerate(ours) < 0.002
    if prediction_type == "epsilon":
        torch.testing.assert_close(ours, theirs)
    else:
        assert regenerate(theirs) > 10 * regenerate(ours)
