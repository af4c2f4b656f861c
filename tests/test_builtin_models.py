"""The shipped built-in models: present, small, provenance recorded, every method's quality on a fixed held-out
sample (a regression guard), and the issue's quality bars on the larger held-out sample the README reports."""

from __future__ import annotations

import json

import pytest

from instructedit import Editor
from instructedit.evaluation.builtin_quality import evaluate_method, evaluate_text_to_image, held_out_samples
from instructedit.models.builtin import ASSETS, builtin_model

SAMPLES = 28  # four of each edit type, about half in held-out phrasings
# Measured on these 28 samples when the models were shipped (edit applied, PSNR outside the mask, with each model's
# defaults): ip2p 0.821 / 33.74 dB (held-out phrasings 14 of 17), sdedit 0.679 / 25.86 dB, encode-decode
# 0.786 / 30.30 dB, diffedit 0.714 / 29.93 dB; text-to-image on the first 14 captions: every object found 11 of 14,
# objects found 22 of 26, background right 14 of 14.
# Floors: two samples' worth of edit success and 1 dB below, so a regression in any method fails while float noise
# across CPUs does not.
METHOD_FLOORS = {"ip2p": (0.75, 32.7), "sdedit": (0.61, 24.8), "encode-decode": (0.71, 29.3),
                 "diffedit": (0.64, 28.9)}
HELDOUT_PHRASING_FLOOR = 0.70  # ip2p on the samples whose instruction wording training never saw
# two captions' (four objects') worth below the measured figures
TEXT_TO_IMAGE_FLOORS = {"caption_accuracy": 0.64, "object_recall": 0.69, "background_accuracy": 0.85}
# SDEdit's trade-off curve below its default strength (0.5): less noise, less change, better preservation
SDEDIT_CURVE_STRENGTHS = (0.3, 0.4)


@pytest.fixture(scope="module")
def quality():
    editor, samples = Editor(device="cpu"), held_out_samples(SAMPLES)
    return {method: evaluate_method(editor, samples, method) for method in METHOD_FLOORS}


@pytest.mark.parametrize("kind", ["t2i", "ip2p"])
def test_builtin_models_ship_small_with_their_provenance(kind):
    assert builtin_model(kind) is not None, f"built-in {kind} model missing from {ASSETS}"
    card = json.loads((ASSETS / kind / "instructedit.json").read_text())
    assert card["command"].startswith("instructedit train all") and isinstance(card["seed"], int)
    assert card["training"]["text2image"]["steps"] > 0 and card["training"]["vae"]["metrics"]["eval_psnr_db"] > 30
    assert card["training"]["ip2p"]["steps"] > 0 and set(METHOD_FLOORS) <= set(card["metrics"]["methods"])
    committed = [p for p in ASSETS.rglob("*.safetensors") if p.parent.name != "text_encoder"]
    assert committed and sum(p.stat().st_size for p in committed) < 50e6
    assert (ASSETS / kind / "text_encoder" / "external.json").is_file()  # the frozen encoder is referenced


@pytest.mark.parametrize("method", list(METHOD_FLOORS))
def test_methods_on_the_builtin_models(quality, method):
    applied, psnr = METHOD_FLOORS[method]
    result = quality[method]
    assert result.count == SAMPLES
    assert result.applied >= applied and result.psnr_outside_mask >= psnr, result.summary()


def test_builtin_instruct_pix2pix_generalises_to_held_out_phrasings(quality):
    result = quality["ip2p"]
    assert result.applied_heldout_phrasing >= HELDOUT_PHRASING_FLOOR, result.summary()


def test_diffedit_keeps_the_unedited_region_better_than_sdedit_at_equal_edit_success(quality):
    # The DiffEdit paper's claim, checked as the paper plots it: SDEdit's strength traces its success/preservation
    # curve, and DiffEdit is compared with the point of that curve nearest its own edit success (ties go to SDEdit's
    # better PSNR). Measured: DiffEdit 0.714 / 29.93 dB against SDEdit at its default strength 0.5, 0.679 / 25.86 dB.
    editor, samples = Editor(device="cpu"), held_out_samples(SAMPLES)
    diffedit = quality["diffedit"]
    curve = [quality["sdedit"]] + [evaluate_method(editor, samples, "sdedit", params={"strength": strength})
                                   for strength in SDEDIT_CURVE_STRENGTHS]
    sdedit = min(curve, key=lambda q: (abs(q.applied - diffedit.applied), -q.psnr_outside_mask))
    assert abs(sdedit.applied - diffedit.applied) <= 2 / SAMPLES, [q.summary() for q in curve]
    assert diffedit.psnr_outside_mask > sdedit.psnr_outside_mask + 1.0, (diffedit.summary(), sdedit.summary())


def test_builtin_text_to_image_model_draws_held_out_captions():
    captions = held_out_samples(SAMPLES)[: SAMPLES // 2]  # as builtin_quality measures it
    figures = evaluate_text_to_image(Editor(device="cpu").load(builtin_model("t2i")), captions)
    assert figures["count"] == len(captions)
    for name, floor in TEXT_TO_IMAGE_FLOORS.items():
        assert figures[name] >= floor, figures


# The issue's bars themselves, on the larger held-out sample the README reports (`builtin_quality --samples 140`:
# 20 edits of each type, 75 in held-out phrasings, the first 70 source captions). Measured when shipped: ip2p 0.871
# applied, 0.853 in held-out phrasings, every type >= 0.70, 32.2 dB; text-to-image 0.843 of captions fully drawn.
BARS_SAMPLES = 140
IP2P_BARS = {"applied": 0.8, "held_out_phrasings": 0.8, "each_type": 0.6, "psnr_outside_mask": 25.0}
CAPTION_BAR = 0.8


@pytest.fixture(scope="module")
def bars_sample():
    return held_out_samples(BARS_SAMPLES)


def test_builtin_instruct_pix2pix_meets_the_issue_bars(bars_sample):
    result = evaluate_method(Editor(device="cpu"), bars_sample, "ip2p")
    assert result.count == BARS_SAMPLES and len(result.applied_by_type) == 7
    assert result.applied >= IP2P_BARS["applied"], result.summary()
    assert result.applied_heldout_phrasing >= IP2P_BARS["held_out_phrasings"], result.summary()
    assert min(result.applied_by_type.values()) >= IP2P_BARS["each_type"], result.summary()
    assert result.psnr_outside_mask >= IP2P_BARS["psnr_outside_mask"], result.summary()


def test_builtin_text_to_image_model_meets_the_caption_bar(bars_sample):
    captions = bars_sample[: BARS_SAMPLES // 2]
    figures = evaluate_text_to_image(Editor(device="cpu").load(builtin_model("t2i")), captions)
    assert figures["count"] == len(captions) and figures["caption_accuracy"] >= CAPTION_BAR, figures
