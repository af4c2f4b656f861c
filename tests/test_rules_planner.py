"""The rule-based planner: accuracy on the domain's held-out wordings, on user wordings and on a labelled file of
wordings no template uses, and its behaviour on compound requests, captions, reverses and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from instructedit.domain import generate_samples
from instructedit.domain.chains import make_chain
from instructedit.domain.user_wordings import user_worded
from instructedit.errors import InvalidRequestError
from instructedit.evaluation.planning import domain_labels, plan_matches, read_labelled, score_planner
from instructedit.instructions import MAX_PLANS, RuleBasedPlanner, plan
from instructedit.instructions.wording import correct, normalise

LABELLED = Path(__file__).parent / "data" / "instructions_labelled.jsonl"


@pytest.fixture(scope="module")
def planner() -> RuleBasedPlanner:
    return RuleBasedPlanner()


@pytest.fixture(scope="module")
def held_out():
    return generate_samples("test", 350, seed=3, heldout_fraction=1.0)


def test_domain_held_out_wordings(planner, held_out):
    score = score_planner(planner, domain_labels(held_out))
    assert score.accuracy >= 0.95, score.misses[:5]
    assert min(right / count for right, count in score.by_type.values()) >= 0.9, score.by_type


def test_user_wordings_of_the_domain(planner, held_out):
    score = score_planner(planner, domain_labels(user_worded(held_out, seed=5)))
    assert score.accuracy >= 0.95, score.misses[:5]


def test_domain_training_and_paraphrase_wordings(planner):
    samples = generate_samples("train", 210, seed=4, heldout_fraction=0.0, paraphrases=True)
    assert score_planner(planner, domain_labels(samples)).accuracy >= 0.95


def test_labelled_file_of_unseen_wordings(planner):
    labelled = read_labelled(LABELLED)
    assert len(labelled) >= 150
    assert sum(len(item.plans) > 1 for item in labelled) >= 20
    score = score_planner(planner, labelled)
    misses = "\n".join(f"{text!r}: expected {want}, got {got}" for text, want, got in score.misses[:10])
    assert score.group_accuracy("domain") >= 0.95, misses
    assert score.group_accuracy("general") >= 0.85, misses
    assert score.accuracy >= 0.9, misses


def test_compound_requests_become_plans_in_order(planner):
    plans = planner.plan("Make the circle on the left red and the background white.")
    assert [p.type for p in plans] == ["colour", "background"]
    assert plans[0].entity == "the circle on the left" and plans[0].location == "on the left"
    assert plans[0].value == "red" and plans[1].value == "white"
    plans = planner.plan("could you make the circle blue and remove the square, then add a star at the top?")
    assert [p.type for p in plans] == ["colour", "remove", "add"]
    assert plans[2].value == "star" and plans[2].location == "at the top"
    # "and" inside one edit does not split it; the second of two objects borrows the verb
    assert [p.type for p in planner.plan("add a red and blue star")] == ["add"]
    assert [p.entity for p in planner.plan("remove the circle and the square")] == ["the circle", "the square"]


def test_caption_gives_captions_old_values_and_reverses(planner):
    caption = "a small yellow star on the right and a large red circle at the top left on a black background"
    first, second = planner.plan("make the circle blue, then remove the star", caption=caption)
    assert first.old_value == "red" and first.reverse == "make the circle red"
    assert first.source_caption == caption
    assert first.target_caption == caption.replace("large red circle", "large blue circle")
    assert second.source_caption == first.target_caption  # the chain's captions follow the edits
    assert second.target_caption == "a large blue circle at the top left on a black background"
    assert second.reverse == "add a small yellow star on the right"
    move, = planner.plan("move the star to the top", caption=caption)
    assert move.old_value == "right" and move.reverse == "move the star to the right"
    background, = planner.plan("make the background white", caption=caption)
    assert background.old_value == "black" and background.reverse == "make the background black"
    assert background.target_caption.endswith("on a white background")


def test_reverse_instructions_without_a_caption(planner):
    cases = {
        "remove the dog": "add a dog",
        "add a dog on the sofa": "remove the dog",
        "swap the star for a heart": "replace the heart with a star",
        "make the red circle blue": "make the blue circle red",
        "make the square bigger": "make the square smaller",
        "make the circle blue": None,  # the old colour is unknown
        "make it a watercolour painting": None,
    }
    for text, reverse in cases.items():
        (one,) = planner.plan(text)
        assert one.reverse == reverse, text


def test_reverse_of_a_plan_plans_back(planner):
    for text in ("remove the red circle", "replace the square with a blue heart", "make the red circle blue",
                 "make the small star large", "add a small green cross at the bottom"):
        (one,) = planner.plan(text)
        (back,) = planner.plan(one.reverse)
        assert back.type == one.type or {back.type, one.type} == {"add", "remove"}, (text, one.reverse)


def test_canonical_instruction_is_the_training_wording(planner):
    assert planner.plan("Could you pls recolour the yellow star BLUE?")[0].instruction == "make the yellow star blue"
    assert planner.plan("I'd like the red circle moved to the top left, please")[0].instruction == \
        "move the red circle to the top left"
    assert planner.plan("there should be a large green cross in the center")[0].instruction == \
        "add a large green cross in the center"


def test_typos_are_fixed_only_in_keywords():
    assert normalise("Remvoe teh cirlce!!") == "remove the circle"
    assert normalise("change the backgroud to grey") == "change the background to gray"
    for word in ("bed", "lake", "cat", "moved", "circles", "painting", "lighthouse"):
        assert correct(word) == word


def test_plans_for_domain_chains_match_each_turn(planner):
    for i in range(10):
        chain = make_chain("test", 2, i, turns=2)
        plans = planner.plan(" and ".join(s.instruction for s in chain))
        labels = domain_labels(chain)
        assert len(plans) == 2 and all(plan_matches(lab.plans[0], p) for lab, p in zip(labels, plans, strict=True))


def test_bad_instructions_are_refused_naming_the_field(planner):
    for text in ("", "   ", None):
        with pytest.raises(InvalidRequestError) as error:
            planner.plan(text)
        assert error.value.field == "instruction"
    with pytest.raises(InvalidRequestError, match="could not understand") as error:
        planner.plan("hello there")
    assert error.value.field == "instruction"
    too_many = " and ".join(f"remove the object {i}" for i in range(MAX_PLANS + 1))
    with pytest.raises(InvalidRequestError, match=f"at most {MAX_PLANS}"):
        planner.plan(too_many)


def test_module_level_plan_is_the_rule_based_planner():
    assert plan("remove the car")[0].to_dict() == RuleBasedPlanner().plan("remove the car")[0].to_dict()
