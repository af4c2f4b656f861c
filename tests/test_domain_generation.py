"""Reference domain: scenes, renders, captions, edits, masks, phrasings, splits."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from instructedit.domain import (
    EDIT_TYPES,
    Background,
    Scene,
    SceneObject,
    caption,
    caption_split,
    edit_mask,
    generate_samples,
    layout_problems,
    make_sample,
    phrasings,
    render_array,
)
from instructedit.domain.edits import default_dilation
from instructedit.domain.phrasings import REQUIRED_FIELDS, template_fields, template_words
from instructedit.domain.render import dilate, silhouette
from instructedit.errors import DatasetError, InvalidRequestError


@pytest.fixture(scope="module")
def train():
    return generate_samples("train", 70, seed=11)


@pytest.fixture(scope="module")
def test_split():
    return generate_samples("test", 70, seed=11)


def test_same_seed_same_sample_and_pixels():
    a, b = make_sample("train", 5, 3), make_sample("train", 5, 3)
    assert a.to_manifest() == b.to_manifest()
    assert np.array_equal(render_array(a.target_scene), render_array(b.target_scene))
    assert np.array_equal(np.asarray(a.mask_image()), np.asarray(b.mask_image()))


def test_seed_and_split_change_the_sample():
    base = make_sample("train", 5, 3)
    assert make_sample("train", 6, 3).source_scene != base.source_scene
    assert make_sample("test", 5, 3).source_scene != base.source_scene


def test_prefix_of_a_longer_run_is_identical():
    short = generate_samples("train", 5, seed=2)
    long = generate_samples("train", 9, seed=2)
    assert [s.to_manifest() for s in short] == [s.to_manifest() for s in long[:5]]


def test_edit_types_are_balanced_round_robin(train):
    assert [s.edit_type for s in train[:7]] == list(EDIT_TYPES)
    counts = {t: sum(s.edit_type == t for s in train) for t in EDIT_TYPES}
    assert set(counts.values()) == {10}


def test_scenes_obey_layout_rules(train, test_split):
    for s in train + test_split:
        assert layout_problems(s.source_scene) == [], s.id
        assert layout_problems(s.target_scene) == [], s.id


@pytest.mark.parametrize("size", [64, 128])
def test_target_equals_source_exactly_outside_the_mask(size):
    for s in generate_samples("train", 35, seed=4, size=size) + generate_samples("test", 14, seed=4, size=size):
        src, tgt, mask = render_array(s.source_scene, size), render_array(s.target_scene, size), s.mask_array()
        assert src.shape == (size, size, 3) and mask.shape == (size, size)
        assert np.array_equal(src[~mask], tgt[~mask]), s.id
        assert (src[mask] != tgt[mask]).any(), f"{s.id}: mask region unchanged"


def test_object_edit_mask_is_the_dilated_union_of_silhouettes(train):
    for s in train:
        if s.edit_type in ("add", "remove", "change_background"):
            continue
        before = s.source_scene.objects[s.edit.index]
        union = silhouette(before, 64) | silhouette(s.edit.obj, 64)
        assert np.array_equal(s.mask_array(), dilate(union, 1))


def test_background_mask_excludes_object_interiors(train):
    s = next(x for x in train if x.edit_type == "change_background")
    mask = s.mask_array()
    for obj in s.source_scene.objects:
        assert not mask[int(obj.y * 64), int(obj.x * 64)]  # every shape is solid at its box centre
    assert mask[0, 0] and mask[63, 63]
    assert default_dilation(64) == 1 and default_dilation(128) == 2


def test_dilation_hand_example():
    m = np.zeros((5, 5), dtype=bool)
    m[2, 2] = True
    assert dilate(m, 1).sum() == 9 and dilate(m, 2).sum() == 25
    assert np.array_equal(dilate(m, 1)[1:4, 1:4], np.ones((3, 3), dtype=bool))


def test_caption_hand_example():
    scene = Scene(
        Background("white"),
        (
            SceneObject("square", "blue", "small", 0.8, 0.8),
            SceneObject("circle", "red", "large", 0.22, 0.22),
        ),
    )
    assert caption(scene) == (
        "a large red circle at the top left and a small blue square at the bottom right on a white background"
    )
    three = Scene(Background("gray"), (*scene.objects, SceneObject("star", "green", "small", 0.5, 0.5)))
    assert caption(three) == (
        "a large red circle at the top left, a small green star in the center and a small blue square "
        "at the bottom right on a gray background"
    )


def test_captions_mention_every_object_and_change_with_the_edit(train, test_split):
    for s in train + test_split:
        for scene, text in ((s.source_scene, s.source_caption), (s.target_scene, s.target_caption)):
            assert text == caption(scene) and text.endswith(f"on a {scene.background.colour} background")
            for o in scene.objects:
                assert f"a {o.size} {o.colour} {o.shape}" in text
        assert s.source_caption != s.target_caption


def test_instructions_refer_to_exactly_one_object(train, test_split):
    names = [f"{c} {sh}" for c in ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink", "brown")
             for sh in ("circle", "square", "triangle", "star", "diamond", "cross")]  # fmt: skip
    for s in train + test_split:
        assert s.instruction.strip() and "{" not in s.instruction
        if s.edit_type in ("add", "change_background"):
            continue
        ref = s.source_scene.objects[s.edit.index].name
        assert f"the {ref}" in s.instruction
        assert sum(o.name == ref for o in s.source_scene.objects) == 1
        mentioned = [n for n in names if re.search(rf"\bthe {n}\b", s.instruction)]
        assert mentioned == [ref], s.instruction


def test_phrasing_flags_match_templates(train, test_split):
    assert not any(s.heldout_phrasing for s in train)
    for s in train:
        assert s.template in phrasings(s.edit_type, "train")
    for s in test_split:
        assert s.template in phrasings(s.edit_type, "test" if s.heldout_phrasing else "train")
    assert 0 < sum(s.heldout_phrasing for s in test_split) < len(test_split)


def _words(split: str) -> set[str]:
    return set().union(*(template_words(t) for e in EDIT_TYPES for t in phrasings(e, split)))


def test_heldout_phrasings_are_disjoint_and_use_unseen_words():
    train_words = _words("train") | _words("paraphrase")  # everything any training data can say
    for e in EDIT_TYPES:
        tr = set(phrasings(e, "train")) | set(phrasings(e, "paraphrase"))
        te = set(phrasings(e, "test"))
        assert tr and te and not tr & te
        for t in te:
            assert template_words(t) - train_words, f"{t!r} uses only training words"


def test_paraphrases_never_use_a_word_only_held_out_templates_use():
    held_out_only = _words("test") - _words("train")
    assert not _words("paraphrase") & held_out_only


def test_paraphrases_change_only_the_wording_of_training_samples():
    plain = generate_samples("train", 42, seed=4)
    para = generate_samples("train", 42, seed=4, paraphrases=True)
    for a, b in zip(plain, para, strict=True):
        assert (a.source_scene, a.target_scene, a.edit) == (b.source_scene, b.target_scene, b.edit)
        assert b.template in phrasings(b.edit_type, "train") + phrasings(b.edit_type, "paraphrase")
        assert not b.heldout_phrasing
    assert any(s.template in phrasings(s.edit_type, "paraphrase") for s in para)
    with pytest.raises(InvalidRequestError, match="test split"):
        generate_samples("test", 2, seed=4, paraphrases=True)


def test_every_template_pins_down_the_edit():
    for e in EDIT_TYPES:
        for split in ("train", "test", "paraphrase"):
            for t in phrasings(e, split):
                fields = template_fields(t)
                assert any(req <= fields for req in REQUIRED_FIELDS[e]), (e, t)


def test_splits_hold_out_captions(train, test_split):
    for s in train:
        assert caption_split(s.source_caption) == "train" and caption_split(s.target_caption) == "train"
    for s in test_split:
        assert caption_split(s.source_caption) == "test"
    assert not {s.source_caption for s in train} & {s.source_caption for s in test_split}
    assert len({s.id for s in train + test_split}) == len(train) + len(test_split)
    assert all("-" not in s.id for s in train + test_split)


def test_generation_is_fast():
    start = time.perf_counter()
    generate_samples("train", 140, seed=8)
    assert (time.perf_counter() - start) / 140 < 0.05  # ~1 ms on one core; generous for shared CI machines


@pytest.mark.parametrize(
    "kwargs",
    [
        {"split": "val"},
        {"seed": -1},
        {"size": 10},
        {"size": 64.0},
        {"heldout_fraction": 2.0},
        {"edit_types": ["rotate"]},
    ],
)
def test_bad_arguments_raise_typed_errors(kwargs):
    args = {"split": "train", "num_samples": 1, "seed": 0, **kwargs}
    with pytest.raises(InvalidRequestError):
        generate_samples(**args)


def test_unknown_edit_type_in_phrasings():
    with pytest.raises(InvalidRequestError, match="unknown edit type"):
        phrasings("rotate")
    with pytest.raises(InvalidRequestError, match="phrasing split"):
        phrasings("add", "dev")


def test_scene_from_dict_rejects_unknown_names():
    good = make_sample("train", 0, 0).source_scene
    assert Scene.from_dict(good.to_dict()) == good
    bad = good.to_dict()
    bad["objects"][0]["colour"] = "magenta"
    with pytest.raises(DatasetError, match="magenta"):
        Scene.from_dict(bad)
    with pytest.raises(DatasetError):
        Scene.from_dict({"objects": []})


def test_edit_mask_for_added_object_covers_only_it():
    s = make_sample("train", 1, 0)  # index 0 -> "add"
    assert s.edit_type == "add"
    mask = edit_mask(s.source_scene, s.edit, 64)
    assert np.array_equal(mask, dilate(silhouette(s.edit.obj, 64), 1))
