"""The edit plan: what one edit request asks for, in a form every method, grounding and training can read.

A plan is what a planner (rule-based or a language model) makes of one instruction, or of one part of a compound
instruction ("make the circle blue and remove the square" gives two plans, applied one after another). It is
plain data: JSON in and out (:meth:`EditPlan.to_dict`, :meth:`EditPlan.from_dict`), with a JSON schema
(:func:`plan_schema`) that a language-model planner is asked to follow and is validated against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import InvalidRequestError

PLAN_TYPES: tuple[str, ...] = (
    "add",  # a new object: value = what ("a red star"), location = where
    "remove",  # entity = what goes
    "replace",  # entity becomes value ("a blue heart")
    "colour",  # entity's colour becomes value ("red"); old_value = the old colour when known
    "attribute",  # another attribute (material, texture, expression ...): value = the new attribute
    "size",  # entity's size: value = "bigger", "smaller" or a size word ("large")
    "move",  # entity goes to value (a position: "the top left")
    "background",  # the background becomes value ("white", "a beach")
    "style",  # the whole image: value = the style ("a watercolour painting")
)
"""The edit types of a plan. ``style`` edits the whole image; every other type is local to an entity or place."""

LOCAL_TYPES = frozenset(PLAN_TYPES) - {"style"}

MAX_PLANS = 8
"""Most plans one request may make: a compound request longer than this is refused (split it)."""


@dataclass(frozen=True)
class EditPlan:
    """One edit, understood.

    ``type``: one of :data:`PLAN_TYPES`. ``entity``: the phrase naming what is edited, as the user wrote it
    ("the small red circle on the left"; ``None`` for ``add``, ``background`` and ``style``). ``value``: the
    new value (a colour, an object, a position, a size, a style). ``location``: where, when said ("on the
    left"). ``old_value``: the value before the edit when known (the old colour, size, place or background;
    for ``remove`` and ``replace``, the object that was there as the caption describes it), which makes the edit
    reversible. ``instruction``: the edit in canonical words ("make the red circle blue"), what
    an instruction-following editor reads best. ``reverse``: the instruction that undoes it ("remove the dog"
    for "add a dog"), or ``None`` when the old state is unknown. ``source_caption``/``target_caption``: the
    image described before and after, when a source caption is known. ``text``: the user's words this plan came
    from.
    """

    type: str
    instruction: str
    entity: str | None = None
    value: str | None = None
    location: str | None = None
    old_value: str | None = None
    reverse: str | None = None
    source_caption: str | None = None
    target_caption: str | None = None
    text: str = ""

    def __post_init__(self) -> None:
        check_plan(self)

    @property
    def is_local(self) -> bool:
        """True when the edit touches an entity or a place, not the whole image (grounding applies)."""
        return self.type in LOCAL_TYPES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> EditPlan:
        """A plan from JSON data; a clear error naming the field when it does not follow :func:`plan_schema`."""
        if not isinstance(data, dict):
            raise InvalidRequestError(f"an edit plan must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequestError(f"edit plan has unknown field(s) {', '.join(unknown)}: "
                                      f"the fields are {', '.join(sorted(known))}", field=unknown[0])
        for name in ("type", "instruction"):
            if not data.get(name):
                raise InvalidRequestError(f"edit plan has no '{name}'", field=name)
        for name, value in data.items():
            if value is not None and not isinstance(value, str):
                raise InvalidRequestError(f"edit plan field '{name}' must be a string or null, got "
                                          f"{type(value).__name__}", field=name)
        return cls(**{k: v for k, v in data.items() if not (k == "text" and v is None)})


def check_plan(plan: EditPlan) -> None:
    """Refuse a plan whose type is unknown or that lacks what its type needs."""
    if plan.type not in PLAN_TYPES:
        raise InvalidRequestError(f"edit plan type {plan.type!r} is not one of {', '.join(PLAN_TYPES)}", field="type")
    needs_entity = plan.type in {"remove", "replace", "colour", "attribute", "size", "move"}
    if needs_entity and not plan.entity:
        raise InvalidRequestError(f"a '{plan.type}' edit plan needs the entity it edits", field="entity")
    needs_value = plan.type != "remove"
    if needs_value and not plan.value:
        raise InvalidRequestError(f"a '{plan.type}' edit plan needs the new value", field="value")
    if not plan.instruction.strip():
        raise InvalidRequestError("an edit plan needs its canonical instruction", field="instruction")


def plan_schema() -> dict[str, Any]:
    """The JSON schema of a list of plans (what a language-model planner is asked to answer)."""
    optional = {"type": ["string", "null"]}
    item = {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": list(PLAN_TYPES)},
            "instruction": {"type": "string", "description": "the edit in plain imperative words"},
            "entity": {**optional, "description": "the phrase naming what is edited"},
            "value": {**optional, "description": "the new colour, object, position, size or style"},
            "location": {**optional, "description": "where, when the request says so"},
            "old_value": {**optional, "description": "the value before the edit, when known"},
            "reverse": {**optional, "description": "the instruction that undoes the edit"},
            "source_caption": {**optional, "description": "the image before the edit"},
            "target_caption": {**optional, "description": "the image after the edit"},
            "text": {"type": "string", "description": "the user's words this edit came from"},
        },
        "required": ["type", "instruction"],
        "additionalProperties": False,
    }
    return {"type": "object", "properties": {"plans": {"type": "array", "items": item, "minItems": 1,
                                                       "maxItems": MAX_PLANS}},
            "required": ["plans"], "additionalProperties": False}
