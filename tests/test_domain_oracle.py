"""Reference domain: detector, caption oracle, edit oracle, preservation metric."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from instructedit.domain import (
    OBJECT_COLOURS,
    SHAPES,
    Background,
    Scene,
    SceneObject,
    caption_satisfied,
    detect_background,
    detect_objects,
    edit_applied,
    edit_report,
    generate_samples,
    preservation,
    render_array,
    render_scene,
)
from instructedit.errors import InvalidImageError, InvalidMaskError, InvalidRequestError


@pytest.fixture(scope="module")
def samples():
    return generate_samples("train", 70, seed=21) + generate_samples("test", 35, seed=21)


@pytest.mark.parametrize("size", [64, 128])
def test_detector_is_right_on_rendered_objects(samples, size):
    total = correct = 0
    for s in samples[: 70 if size == 64 else 28]:
        for scene in (s.source_scene, s.target_scene):
            dets = detect_objects(render_array(scene, size))
            for o in scene.objects:
                total += 1
                correct += any(
                    (d.colour, d.shape, d.position, d.size) == (o.colour, o.shape, o.position, o.size) for d in dets
                )
    assert total > 100
    assert correct / total >= 0.98


def test_detector_hand_example():
    obj = SceneObject("square", "red", "large", 0.5, 0.5)  # box [0.325, 0.675] -> pixels 20.8 .. 43.2
    dets = detect_objects(render_scene(Scene(Background("white"), (obj,)), 64))
    assert len(dets) == 1
    d = dets[0]
    assert (d.colour, d.shape, d.position, d.size) == ("red", "square", "center", "large")
    assert d.bbox == (21, 21, 43, 43)  # pixels covered more than half
    assert d.centroid == pytest.approx((32.0, 32.0))
    assert d.area == 22 * 22


def test_every_shape_and_colour_is_recognised_alone():
    for i, shape in enumerate(SHAPES):
        for j, colour in enumerate(OBJECT_COLOURS):
            bg = ("white", "black", "gray", "beige")[(i + j) % 4]
            scene = Scene(Background(bg, "gradient_v"), (SceneObject(shape, colour, "small", 0.5, 0.5),))
            dets = detect_objects(render_array(scene, 64))
            assert [(d.colour, d.shape) for d in dets] == [(colour, shape)], (shape, colour, bg)
            assert detect_background(render_array(scene, 64)) == bg


def test_detector_bad_hint():
    with pytest.raises(InvalidRequestError, match="background colour"):
        detect_objects(np.zeros((64, 64, 3), dtype=np.uint8), background_hint="mauve")


def test_detector_finds_nothing_on_an_empty_background():
    assert detect_objects(render_array(Scene(Background("gray", "stripes"), ()), 64)) == []


def test_caption_oracle(samples):
    for s in samples[:21]:
        src = s.source_image()
        assert caption_satisfied(src, s.source_scene, check_position=True, check_size=True, check_background=True)
        tgt = s.target_image()
        if s.edit_type in ("replace", "change_colour", "remove"):
            assert not caption_satisfied(tgt, s.source_scene)  # the edited object is gone from the target
        if s.edit_type == "move":
            assert caption_satisfied(tgt, s.source_scene)
            assert not caption_satisfied(tgt, s.source_scene, check_position=True)
        if s.edit_type == "change_size":
            assert not caption_satisfied(tgt, s.source_scene, check_size=True)
        if s.edit_type == "change_background":
            assert not caption_satisfied(tgt, s.source_scene, check_background=True)
        if s.edit_type == "add":
            assert not caption_satisfied(src, s.target_scene)
            assert not caption_satisfied(tgt, s.source_scene, exact_count=True)


def test_ground_truth_is_applied_and_input_is_not(samples):
    for s in samples:
        good = edit_report(s.target_image(), s)
        assert good["applied"], (s.id, s.instruction, good)
        assert good["d_target"] == 0.0
        assert not edit_applied(s.source_image(), s), (s.id, s.instruction)


def _first(samples, kind):
    return next(s for s in samples if s.edit_type == kind)


def test_wrong_colour_is_not_applied(samples):
    s = _first(samples, "change_colour")
    wrong = next(c for c in OBJECT_COLOURS if c not in (s.edit.obj.colour, s.source_scene.objects[s.edit.index].colour))
    objects = list(s.target_scene.objects)
    objects[s.edit.index] = replace(s.edit.obj, colour=wrong)
    report = edit_report(render_scene(s.target_scene.with_objects(objects), 64), s)
    assert not report["semantic_ok"] and not report["applied"]


def test_wrong_shape_is_not_applied(samples):
    for kind in ("add", "replace"):
        s = _first(samples, kind)
        after = s.edit.obj
        taken = {o.name for o in s.target_scene.objects}
        shape = next(x for x in SHAPES if x != after.shape and f"{after.colour} {x}" not in taken)
        objects = [replace(o, shape=shape) if o == after else o for o in s.target_scene.objects]
        assert not edit_applied(render_scene(s.target_scene.with_objects(objects), 64), s), kind


def test_move_that_only_erases_is_not_applied(samples):
    s = _first(samples, "move")
    erased = s.source_scene.with_objects([o for i, o in enumerate(s.source_scene.objects) if i != s.edit.index])
    report = edit_report(render_scene(erased, 64), s)
    assert not report["applied"] and "no object" in report["reason"]


def test_copy_instead_of_move_is_not_applied(samples):
    s = _first(samples, "move")
    both = s.source_scene.with_objects([*s.source_scene.objects, s.edit.obj])
    assert not edit_applied(render_scene(both, 64), s)


def test_resized_output_is_accepted(samples):
    s = _first(samples, "change_colour")
    big = s.target_image().resize((128, 128), Image.Resampling.NEAREST)
    assert edit_applied(big, s)


def test_preservation_hand_values():
    inp = np.zeros((8, 8, 3))
    out = np.full((8, 8, 3), 0.1)
    mask = np.zeros((8, 8), dtype=bool)
    mask[:4] = True
    out[:4] = 1.0  # inside the mask: ignored
    p = preservation(out, inp, mask)
    assert p["l1"] == pytest.approx(0.1)
    assert p["psnr"] == pytest.approx(20.0)  # mse 0.01 -> 10 log10(100)
    same = preservation(inp, inp, mask)
    assert same == {"psnr": math.inf, "l1": 0.0}
    assert preservation(out, inp, np.ones((8, 8), dtype=bool)) == {"psnr": None, "l1": None}


def test_preservation_of_ground_truth_is_perfect(samples):
    for s in samples[:14]:
        p = preservation(s.target_image(), s.source_image(), s.mask_image())
        assert p == {"psnr": math.inf, "l1": 0.0}


def test_preservation_bad_input():
    img = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(InvalidMaskError, match="shape"):
        preservation(img, img, np.zeros((4, 4), dtype=bool))
    with pytest.raises(InvalidImageError, match=r"\(H, W, 3\)"):
        preservation(np.zeros((8, 8)), img, np.zeros((8, 8), dtype=bool))
    with pytest.raises(InvalidImageError, match=r"\[0, 1\]"):
        preservation(np.full((8, 8, 3), 255.0), img, np.zeros((8, 8), dtype=bool))
