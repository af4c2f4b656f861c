"""How well a planner reads instructions: its plans against labelled ones.

A labelled plan names the fields a careful reader expects (type, entity, value, location, old value); a plan
matches when every labelled field matches after light normalisation (lower case, no leading article, one
spelling for British/American forms, single spaces), so "the colour" and "color" or "Grey" and "gray" agree.
Labelled instructions come from a JSONL file (``tests/data/instructions_labelled.jsonl``) or from the reference
domain, whose edits say exactly what each instruction asks (:func:`domain_labels`).
"""

from __future__ import annotations

import json
import re
import string
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..domain.edits import template_values
from ..errors import DatasetError

COMPARED = ("type", "entity", "value", "location", "old_value")
_SPELLING = {"colour": "color", "grey": "gray", "centre": "center", "watercolour": "watercolor", "middle": "center"}
_DOMAIN_TYPES = {"add": "add", "remove": "remove", "replace": "replace", "change_colour": "colour",
                 "change_size": "size", "move": "move", "change_background": "background"}


def normal(text: Any) -> str | None:
    """``text`` compared loosely: lower case, no leading article, one spelling, single spaces."""
    if text is None:
        return None
    words = re.sub(r"[^\w' -]", " ", str(text).lower()).split()
    words = [_SPELLING.get(w, w) for w in words]
    while words and words[0] in ("the", "a", "an"):
        words = words[1:]
    return " ".join(words) or None


def plan_matches(expected: dict[str, Any], plan: Any) -> bool:
    """True when ``plan`` (an EditPlan or dict) agrees with every field ``expected`` labels."""
    got = plan if isinstance(plan, dict) else plan.to_dict()
    return all(normal(expected.get(key)) == normal(got.get(key)) for key in COMPARED if key in expected)


@dataclass
class Labelled:
    """One labelled instruction: its text, the plans expected in order, the caption given, and its group."""

    text: str
    plans: list[dict[str, Any]]
    caption: str | None = None
    group: str = ""


def read_labelled(path: str | Path) -> list[Labelled]:
    """The labelled instructions of a JSONL file (``text``, ``plans``, optional ``caption`` and ``set``)."""
    out = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(Labelled(row["text"], list(row["plans"]), row.get("caption"), row.get("set", "")))
        except (ValueError, KeyError, TypeError) as error:
            raise DatasetError(f"{path}:{number}: not a labelled instruction ({error}): each line needs "
                               "'text' and 'plans'") from error
    return out


def domain_labels(samples: Iterable[Any], group: str = "domain") -> list[Labelled]:
    """What each domain sample's instruction asks, from its exact edit and the template that worded it."""
    out = []
    for sample in samples:
        values = template_values(sample.source_scene, sample.edit)
        fields = {f for _, f, _, _ in string.Formatter().parse(sample.template) if f}
        kind = _DOMAIN_TYPES[sample.edit_type]
        plan: dict[str, Any] = {"type": kind}
        if kind == "add":
            plan.update(value=f"{values['size']} {values['colour']} {values['shape']}", location=values["pos"])
        elif kind == "background":
            plan.update(value=values["bg"])
        else:
            plan["entity"] = values["ref"]
            if kind == "replace":
                plan["value"] = f"{values['colour']} {values['shape']}" if "colour" in fields else values["shape"]
            elif kind == "colour":
                plan["value"] = values["colour"]
            elif kind == "size":
                plan["value"] = values["size"] if "size" in fields else \
                    {"up": "bigger", "down": "smaller"}.get(values["updown"]) if "updown" in fields \
                    else values["comparative"]
            elif kind == "move":
                plan["value"] = values["place"]
        out.append(Labelled(sample.instruction, [plan], None, group))
    return out


@dataclass
class PlannerScore:
    """Accuracy of a planner on labelled instructions: overall, per group and per edit type, and the misses."""

    total: int
    correct: int
    by_group: dict[str, tuple[int, int]]
    by_type: dict[str, tuple[int, int]]
    misses: list[tuple[str, list[dict[str, Any]], Any]]

    @property
    def accuracy(self) -> float:
        return self.correct / max(1, self.total)

    def group_accuracy(self, group: str) -> float:
        right, count = self.by_group.get(group, (0, 0))
        return right / max(1, count)


def score_planner(planner: Any, labelled: Sequence[Labelled]) -> PlannerScore:
    """Each instruction is right when the planner makes exactly the expected number of plans and each matches
    its label in order; a planner error counts as a miss (its message kept)."""
    by_group: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    misses = []
    correct = 0
    for item in labelled:
        try:
            plans = planner.plan(item.text, caption=item.caption)
            got: Any = [p.to_dict() for p in plans]
            right = len(plans) == len(item.plans) and all(plan_matches(e, p) for e, p in zip(item.plans, plans,
                                                                                               strict=True))
        except Exception as error:  # a planner's refusal is a miss, not a crash of the measurement
            got, right = f"{type(error).__name__}: {error}", False
        correct += right
        by_group[item.group][0] += right
        by_group[item.group][1] += 1
        kind = item.plans[0]["type"] if len(item.plans) == 1 else "compound"
        by_type[kind][0] += right
        by_type[kind][1] += 1
        if not right:
            misses.append((item.text, item.plans, got))
    return PlannerScore(len(labelled), correct, {k: tuple(v) for k, v in by_group.items()},
                        {k: tuple(v) for k, v in by_type.items()}, misses)
