"""Instruction templates per edit type, split into training phrasings and held-out test phrasings.

The split is explicit and fixed: ``phrasings(edit_type, "train")`` lists the only wordings the training
data ever uses; ``phrasings(edit_type, "test")`` lists wordings that never occur in training. Every test
template contains at least one word that no training template of any edit type contains (a held-out verb
or spelling: "erase", "relocate", "color", "recolour" ...), so a model cannot have seen it.

Placeholders (filled by ``fill``):
  {ref}         the edited object's referring name in the source, "red circle"
  {size} {colour} {shape}   attributes of the object after the edit (size word, colour name, shape)
  {pos}         position phrase after the edit, "at the top left" / "on the left" / "in the center"
  {place}       position noun phrase after the edit, "the top left" / "the left" / "the center"
  {comparative} "bigger" or "smaller"            {updown}  "up" or "down"
  {bg} {old_bg} background colour after / before the edit
"""

from __future__ import annotations

import re
import string

from instructedit.errors import InvalidRequestError

from .edits import EDIT_TYPES

PHRASING_SPLITS: tuple[str, ...] = ("train", "test", "paraphrase")

_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "add": {
        "train": (
            "add a {size} {colour} {shape} {pos}",
            "put a {size} {colour} {shape} {pos}",
            "draw a {size} {colour} {shape} {pos}",
            "insert a {size} {colour} {shape} {pos}",
            "{pos}, add a {size} {colour} {shape}",
        ),
        "test": (
            "place a {size} {colour} {shape} {pos}",
            "there should be a {size} {colour} {shape} {pos}",
            "include a {size} {colour} {shape} {pos}",
        ),
    },
    "remove": {
        "train": (
            "remove the {ref}",
            "delete the {ref}",
            "take away the {ref}",
            "get rid of the {ref}",
        ),
        "test": (
            "erase the {ref}",
            "eliminate the {ref}",
            "take the {ref} out of the picture",
        ),
    },
    "replace": {
        "train": (
            "replace the {ref} with a {colour} {shape}",
            "turn the {ref} into a {colour} {shape}",
            "change the {ref} into a {shape}",
            "make the {ref} a {shape} instead",
        ),
        "test": (
            "swap the {ref} for a {colour} {shape}",
            "transform the {ref} into a {shape}",
            "convert the {ref} to a {colour} {shape}",
        ),
    },
    "change_colour": {
        "train": (
            "make the {ref} {colour}",
            "turn the {ref} {colour}",
            "change the colour of the {ref} to {colour}",
            "paint the {ref} {colour}",
        ),
        "test": (
            "change the color of the {ref} to {colour}",
            "recolour the {ref} {colour}",
            "dye the {ref} {colour}",
        ),
    },
    "change_size": {
        "train": (
            "make the {ref} {comparative}",
            "make the {ref} {size}",
            "change the size of the {ref} to {size}",
            "resize the {ref} to {size}",
        ),
        "test": (
            "scale the {ref} {updown}",
            "the {ref} should be {size}",
            "rescale the {ref} so that it is {size}",
        ),
    },
    "move": {
        "train": (
            "move the {ref} to {place}",
            "put the {ref} {pos}",
            "shift the {ref} to {place}",
            "drag the {ref} to {place}",
        ),
        "test": (
            "relocate the {ref} to {place}",
            "reposition the {ref} {pos}",
            "slide the {ref} over to {place}",
        ),
    },
    "change_background": {
        "train": (
            "make the background {bg}",
            "change the background to {bg}",
            "turn the background {bg}",
            "paint the background {bg}",
            "change the {old_bg} background to {bg}",
        ),
        "test": (
            "set the background to {bg}",
            "switch the background to {bg}",
            "use a {bg} background",
        ),
    },
}

