"""The person backend: MediaPipe's selfie segmentation (shipped) on a real photo, offline."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instructedit import Editor, EditRequest
from instructedit.errors import InvalidRequestError, ModelNotFoundError
from instructedit.grounding import dilate, ground, make_grounder
from instructedit.grounding.person import SELFIE_MODEL, PersonGrounder, names_person

PHOTO = Path(__file__).parent / "data" / "astronaut_256.jpg"


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(PHOTO).convert("RGB")


@pytest.fixture(scope="module")
def grounder() -> PersonGrounder:
    return make_grounder("person")


def test_the_shipped_model_finds_the_person_in_a_photo(photo, grounder):
    found = grounder.ground(photo, "the woman")
    mask = np.asarray(found.mask) > 127
    assert found.backend == "person" and found.mask.size == photo.size and found.score > 0.8
    assert mask[35:70, 100:130].mean() > 0.98  # her face
    assert mask[150:250, 30:110].mean() > 0.9  # her suit
    assert mask[0:25, 0:25].mean() < 0.05 and mask[0:30, 180:256].mean() < 0.1  # the flag's corner, the wall
    assert 0.35 < mask.mean() < 0.7


def test_the_background_is_the_complement_and_sizes_follow_the_image(photo, grounder):
    person = np.asarray(grounder.ground(photo, "her").mask) > 127
    background = np.asarray(grounder.ground(photo, "the background").mask) > 127
    assert not (person & background).any() and (person | background).mean() > 0.99
    wide = photo.resize((300, 200))
    assert grounder.ground(wide, "the person").mask.size == (300, 200)


def test_phrases_that_name_a_person():
    for phrase in ("the man on the left", "her", "the people", "The Woman", "a smiling girl", "the subject"):
        assert names_person(phrase), phrase
    for phrase in ("the red circle", "the car", "a mansion", "the womanly shape", None, ""):
        assert not names_person(phrase), phrase


def test_other_phrases_are_refused_with_the_backends_that_can_find_them(photo, grounder):
    with pytest.raises(InvalidRequestError) as excinfo:
        grounder.ground(photo, "the space shuttle")
    assert excinfo.value.field == "ground" and "clipseg" in str(excinfo.value)


def test_missing_mediapipe_or_model_is_a_clear_error(photo, monkeypatch, tmp_path):
    with pytest.raises(ModelNotFoundError, match="no person segmentation model"):
        PersonGrounder(tmp_path / "missing.tflite").ground(photo, "the man")
    monkeypatch.setitem(sys.modules, "mediapipe.tasks.python", None)
    with pytest.raises(ModelNotFoundError, match=r"instructedit\[person\]"):
        PersonGrounder(SELFIE_MODEL).ground(photo, "the man")
    with pytest.raises(InvalidRequestError):
        PersonGrounder(threshold=1.5)


def test_auto_grounding_sends_people_to_the_person_backend(photo, tiny_pipeline_dir):
    small = photo.resize((64, 64), Image.Resampling.LANCZOS)
    editor = Editor(device="cpu")
    result = editor.edit(EditRequest(small, instruction="make the person blue", model=tiny_pipeline_dir("ip2p"),
                                     params={"num_inference_steps": 2}, ground="auto", seed=0))
    (turn,) = result.record.turns
    assert turn["grounding"]["backend"] == "person" and turn["grounding"]["phrase"] == "the person"
    expected = np.asarray(dilate(ground(small, "the person", backend="person").mask, 2))
    assert turn["grounding"]["area"] == pytest.approx((expected > 0).mean(), abs=1e-4)
    assert (np.asarray(result.mask)[expected > 0] > 0).all()  # the method's mask: this one on its latent grid
    outside = expected == 0
    np.testing.assert_array_equal(np.asarray(result.image)[outside], np.asarray(small)[outside])
