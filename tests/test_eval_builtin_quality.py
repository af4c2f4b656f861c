"""The built-in quality evaluation on tiny random models: its figures come from the benchmark runner and equal the
domain oracles applied to the very edits a plain loop makes; requests by what drives each method; text-to-image
sampling in the engine, bit for bit the sampler it replaced."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch
from PIL import Image

from instructedit import Editor
from instructedit.domain import edit_applied, preservation
from instructedit.engine.generation import text_to_image
from instructedit.evaluation import builtin_quality
from instructedit.evaluation.builtin_quality import (
    evaluate_method,
    evaluate_text_to_image,
    held_out_samples,
    sample_request,
)
from instructedit.types import EditRecord, EditResult

SAMPLES = 7  # one of each edit type


@pytest.fixture(scope="module")
def samples():
    return held_out_samples(SAMPLES, size=32)


@pytest.mark.parametrize(("method", "kind", "params"), [
    ("sdedit", "t2i", {"num_inference_steps": 4, "strength": 0.6}),
    ("ip2p", "ip2p", {"num_inference_steps": 3}),
])  # fmt: skip
def test_evaluate_method_equals_the_oracles_on_the_same_edits(samples, tiny_pipeline_dir, method, kind, params):
    editor, model = Editor(device="cpu"), tiny_pipeline_dir(kind)
    quality = evaluate_method(editor, samples, method, model, params, seed=3)
    expected = []
    for sample in samples:
        result = editor.edit(sample_request(sample, method, model, params, seed=3))
        kept = preservation(result.image, sample.source_image(), sample.mask_image())
        expected.append({"id": sample.id, "edit_type": sample.edit_type, "heldout_phrasing": sample.heldout_phrasing,
                         "applied": bool(edit_applied(result.image, sample)), "psnr": kept["psnr"],
                         "l1": kept["l1"]})  # fmt: skip
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in quality.rows] == expected
    assert quality.count == SAMPLES and quality.method == method
    assert quality.applied == pytest.approx(statistics.fmean(r["applied"] for r in expected))
    assert quality.psnr_outside_mask == pytest.approx(statistics.fmean(min(r["psnr"], 100.0) for r in expected))
    assert quality.l1_outside_mask == pytest.approx(statistics.fmean(r["l1"] for r in expected))
    assert set(quality.applied_by_type) == {s.edit_type for s in samples}
    heldout = [r["applied"] for r in expected if r["heldout_phrasing"]]
    assert quality.applied_heldout_phrasing == (pytest.approx(statistics.fmean(heldout)) if heldout else None)
    assert quality.seconds_per_edit > 0 and all(row["seconds"] > 0 for row in quality.rows)


class IdentityEditor:
    """Returns the input unchanged: nothing changes outside the mask, so PSNR there is infinite."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.requests = []

    def edit(self, request):
        self.requests.append(request)
        image = request.image.copy()
        record = EditRecord(method=request.method, model="identity", params=dict(request.params), seed=request.seed,
                            instruction=request.instruction, source=request.source, target=request.target,
                            image_size=image.size, wall_time_s=0.0, unet_calls=0, unet_evals=0)  # fmt: skip
        return EditResult(image, record, None)


def test_unchanged_outputs_count_as_100_db_and_requests_carry_every_text(samples):
    editor = IdentityEditor()
    quality = evaluate_method(editor, samples, "encode-decode")
    assert all(row["psnr"] == math.inf and row["l1"] == 0.0 and not row["applied"] for row in quality.rows)
    assert quality.psnr_outside_mask == 100.0 and quality.applied == 0.0
    assert [r.target for r in editor.requests] == [s.target_caption for s in samples]
    assert all(r.params == {} and r.seed == 0 and r.model is None for r in editor.requests)


def test_a_kept_run_folder_resumes_without_editing_again(samples, tmp_path):
    first = IdentityEditor()
    quality = evaluate_method(first, samples, "encode-decode", out_dir=tmp_path / "run")
    assert len(first.requests) == len(samples)
    again = IdentityEditor()
    resumed = evaluate_method(again, samples, "encode-decode", out_dir=tmp_path / "run")
    assert again.requests == [] and resumed.rows == quality.rows  # every row was on disk