#: Training-only augmentation wordings (``phrasings(t, "paraphrase")``), drawn alongside the "train" templates
#: when a training split is generated with ``paraphrases=True``: InstructPix2Pix's lesson that instruction
#: diversity is what makes wordings generalise. They use no word that only held-out templates use, so the
#: held-out test wordings stay unseen (a test checks this).
_PARAPHRASES: dict[str, tuple[str, ...]] = {
    "add": (
        "create a {size} {colour} {shape} {pos}",
        "paint a {size} {colour} {shape} {pos}",
        "i want a {size} {colour} {shape} {pos}",
        "add one more object: a {size} {colour} {shape} {pos}",
        "let a {size} {colour} {shape} appear {pos}",
        "{pos}, draw a {size} {colour} {shape}",
    ),
    "remove": (
        "remove the {ref} from the image",
        "wipe away the {ref}",
        "make the {ref} disappear",
        "the {ref} has to go",
        "delete the {ref} and keep the rest",
        "clear away the {ref}",
    ),
    "replace": (
        "exchange the {ref} with a {colour} {shape}",
        "instead of the {ref}, draw a {colour} {shape}",
        "change the {ref} to a {colour} {shape}",
        "put a {colour} {shape} where the {ref} was",
        "the {ref} becomes a {shape}",
        "trade the {ref} with a {shape}",
    ),
    "change_colour": (
        "colour the {ref} {colour}",
        "give the {ref} a {colour} colour",
        "make the {ref} look {colour}",
        "the {ref} needs to become {colour}",
        "tint the {ref} {colour}",
        "repaint the {ref} in {colour}",
    ),
    "change_size": (
        "make the {ref} a bit {comparative}",
        "the {ref} needs to get {comparative}",
        "give the {ref} a {size} size",
        "adjust the size of the {ref} to {size}",
        "make the {ref} go {updown} in size",
        "size the {ref} {updown}",
    ),
    "move": (
        "bring the {ref} to {place}",
        "push the {ref} to {place}",
        "carry the {ref} {pos}",
        "the {ref} goes {pos}",
        "transfer the {ref} to {place}",
        "send the {ref} to {place}",
    ),
    "change_background": (
        "colour the background {bg}",
        "give the image a {bg} background",
        "fill the background with {bg}",
        "repaint the background {bg}",
        "the background needs to become {bg}",
        "make the {old_bg} background {bg}",
    ),
}

#: Placeholders each edit type's templates may use; every template must pin down the edit completely.
REQUIRED_FIELDS: dict[str, tuple[frozenset[str], ...]] = {
    # each entry: alternatives; a template must contain all fields of at least one alternative
    "add": (frozenset({"size", "colour", "shape", "pos"}),),
    "remove": (frozenset({"ref"}),),
    "replace": (frozenset({"ref", "shape"}),),
    "change_colour": (frozenset({"ref", "colour"}),),
    "change_size": (frozenset({"ref", "size"}), frozenset({"ref", "comparative"}), frozenset({"ref", "updown"})),
    "move": (frozenset({"ref", "place"}), frozenset({"ref", "pos"})),
    "change_background": (frozenset({"bg"}),),
}


def _check(edit_type: str, split: str) -> None:
    if edit_type not in _TEMPLATES:
        raise InvalidRequestError(f"unknown edit type {edit_type!r}; choose one of {', '.join(EDIT_TYPES)}")
    if split not in PHRASING_SPLITS:
        raise InvalidRequestError(f"unknown phrasing split {split!r}; choose 'train', 'test' or 'paraphrase'")


def phrasings(edit_type: str, split: str = "train") -> tuple[str, ...]:
    """The instruction templates of ``edit_type`` for ``split`` ("train": used for training data;
    "test": held out, never used in training data; "paraphrase": extra training-only wordings, used when a
    training split is generated with ``paraphrases=True``). See the module docstring for the placeholders."""
    _check(edit_type, split)
    return _PARAPHRASES[edit_type] if split == "paraphrase" else _TEMPLATES[edit_type][split]


def template_fields(template: str) -> frozenset[str]:
    """Placeholder names used by a template."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)


def template_words(template: str) -> frozenset[str]:
    """Literal words of a template (placeholders and punctuation dropped, lower case)."""
    literal = "".join(text for text, _, _, _ in string.Formatter().parse(template))
    return frozenset(re.findall(r"[a-z]+", literal.lower()))


def fill(template: str, **values: str) -> str:
    """Fill a template; raises InvalidRequestError naming a missing placeholder."""
    try:
        return template.format(**values)
    except KeyError as exc:
        raise InvalidRequestError(f"template {template!r} needs a value for {exc.args[0]!r}") from exc
