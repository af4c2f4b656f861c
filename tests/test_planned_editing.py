"""The editor with plans and grounding: instructions drive caption methods, compound requests become turns,
grounded edits are confined to the entity, and one record tells the whole chain."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from instructedit import Editor, EditRecord, EditRequest
from instructedit.errors import InvalidRequestError
from instructedit.grounding import Grounding
from instructedit.instructions.captions import local_captions
from instructedit.instructions.plan import EditPlan


class ScriptedPlanner:
    """A planner that answers from a table (the rule-based planner has its own tests)."""

    name = "scripted"

    def __init__(self, answers: dict[str, list[EditPlan]]) -> None:
        self.answers, self.calls = answers, []

    def plan(self, instruction: str, *, caption: str | None = None) -> list[EditPlan]:
        self.calls.append((instruction, caption))
        return self.answers[instruction]


class BoxGrounder:
    """Grounds every phrase to a fixed box (or to nothing)."""

    name = "box"

    def __init__(self, box: tuple[int, int, int, int] | None, score: float = 0.9) -> None:
        self.box, self.score, self.phrases = box, score, []

    def ground(self, image: Image.Image, phrase: str) -> Grounding:
        self.phrases.append(phrase)
        mask = np.zeros((image.height, image.width), dtype=np.uint8)
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            mask[y0:y1, x0:x1] = 255
        return Grounding(phrase, Image.fromarray(mask, "L"), self.score if self.box else 0.0, self.name)


RECOLOUR = EditPlan("colour", "make the red square blue", entity="the red square", value="blue", old_value="red",
                    reverse="make the blue square red", text="make the red square blue")
REMOVE = EditPlan("remove", "remove the red square", entity="the red square", reverse="add a red square",
                  text="remove the red square")


@pytest.fixture()
def editor():
    return Editor(device="cpu", planner=ScriptedPlanner({
        "make the red square blue": [RECOLOUR],
        "make the red square blue and remove it": [RECOLOUR, REMOVE],
    }))


def _editor_with_grounder(editor: Editor, grounder) -> Editor:
    editor.add_grounder(grounder, default=True)
    return editor


def test_local_captions_of_each_plan_type():
    assert local_captions(RECOLOUR) == ("a red square", "a blue square")
    assert local_captions(REMOVE) == ("a red square", "an empty background")
    add = EditPlan("add", "add a green star at the top left", value="a green star", location="at the top left")
    assert local_captions(add) == ("an empty background", "a green star at the top left")
    with_captions = EditPlan("colour", "make the square blue", entity="the square", value="blue",
                             source_caption="a red square on white", target_caption="a blue square on white")
    assert local_captions(with_captions) == ("a red square on white", "a blue square on white")


def test_a_caption_method_runs_from_an_instruction_alone(editor, tiny_pipeline_dir, test_image):
    model = tiny_pipeline_dir("t2i")
    request = EditRequest(test_image, instruction="make the red square blue", method="sdedit", model=model,
                          params={"num_inference_steps": 4})
    result = editor.edit(request)
    direct = editor.edit(EditRequest(test_image, source="a red square", target="a blue square", method="sdedit",
                                     model=model, params={"num_inference_steps": 4}))
    np.testing.assert_array_equal(np.asarray(result.image), np.asarray(direct.image))  # the plan's captions
    record = result.record
    assert record.instruction == "make the red square blue" and record.planner == "scripted"
    assert [t["target"] for t in record.turns] == ["a blue square"] and record.plans == [RECOLOUR.to_dict()]
    assert EditRecord.from_dict(record.to_dict()) == record


def test_instruction_methods_read_the_users_words_unless_asked_to_plan(editor, tiny_pipeline_dir, test_image):
    model = tiny_pipeline_dir("ip2p")
    params = {"num_inference_steps": 3}
    raw = editor.edit(EditRequest(test_image, instruction="make the red square blue", model=model, params=params))
    assert raw.record.planner is None and editor.planner.calls == []
    planned = editor.edit(EditRequest(test_image, instruction="make the red square blue", model=model,
                                      params=params, plan=True))
    assert planned.record.planner == "scripted" and len(planned.record.turns) == 1


def test_a_compound_request_is_one_turn_per_plan_with_one_record(editor, tiny_pipeline_dir, test_image):
    model = tiny_pipeline_dir("ip2p")
    params = {"num_inference_steps": 3}
    chained = editor.edit(EditRequest(test_image, instruction="make the red square blue and remove it", model=model,
                                      params=params, plan=True, seed=5))
    first = editor.edit(EditRequest(test_image, instruction=RECOLOUR.instruction, model=model, params=params, seed=5))
    second = editor.edit(EditRequest(first.image, instruction=REMOVE.instruction, model=model, params=params, seed=5))
    np.testing.assert_array_equal(np.asarray(chained.image), np.asarray(second.image))
    record = chained.record
    assert [t["instruction"] for t in record.turns] == [RECOLOUR.instruction, REMOVE.instruction]
    assert record.unet_calls == first.record.unet_calls + second.record.unet_calls
    assert record.instruction == "make the red square blue and remove it"


def test_a_grounded_edit_is_confined_to_the_entity(editor, tiny_pipeline_dir, test_image):
    grounder = BoxGrounder((8, 8, 20, 20))
    _editor_with_grounder(editor, grounder)
    model = tiny_pipeline_dir("ip2p")
    params = {"num_inference_steps": 3}
    grounded = editor.edit(EditRequest(test_image, instruction="make the red square blue", model=model, seed=0,
                                       params=params, ground="auto",
                                       ground_options={"dilation": 2, "paste_back": False}))
    assert grounder.phrases == ["the red square"]
    mask = np.asarray(grounded.mask) > 127
    expected = np.zeros((32, 32), dtype=bool)
    expected[6:22, 6:22] = True  # the box grown by 2 pixels
    np.testing.assert_array_equal(mask, expected)
    turn = grounded.record.turns[0]
    assert grounded.record.mask_source == "grounded" and turn["grounding"]["backend"] == "box"
    assert turn["grounding"]["dilation"] == 2
    # the same edit with that mask given by hand is the same image: grounding only chose the mask
    by_hand = editor.edit(EditRequest(test_image, instruction=RECOLOUR.instruction, model=model, params=params,
                                      mask=grounded.mask, seed=0))
    np.testing.assert_array_equal(np.asarray(grounded.image), np.asarray(by_hand.image))
    # by default the input's own pixels are pasted back outside the mask (the feather lies inside): exactly kept
    pasted = editor.edit(EditRequest(test_image, instruction="make the red square blue", model=model, seed=0,
                                     params=params, ground="auto", ground_options={"dilation": 2}))
    assert pasted.record.turns[0]["grounding"]["paste_back"] is True
    np.testing.assert_array_equal(np.asarray(pasted.image)[~mask], np.asarray(test_image)[~mask])
    np.testing.assert_array_equal(np.asarray(pasted.image)[9:19, 9:19], np.asarray(by_hand.image)[9:19, 9:19])
    seam = np.asarray(pasted.image)[6:22, 6:22].astype(int)
    assert (seam != np.asarray(test_image)[6:22, 6:22]).any()  # the edit shows inside the mask


def test_an_entity_that_is_not_found_is_a_clear_error(editor, tiny_pipeline_dir, test_image):
    _editor_with_grounder(editor, BoxGrounder(None))
    with pytest.raises(InvalidRequestError) as excinfo:
        editor.edit(EditRequest(test_image, instruction="make the red square blue", model=tiny_pipeline_dir("ip2p"),
                                ground="auto"))
    message = str(excinfo.value)
    assert "could not find 'the red square'" in message and "ground='off'" in message
    assert excinfo.value.field == "ground" and excinfo.value.suggest == {"ground": "off"}


def test_grounding_without_planning_is_refused(editor, test_image):
    with pytest.raises(InvalidRequestError) as excinfo:
        editor.edit(EditRequest(test_image, instruction="make it blue", plan=False, ground="auto"))
    assert excinfo.value.field == "ground"


def test_an_addition_is_confined_to_the_place_it_names(tiny_pipeline_dir, test_image):
    from instructedit.grounding.regions import location_cells, location_mask

    assert location_cells("at the top left") == {(0, 0)}
    assert location_cells("on the left") == {(0, 0), (1, 0), (2, 0)}
    assert location_cells("in the centre") == {(1, 1)} and location_cells("next to the dog") is None
    add = EditPlan("add", "add a star at the top left", value="star", location="at the top left")
    editor = Editor(device="cpu", planner=ScriptedPlanner({"add a star at the top left": [add]}))
    grounder = BoxGrounder((0, 0, 32, 32))
    editor.add_grounder(grounder, default=True)
    result = editor.edit(EditRequest(test_image, instruction="add a star at the top left", ground="auto", seed=0,
                                     model=tiny_pipeline_dir("ip2p"), params={"num_inference_steps": 3},
                                     ground_options={"dilation": 0}))
    assert grounder.phrases == []  # a place, not an entity: no grounder is asked
    np.testing.assert_array_equal(np.asarray(result.mask), np.asarray(location_mask("at the top left", (32, 32))))
    assert result.record.turns[0]["grounding"]["backend"] == "location"
    outside = np.asarray(result.mask) == 0
    assert outside.any() and not outside.all()


def test_a_grounded_caption_edit_keeps_the_users_captions(editor, tiny_pipeline_dir, test_image):
    _editor_with_grounder(editor, BoxGrounder((8, 8, 20, 20)))
    model, params = tiny_pipeline_dir("t2i"), {"num_inference_steps": 4}
    grounded = editor.edit(EditRequest(test_image, instruction="make the red square blue", method="sdedit",
                                       source="a photo with a red square", target="a photo with a blue square",
                                       model=model, params=params, ground="auto", seed=1,
                                       ground_options={"paste_back": False}))
    turn = grounded.record.turns[0]
    assert (turn["source"], turn["target"]) == ("a photo with a red square", "a photo with a blue square")
    by_hand = editor.edit(EditRequest(test_image, source="a photo with a red square", method="sdedit",
                                      target="a photo with a blue square", model=model, params=params,
                                      mask=grounded.mask, seed=1))
    np.testing.assert_array_equal(np.asarray(grounded.image), np.asarray(by_hand.image))


def test_ip2p_blends_outside_the_mask_from_its_start_step(tiny_pipeline_dir, test_image):
    editor = Editor(device="cpu")
    model = tiny_pipeline_dir("ip2p")
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[8:20, 8:20] = 255
    mask = Image.fromarray(mask, "L")

    def run(**extra):
        params = {"num_inference_steps": 6, **extra}
        return np.asarray(editor.edit(EditRequest(test_image, instruction="make it blue", model=model, seed=3,
                                                  params=params, mask=mask if extra else None)).image, dtype=float)

    unmasked, every_step = run(), run(mask_blend_start=0.0)
    late, never = run(mask_blend_start=0.5), run(mask_blend_start=1.0)
    np.testing.assert_array_equal(never, unmasked)  # blending from past the last step is no blending
    outside = np.asarray(mask) == 0
    source = np.asarray(test_image, dtype=float)
    gaps = [np.abs(img - source)[outside].mean() for img in (every_step, late, unmasked)]
    assert gaps[0] <= gaps[1] <= gaps[2] and gaps[0] < gaps[2]  # later blending keeps less of the outside
    assert not np.array_equal(late, every_step)


class FixedCaptioner:
    name = "fixed"

    def __init__(self, text: str) -> None:
        self.text, self.images = text, []

    def caption(self, image: Image.Image) -> str:
        self.images.append(image.size)
        return self.text


def test_a_captioner_gives_caption_methods_the_whole_images_caption(tiny_pipeline_dir, test_image):
    from instructedit.instructions import RuleBasedPlanner

    model, params = tiny_pipeline_dir("t2i"), {"num_inference_steps": 4}
    captioner = FixedCaptioner("a large red square in the center on a white background")
    editor = Editor(device="cpu", planner=RuleBasedPlanner(), captioner=captioner)
    result = editor.edit(EditRequest(test_image, instruction="make the square blue", method="sdedit", model=model,
                                     params=params, seed=1))
    assert captioner.images == [test_image.size] and result.record.captioner == "fixed"
    turn = result.record.turns[0]
    assert turn["source"] == captioner.text and turn["target"] == captioner.text.replace("red", "blue")
    # the user's caption wins over the captioner; instruction methods are never captioned
    own = editor.edit(EditRequest(test_image, instruction="make the square blue", method="sdedit", model=model,
                                  params=params, seed=1, source="a red square"))
    assert own.record.captioner is None and own.record.turns[0]["source"] == "a red square"
    editor.edit(EditRequest(test_image, instruction="make the square blue", model=tiny_pipeline_dir("ip2p"),
                            params={"num_inference_steps": 2}, plan=True))
    assert len(captioner.images) == 1
    with pytest.raises(InvalidRequestError) as error:
        Editor(device="cpu", captioner="nonsense").edit(EditRequest(test_image, instruction="make the square blue",
                                                                    method="sdedit", model=model, params=params))
    assert error.value.field == "captioner"


def test_edit_regions_make_room_for_moves_and_growth():
    from instructedit.grounding.regions import GROWTH, edit_region, location_mask

    entity = np.zeros((30, 30), dtype=np.uint8)
    entity[2:8, 2:8] = 255
    mask = Image.fromarray(entity, "L")
    move = EditPlan("move", "move the square to the bottom right", entity="the square", value="bottom right")
    region = np.asarray(edit_region(move, mask))
    np.testing.assert_array_equal(region, np.maximum(entity, np.asarray(location_mask("bottom right", (30, 30)))))
    assert edit_region(EditPlan("move", "move the square up", entity="the square", value="up"), mask) is None
    bigger = np.asarray(edit_region(EditPlan("size", "make the square bigger", entity="the square", value="bigger"),
                                    mask)) > 0
    ys, xs = np.nonzero(bigger)
    assert xs.max() + 1 - xs.min() == pytest.approx(6 * GROWTH, abs=1) and bigger[entity > 0].all()
    for plan in (RECOLOUR, REMOVE, EditPlan("size", "make the square smaller", entity="the square", value="smaller")):
        assert edit_region(plan, mask) is mask
