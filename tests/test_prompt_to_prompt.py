"""Prompt-to-Prompt (methods/prompt_to_prompt.py, engine/prompt_to_prompt.py, engine/alignment.py) and null-text /
negative-prompt inversion: equal to plain sampling with identical prompts, equal to diffusers' community pipeline
for a word swap, alignment equal to the authors' (one documented fix), inversions measured on the built-in model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from instructedit import Editor, EditRequest
from instructedit.engine import alignment
from instructedit.engine.attention import CrossAttentionStore, controlled_attention
from instructedit.engine.guidance import BatchCFGDenoiser
from instructedit.engine.inversion import null_text_optimise
from instructedit.engine.prompt_to_prompt import LocalBlend, PromptToPrompt, word_swap
from instructedit.engine.prompts import PromptEncoder
from instructedit.engine.sampling import denoise, make_scheduler
from instructedit.errors import InvalidRequestError, NumericalError
from instructedit.models.builtin import builtin_model
from instructedit.models.tiny import tiny_components

sys.path.insert(0, str(Path(__file__).parent / "reference"))
import pipeline_prompt2prompt as community  # noqa: E402  (diffusers' community pipeline, verbatim: see reference/)

SWAPS = [("a cat sitting next to a mirror", "a tiger sitting next to a mirror"),
         ("a red circle and a yellow star on a grey background", "a red circle and a blue star on a purple background")]
REFINES = [("a photo of a house on a mountain", "a photo of a house on a mountain at winter"),
           ("a small square", "a small square and a big green triangle"),
           ("a large brown cross at the top", "a small pink cross at the left and a large brown cross at the top")]


@pytest.fixture(scope="module")
def tokenizers():
    return {"clip": tiny_components()["tokenizer"],
            "wordpiece": AutoTokenizer.from_pretrained(Path(builtin_model("t2i")) / "tokenizer")}


@pytest.mark.parametrize("name", ["clip", "wordpiece"])
def test_alignment_equals_the_authors(tokenizers, name):
    tokenizer = tokenizers[name]
    size = tokenizer.model_max_length
    for source, target in SWAPS:
        expected = community.get_replacement_mapper_(source, target, tokenizer, size)
        assert torch.equal(alignment.replacement_mapper(source, target, tokenizer), expected)
    for source, target in SWAPS + REFINES:
        mapper, alphas = alignment.refinement_mapper(source, target, tokenizer)
        expected_mapper, expected_alphas = community.get_mapper(source, target, tokenizer, size)
        assert torch.equal(mapper, expected_mapper) and torch.equal(alphas, expected_alphas)
    # the added words' tokens, and only they, keep their own attention
    _, alphas = alignment.refinement_mapper("a photo of a house", "a photo of a red house", tokenizer)
    assert alphas[: 8].tolist() == [1, 1, 1, 1, 1, 0, 1, 1]


def test_a_swap_between_words_of_different_token_counts_keeps_the_tail_in_step(tokenizers):
    # the documented fix: the authors map the tokens after the last changed word j -> j, dropping the end token
    tokenizer = tokenizers["clip"]
    source, target = "a squirrel eating a burger", "a squirrel eating a lasagne"  # lasagne is two CLIP tokens
    ours = alignment.replacement_mapper(source, target, tokenizer)
    theirs = community.get_replacement_mapper_(source, target, tokenizer, tokenizer.model_max_length)
    end_source, end_target = len(tokenizer.encode(source)) - 1, len(tokenizer.encode(target)) - 1
    assert ours[end_source, end_target] == 1 and theirs[end_source].sum() == 0
    assert torch.equal(ours[:end_source], theirs[:end_source])  # identical up to the end token
    burger = alignment.word_token_indices(source, "burger", tokenizer)
    assert ours[burger[0], alignment.word_token_indices(target, "lasagne", tokenizer)].tolist() == [0.5, 0.5]


def test_the_word_swap_controller_equals_diffusers_community_pipeline():
    parts = tiny_components()
    pipe = community.Prompt2PromptPipeline(**parts, safety_checker=None, feature_extractor=None,
                                           requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    prompts = list(SWAPS[1])
    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0)).expand(2, -1, -1, -1)
    steps = 6
    with torch.inference_mode():
        expected = pipe(prompts, latents=noise.clone(), num_inference_steps=steps, guidance_scale=7.5,
                        output_type="latent", cross_attention_kwargs={
                            "edit_type": "replace", "n_cross_replace": 0.4, "n_self_replace": 0.4}).images
        conds, unconds = pipe.encode_prompt(prompts, "cpu", 1, True)
        ours_encoder = PromptEncoder(parts["tokenizer"], parts["text_encoder"])
        results = []
        for cond, uncond in ((conds, unconds[:1]), (ours_encoder(prompts), ours_encoder(""))):
            controller = PromptToPrompt(word_swap(alignment.replacement_mapper(*prompts, parts["tokenizer"])), steps,
                                        cross_replace_steps=0.4, self_replace_steps=0.4, self_max_queries=16**2)
            scheduler = make_scheduler(parts["scheduler"], "ddim")
            scheduler.set_timesteps(steps)
            with controlled_attention(parts["unet"], controller):
                results.append(denoise(BatchCFGDenoiser(parts["unet"], cond, uncond, 7.5), scheduler, noise.clone(),
                                       scheduler.timesteps))
    assert torch.equal(results[0], expected)  # bit for bit on the pipeline's own prompt embeddings
    # our encoder encodes each text alone, the pipeline both in one batch: 3e-7 apart, so the result barely moves
    torch.testing.assert_close(results[1], expected, rtol=0, atol=1e-4)
    assert not torch.equal(expected[0], expected[1])  # the swap changed the target


def test_identical_captions_give_plain_sampling_bit_for_bit(tiny_pipeline_dir, test_image):
    from diffusers.models.attention_processor import AttnProcessor

    model = tiny_pipeline_dir("t2i")
    editor = Editor(device="cpu", cache_bytes=0)
    # the controller computes attention as diffusers' AttnProcessor; the fused SDPA kernel rounds differently
    editor.load(model).unet.set_attn_processor(AttnProcessor())
    texts = {"source": "a red square", "target": "a red square"}
    p2p = editor.edit(EditRequest(test_image, method="p2p", model=model, seed=3, **texts,
                                  params={"num_inference_steps": 5, "inversion": "ddim"}))
    plain = editor.edit(EditRequest(test_image, method="encode-decode", model=model, seed=3, **texts,
                                    params={"num_inference_steps": 5, "guidance_scale": 7.5}))
    np.testing.assert_array_equal(np.asarray(p2p.image), np.asarray(plain.image))
    assert p2p.mask is None  # no changed word, nothing to blend


def _psnr(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


def test_null_text_and_negative_prompt_inversion_reconstruct_far_better_than_ddim_at_guidance_7_5():
    from instructedit.evaluation.builtin_quality import held_out_samples

    editor = Editor(device="cpu")
    scores: dict[str, list[float]] = {"ddim": [], "negative-prompt": [], "null-text": []}
    for sample in held_out_samples(2):
        for inversion, values in scores.items():
            result = editor.edit(EditRequest(
                sample.source_image(), method="p2p", model=builtin_model("t2i"), seed=0,
                source=sample.source_caption, target=sample.source_caption,
                params={"inversion": inversion, "guidance_scale": 7.5}))
            values.append(_psnr(result.image, sample.source_image()))
    ddim, negative, null = (float(np.mean(scores[k])) for k in ("ddim", "negative-prompt", "null-text"))
    # measured on 6 held-out scenes: DDIM 24.3 dB, negative-prompt 36.0 dB, null-text 35.4 dB
    assert null > ddim + 6 and negative > ddim + 6


def test_null_text_embeddings_are_cached_per_image_and_caption(tiny_pipeline_dir, test_image):
    model = tiny_pipeline_dir("t2i")
    cached, fresh = Editor(device="cpu"), Editor(device="cpu", cache_bytes=0)
    params = {"num_inference_steps": 4, "num_inner_steps": 3}
    calls = []
    for target in ("a blue square", "a green square"):
        request = EditRequest(test_image, method="p2p", model=model, seed=1, source="a red square", target=target,
                              params=params)
        a, b = cached.edit(request), fresh.edit(request)
        np.testing.assert_array_equal(np.asarray(a.image), np.asarray(b.image))
        calls.append((a.record.unet_calls, b.record.unet_calls))
    assert calls[0][0] == calls[0][1] and calls[1][0] == 4  # the second edit only denoises: 4 steps
    other = EditRequest(test_image.rotate(90), method="p2p", model=model, seed=1, source="a red square",
                        target="a blue square", params=params)
    assert cached.edit(other).record.unet_calls == calls[0][1]  # another image is never served a cached inversion


def test_null_text_inversion_that_diverges_stops_with_a_clear_error():
    parts = tiny_components()
    encoder = PromptEncoder(parts["tokenizer"], parts["text_encoder"])
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    trajectory = [latents, latents]
    poisoned = torch.full_like(encoder(""), float("nan"))
    with pytest.raises(NumericalError, match="null-text inversion diverged.*negative-prompt"):
        null_text_optimise(parts["unet"], parts["scheduler"], latents, trajectory, encoder("a cat"), poisoned)


@pytest.mark.parametrize(("params", "source", "target", "match"), [
    ({"edit": "replace"}, "a red square", "a big red square", "same number of words.*edit='refine'"),
    ({"reweight": "purple:2"}, "a red square", "a blue square", "cannot reweight 'purple'"),
    ({"reweight": "blue=2"}, "a red square", "a blue square", "word:value"),
    ({"cross_replace_words": "purple:0.2"}, "a red square", "a blue square", "cannot set 'purple'"),
    ({"cross_replace_words": "blue:2"}, "a red square", "a blue square", r"in \[0, 1\]"),
    ({"blend_words": "triangle"}, "a red square", "a blue square", "blend_words"),
])
def test_bad_p2p_requests_get_clear_errors(tiny_pipeline_dir, test_image, params, source, target, match):
    editor = Editor(device="cpu")
    request = EditRequest(test_image, method="p2p", model=tiny_pipeline_dir("t2i"), source=source, target=target,
                          params={"inversion": "ddim", "num_inference_steps": 2, **params})
    with pytest.raises(InvalidRequestError, match=match) as error:
        editor.edit(request)
    assert error.value.field.startswith("params.")


def test_per_word_cross_replace_steps(tiny_pipeline_dir, test_image):
    """The authors' per-word dict: a word at the default fraction changes nothing (bit for bit), a word whose
    replacement stops at once changes the edit."""
    editor = Editor(device="cpu")

    def run(**params):
        request = EditRequest(test_image, method="p2p", model=tiny_pipeline_dir("t2i"), source="a red square",
                              target="a blue square", params={"inversion": "ddim", "num_inference_steps": 4,
                                                              "local_blend": False, **params})
        return np.asarray(editor.edit(request).image, dtype=np.int16)

    plain = run()
    assert np.array_equal(run(cross_replace_words="blue:0.8"), plain)
    assert not np.array_equal(run(cross_replace_words="blue:0.0"), plain)


def test_p2p_needs_both_captions(tiny_pipeline_dir, test_image):
    with pytest.raises(InvalidRequestError, match="source caption") as error:
        Editor(device="cpu").edit(EditRequest(test_image, method="p2p", model=tiny_pipeline_dir("t2i"),
                                              target="a blue square"))
    assert error.value.field == "source"


def test_local_blend_keeps_the_source_outside_where_the_words_attend():
    store = CrossAttentionStore(max_resolution=8, places=("down", "up"))
    attention = torch.zeros(2, 64, 5)
    attention[:, :, 0] = 1.0
    attention[1, 9, 0], attention[1, 9, 3] = 0.0, 1.0  # the target's word 3 attends at cell (1, 1) only
    store.sums[64], store.counts[64] = attention, 1
    words = torch.zeros(2, 5)
    words[:, 3] = 1
    blend = LocalBlend(store, words, resolution=8)
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    out = blend(0, None, latents)
    inside = blend.mask[0, 0].bool()
    assert inside.sum() == 36  # the 3x3 max-pool around the cell, at twice the resolution
    assert torch.equal(out[1][:, ~inside], latents[0][:, ~inside])
    torch.testing.assert_close(out[1][:, inside], latents[1][:, inside])  # source + (target - source): rounding
    assert torch.equal(out[0], latents[0])
