"""The built-in domain grounder: its quality on held-out scenes and wordings, its behaviour on any image size and
on phrases it cannot read, clear errors for a missing model, and a short training run that resumes exactly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from instructedit.domain import generate_samples
from instructedit.domain.references import VOCABULARY
from instructedit.errors import InvalidModelError, InvalidRequestError
from instructedit.grounding import ground, make_grounder
from instructedit.grounding.builtin import SHIPPED, DomainGrounder
from instructedit.models.segmenter import PhraseSegmenter
from instructedit.training.grounder import evaluate, iou, main

needs_shipped = pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="no shipped grounder")


@pytest.fixture(scope="module")
def grounder() -> DomainGrounder:
    return DomainGrounder()


@needs_shipped
def test_shipped_grounder_finds_held_out_entities(grounder):
    report = evaluate(grounder, num_samples=35)
    assert report["reference"]["mean_iou"] >= 0.8, report["reference"]
    assert report["heldout"]["mean_iou"] >= 0.75, report["heldout"]
    card = json.loads((SHIPPED / "instructedit.json").read_text())
    assert card["steps"] > 0 and card["evaluation"]["samples"] >= 140


@needs_shipped
def test_grounding_is_deterministic_at_any_image_size(grounder):
    sample = generate_samples("test", 3, seed=8)[2]
    small = sample.source_image()
    large = small.resize((256, 256), Image.Resampling.NEAREST)
    phrase = f"the {sample.source_scene.objects[0].name}"
    first, second = grounder.ground(large, phrase), grounder.ground(large, phrase)
    assert first.mask.size == (256, 256) and np.array_equal(np.asarray(first.mask), np.asarray(second.mask))
    down = np.asarray(first.mask.resize(small.size, Image.Resampling.NEAREST)) > 127
    assert iou(down, np.asarray(grounder.ground(small, phrase).mask) > 127) >= 0.9
    assert first.backend == "builtin" and 0.5 <= first.score <= 1.0


@needs_shipped
def test_unknown_words_give_an_empty_mask_and_score_zero(grounder):
    image = generate_samples("test", 1, seed=8)[0].source_image()
    found = grounder.ground(image, "the lighthouse")
    assert not found.found and found.score == 0.0 and found.details["known_words"] is False
    with pytest.raises(InvalidRequestError) as error:
        ground(image, "  ", backend=grounder)
    assert error.value.field == "ground"


def test_missing_or_broken_model_is_a_clear_error(tmp_path):
    image = Image.new("RGB", (64, 64))
    with pytest.raises(InvalidModelError, match="config.json missing"):
        DomainGrounder(tmp_path).ground(image, "the red circle")
    PhraseSegmenter(list(VOCABULARY), width=8).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(InvalidModelError, match="could not be read"):
        DomainGrounder(tmp_path).ground(image, "the red circle")
    with pytest.raises(InvalidRequestError, match="threshold"):
        DomainGrounder(threshold=1.5)
    assert make_grounder("builtin", model=tmp_path).name == "builtin"


def test_training_resumes_to_the_same_model(tmp_path):
    settings = ["--width", "8", "--batch-size", "2", "--checkpoint-every", "2", "--eval-samples", "0"]
    main(["--out", str(tmp_path / "straight"), "--steps", "4", *settings])
    # a run killed after its step-2 checkpoint: only that checkpoint is left
    shutil.copytree(tmp_path / "straight" / "checkpoints" / "checkpoint-2",
                    tmp_path / "resumed" / "checkpoints" / "checkpoint-2")
    main(["--out", str(tmp_path / "resumed"), "--steps", "4", "--resume", *settings])
    straight = PhraseSegmenter.from_pretrained(tmp_path / "straight" / "final").state_dict()
    resumed = PhraseSegmenter.from_pretrained(tmp_path / "resumed" / "final").state_dict()
    assert all(torch.allclose(straight[k], resumed[k], atol=1e-6) for k in straight)
    card = json.loads((tmp_path / "resumed" / "final" / "instructedit.json").read_text())
    assert card["steps"] == 4 and card["settings"]["width"] == 8
    grounding = DomainGrounder(tmp_path / "resumed" / "final").ground(Image.new("RGB", (48, 48)), "the red star")
    assert grounding.mask.size == (48, 48)
