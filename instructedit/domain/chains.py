"""Chains of edits on one scene: several turns, each a :class:`DomainSample` whose source is the previous turn's
target, for multi-turn editing (drift over turns) and compound requests ("make the circle blue and remove the
square").

The turns of a chain change objects only (no background edit) and, by default, touch disjoint regions (their
exact edit masks do not overlap), so each turn's edit can be scored on the chain's final image with the domain's
oracle. In every chain the union of the masks is the only place the final image may differ from the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InvalidRequestError
from .captions import caption
from .edits import apply_edit, edit_mask, local_description, sample_edit, template_values
from .phrasings import fill, phrasings
from .samples import _SPLIT_CODES, DomainSample, _pick, caption_split, check_sample_args
from .scene import sample_scene

CHAIN_EDIT_TYPES = ("add", "remove", "replace", "change_colour", "change_size", "move")
_CHAIN_CODE = 0xC4A1
_ATTEMPTS = 2_000


def make_chain(split: str, seed: int, index: int, turns: int = 2, *, size: int = 64,
               edit_types: Sequence[str] | None = None, phrasing: str = "test",
               disjoint: bool = True) -> list[DomainSample]:
    """Chain ``index`` of (split, seed): ``turns`` edits, one after another, on one scene of ``split``, worded
    with ``phrasing`` templates ("test": held out; "train"). ``disjoint``: the turns' masks do not overlap, so
    each turn can be scored on the final image (long chains need ``False``: then score each turn on its own
    output). Depends on nothing but the arguments."""
    types, size = check_sample_args(split, seed, size, 1.0, list(edit_types or CHAIN_EDIT_TYPES), False)
    if "change_background" in types:
        raise InvalidRequestError("a chain edits objects only: leave change_background out of edit_types",
                                  field="edit_types")
    if isinstance(turns, bool) or not isinstance(turns, int) or not 1 <= turns <= 8:
        raise InvalidRequestError(f"turns must be an integer from 1 to 8, got {turns!r}", field="turns")
    rng = np.random.default_rng(np.random.SeedSequence([_CHAIN_CODE, _SPLIT_CODES[split], int(seed), int(index),
                                                        turns, int(disjoint)]))
    for _ in range(_ATTEMPTS):
        chain = _try_chain(rng, split, seed, index, turns, size, types, phrasing, disjoint)
        if chain is not None:
            return chain
    raise InvalidRequestError(f"could not draw a {turns}-turn chain of disjoint edits for {split}/{seed}/{index}: "
                              "use fewer turns", field="turns")  # pragma: no cover - rare for turns <= 5


def _try_chain(rng, split, seed, index, turns, size, types, phrasing, disjoint) -> list[DomainSample] | None:
    scene = sample_scene(rng, int(rng.integers(2, 4)))
    if caption_split(caption(scene)) != split:
        return None
    used = np.zeros((size, size), dtype=bool)
    out = []
    for turn in range(turns):
        edit_type = types[int(rng.integers(len(types)))]
        edit = sample_edit(rng, scene, edit_type)
        if edit is None:
            return None
        mask = edit_mask(scene, edit, size)
        target = apply_edit(scene, edit)
        if (disjoint and (mask & used).any()) or caption(target) == caption(scene):
            return None
        used |= mask
        template = _pick(rng, phrasings(edit_type, phrasing))
        out.append(DomainSample(
            id=f"chain_{split}_{seed}_{index:06d}_{turn}", split=split, index=int(index), seed=int(seed), size=size,
            edit_type=edit_type, instruction=fill(template, **template_values(scene, edit)), template=template,
            heldout_phrasing=phrasing == "test", source_caption=caption(scene), target_caption=caption(target),
            local_description=local_description(scene, edit), source_scene=scene, target_scene=target, edit=edit))
        scene = target
    return out


def chain_mask(chain: Sequence[DomainSample]) -> np.ndarray:
    """The union of the chain's exact edit masks: outside it the final image equals the input."""
    union = np.zeros((chain[0].size, chain[0].size), dtype=bool)
    for sample in chain:
        union |= sample.mask_array()
    return union