def test_sample_request_follows_what_drives_the_method(samples):
    sample = samples[0]
    instructed = sample_request(sample, "ip2p", seed=5)
    assert (instructed.instruction, instructed.source, instructed.target) == (sample.instruction, None, None)
    assert instructed.seed == 5 and np.array_equal(np.asarray(instructed.image), np.asarray(sample.source_image()))
    for method in ("sdedit", "encode-decode", "diffedit", "instruct-pix2pix"):
        request = sample_request(sample, method)
        if method == "instruct-pix2pix":  # an alias of ip2p: decided by the method, not its name
            assert request.instruction == sample.instruction and request.target is None
        else:
            assert (request.instruction, request.source, request.target) == (
                None, sample.source_caption, sample.target_caption,
            )  # fmt: skip
    assert not hasattr(builtin_quality, "CAPTION_METHODS") and not hasattr(builtin_quality, "generate")


@torch.inference_mode()
def _reference_sampler(components, prompt: str, *, num_inference_steps: int, guidance_scale: float, seed: int):
    """The text-to-image sampler builtin_quality had before it moved to the engine, as it was."""
    from diffusers.utils.torch_utils import randn_tensor

    from instructedit.engine.guidance import CFGDenoiser
    from instructedit.engine.latents import decode, tensor_to_image
    from instructedit.engine.prompts import PromptEncoder
    from instructedit.engine.sampling import denoise, make_scheduler

    prompts = PromptEncoder(components.tokenizer, components.text_encoder)
    scheduler = make_scheduler(components.scheduler, "ddim")
    scheduler.set_timesteps(num_inference_steps)
    side = int(components.unet.config.sample_size)
    generator = torch.Generator(components.device).manual_seed(seed)
    noise = randn_tensor((1, components.latent_channels, side, side), generator=generator,
                         device=components.device, dtype=components.dtype)  # fmt: skip
    uncond = prompts("") if guidance_scale > 1 else None
    denoiser = CFGDenoiser(components.unet_forward, prompts(prompt), uncond, guidance_scale)
    latents = denoise(denoiser, scheduler, noise * scheduler.init_noise_sigma, scheduler.timesteps)
    return tensor_to_image(decode(components.vae, latents))


@pytest.mark.parametrize("guidance_scale", [5.0, 1.0])
def test_text_to_image_is_the_sampler_it_replaced_bit_for_bit(tiny_pipeline_dir, guidance_scale):
    components = Editor(device="cpu").load(tiny_pipeline_dir("t2i"))
    image = text_to_image(components, "a red circle", num_inference_steps=4, guidance_scale=guidance_scale, seed=2)
    reference = _reference_sampler(components, "a red circle", num_inference_steps=4, guidance_scale=guidance_scale,
                                   seed=2)  # fmt: skip
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert image.size == (components.unet.config.sample_size * components.vae_scale_factor,) * 2
    assert np.array_equal(np.asarray(image), np.asarray(reference))
    other = text_to_image(components, "a red circle", num_inference_steps=4, guidance_scale=guidance_scale, seed=3)
    assert not np.array_equal(np.asarray(image), np.asarray(other))


def test_evaluate_text_to_image_samples_each_caption_with_its_index_as_seed(samples, tiny_pipeline_dir, monkeypatch):
    from instructedit.engine import generation

    components = Editor(device="cpu").load(tiny_pipeline_dir("t2i"))
    calls = []

    def recording(components, prompt, **kwargs):
        calls.append((prompt, kwargs))
        return text_to_image(components, prompt, **kwargs)

    monkeypatch.setattr(generation, "text_to_image", recording)
    figures = evaluate_text_to_image(components, samples[:2], num_inference_steps=2)
    assert calls == [(s.source_caption, {"seed": i, "num_inference_steps": 2}) for i, s in enumerate(samples[:2])]
    assert figures["count"] == 2 and 0.0 <= figures["caption_accuracy"] <= 1.0
