"""Requests as data (to_dict/from_dict), method declarations, and concurrent edits on different models."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from instructedit import Editor, EditRequest
from instructedit.errors import InvalidRequestError
from instructedit.methods import available_methods, get_method


def test_request_round_trips_through_json_with_paths_and_in_memory_images(tmp_path, test_image):
    path = tmp_path / "in.png"
    test_image.save(path)
    by_path = EditRequest(image=str(path), instruction="make it red", params={"guidance_scale": 3.0}, seed=4)
    assert EditRequest.from_dict(json.loads(json.dumps(by_path.to_dict()))) == by_path

    in_memory = EditRequest(image=test_image, source="a square", target="a circle", method="sdedit")
    data = json.loads(json.dumps(in_memory.to_dict()))
    assert data["image"].startswith("data:image/png;base64,")
    again = EditRequest.from_dict(data)
    from instructedit.inputs import load_image

    np.testing.assert_array_equal(np.asarray(load_image(again.image)), np.asarray(test_image))
    assert (again.source, again.target, again.method) == ("a square", "a circle", "sdedit")


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        ({"image": "a.png", "instuction": "x"}, "instuction", "unknown request field 'instuction'"),
        ({"instruction": "x"}, "image", "no image"),
        ({"image": "a.png", "seed": "7"}, "seed", "must be an integer"),
        ({"image": "a.png", "seed": True}, "seed", "must be an integer"),
        ({"image": "a.png", "params": [1]}, "params", "must be dict"),
        ({"image": 5}, "image", "path or a data URL"),
        ({"image": "data:image/png;base64,@@@"}, "image", "invalid base64"),
        ({"image": "data:image/png,abc"}, "image", "without base64"),
    ],
)
def test_malformed_request_data_names_the_field(data, field, fragment):
    with pytest.raises(InvalidRequestError) as excinfo:
        EditRequest.from_dict(data)
    assert excinfo.value.field == field and fragment in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_every_method_declares_what_the_interfaces_need():
    for method in available_methods():
        described = json.loads(json.dumps(method.describe()))
        assert described["name"] == method.name and described["needs"] == sorted(method.needs)
        names = [p["name"] for p in described["params"]]
        assert names == list(method.defaults)
        if method.strength_param is not None:
            assert method.strength_param in names
        assert method.takes_instruction == ("instruction" in method.needs)
        assert method.uses_mask(False) == method.produces_mask
        assert get_method(method.name) is method


def test_edits_on_different_models_run_at_the_same_time(tiny_pipeline_dir, test_image):
    """One edit holds its model; an edit on another model must not wait for it (a global lock would)."""
    started, release = threading.Event(), threading.Event()

    class Progress:
        def __init__(self, total):
            pass

        def update(self, n=1):
            if threading.current_thread().name == "slow":
                started.set()
                release.wait(timeout=60)

        def close(self):
            pass

    editor = Editor(device="cpu", progress=lambda total: Progress(total))
    slow_request = EditRequest(test_image, instruction="make it red", model=tiny_pipeline_dir("ip2p"),
                               params={"num_inference_steps": 2})
    fast_request = EditRequest(test_image, target="a blue square", method="sdedit", model=tiny_pipeline_dir("t2i"),
                               params={"num_inference_steps": 2})
    editor.load(fast_request.model)  # loading is not what is measured
    results = {}
    slow = threading.Thread(target=lambda: results.update(slow=editor.edit(slow_request)), name="slow")
    slow.start()
    assert started.wait(timeout=60)
    fast = threading.Thread(target=lambda: results.update(fast=editor.edit(fast_request)), name="fast")
    fast.start()
    fast.join(timeout=60)
    finished_while_other_ran = not fast.is_alive() and "slow" not in results
    release.set()
    slow.join(timeout=60)
    fast.join(timeout=60)
    assert finished_while_other_ran
    assert set(results) == {"slow", "fast"}
