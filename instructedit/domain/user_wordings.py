"""Edit requests worded the way people write them, for evaluation only: no template of the domain's train,
test or paraphrase sets has these forms (a test checks it), and no training data ever uses them.

Polite forms, questions, "I'd like ...", "... please", American spellings, upper case, trailing punctuation and
one-letter typos, filled with the same placeholders as :mod:`instructedit.domain.phrasings`.
"""

from __future__ import annotations

import string
from dataclasses import replace

import numpy as np

from .edits import template_values
from .phrasings import fill

USER_WORDINGS: dict[str, tuple[str, ...]] = {
    "add": (
        "could you add a {size} {colour} {shape} {pos}?",
        "I'd like a {size} {colour} {shape} {pos}, please.",
        "Please put a {size} {colour} {shape} {pos}",
        "can you draw a {size} {colour} {shape} {pos} for me",
        "ADD A {size} {colour} {shape} {pos}!",
        "add a {size} {colour} {shape} {pos} pls",
    ),
    "remove": (
        "could you remove the {ref}?",
        "please get rid of the {ref}.",
        "I don't want the {ref} in the picture",
        "Remove the {ref}, please!",
        "can you delete the {ref}",
        "remvoe the {ref}",
    ),
    "replace": (
        "could you replace the {ref} with a {colour} {shape}?",
        "I'd like the {ref} swapped out for a {colour} {shape}",
        "please turn the {ref} into a {colour} {shape}.",
        "Can the {ref} become a {colour} {shape}?",
        "REPLACE THE {ref} WITH A {colour} {shape}",
        "replce the {ref} with a {colour} {shape}",
    ),
    "change_colour": (
        "could you make the {ref} {colour}?",
        "I'd like the {ref} to be {colour}, please",
        "please color the {ref} {colour}.",
        "Can you change the {ref} to {colour}?",
        "MAKE THE {ref} {colour}!",
        "mak the {ref} {colour}",
    ),
    "change_size": (
        "could you make the {ref} {comparative}?",
        "I'd like the {ref} {comparative}, please",
        "please make the {ref} {size}.",
        "Can the {ref} be {comparative}?",
        "MAKE THE {ref} {comparative}",
        "make teh {ref} {comparative}",
    ),
    "move": (
        "could you move the {ref} to {place}?",
        "I'd like the {ref} moved to {place}, please",
        "please put the {ref} {pos}.",
        "Can you shift the {ref} to {place}?",
        "MOVE THE {ref} TO {place}",
        "mvoe the {ref} to {place}",
    ),
    "change_background": (
        "could you make the background {bg}?",
        "I'd like a {bg} background, please",
        "please change the background to {bg}.",
        "Can the background be {bg}?",
        "MAKE THE BACKGROUND {bg}!",
        "change the backgroud to {bg}",
    ),
}


def user_worded(samples, seed: int = 0) -> list:
    """``samples`` with each instruction reworded by a user wording of its edit type (drawn with ``seed``); the
    scenes, edits, captions and masks are unchanged, so the domain's oracles still score the edits."""
    rng = np.random.default_rng(seed)
    out = []
    for sample in samples:
        templates = USER_WORDINGS[sample.edit_type]
        template = templates[int(rng.integers(len(templates)))]
        text = fill(template, **template_values(sample.source_scene, sample.edit))
        literal = "".join(part for part, _, _, _ in string.Formatter().parse(template))
        if literal.upper() == literal:  # an all-capitals wording is all capitals, values included
            text = text.upper()
        out.append(replace(sample, instruction=text, template=template, heldout_phrasing=True))
    return out
