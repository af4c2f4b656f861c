"""Short captions of one edit's entity before and after it, for caption-driven methods given only an
instruction and no caption of the image (DiffEdit-style short prompts: "a red circle" -> "a blue circle")."""

from __future__ import annotations

import re

from .plan import EditPlan
from .wording import COLOURS

_ARTICLES = re.compile(r"^(?:the|a|an|this|that|these|those)\s+", re.IGNORECASE)
EMPTY = "an empty background"


def bare(phrase: str | None) -> str:
    """``phrase`` without a leading article ("the red circle" -> "red circle")."""
    return _ARTICLES.sub("", (phrase or "").strip())


def with_article(phrase: str) -> str:
    """``"red circle"`` -> ``"a red circle"`` (``"an"`` before a vowel); phrases with an article are kept."""
    phrase = phrase.strip()
    if not phrase or _ARTICLES.match(phrase + " "):
        return phrase
    return ("an " if phrase[0].lower() in "aeiou" else "a ") + phrase


def local_captions(plan: EditPlan) -> tuple[str, str]:
    """(source, target) captions of the edited entity or place; the plan's own captions when it has them."""
    if plan.source_caption and plan.target_caption:
        return plan.source_caption, plan.target_caption
    entity, value = bare(plan.entity), bare(plan.value)
    where = f" {plan.location}" if plan.location else ""
    if plan.type == "add":
        return EMPTY, with_article(value) + where
    if plan.type == "remove":
        return with_article(entity), EMPTY
    if plan.type == "replace":
        return with_article(entity), with_article(value)
    if plan.type in ("colour", "attribute"):
        old = bare(plan.old_value)
        if old and re.search(rf"\b{re.escape(old)}\b", entity):
            target = re.sub(rf"\b{re.escape(old)}\b", value, entity, count=1)
        else:
            target = f"{value} {entity}"
        return with_article(entity), with_article(target)
    if plan.type == "size":
        size = {"bigger": "large", "larger": "large", "smaller": "small"}.get(value, value)
        return with_article(entity), with_article(f"{size} {entity}")
    if plan.type == "move":
        place = plan.location or (value if value.startswith(("at ", "on ", "in ")) else f"at the {value}")
        return with_article(entity), f"{with_article(entity)} {place}"
    if plan.type == "background":
        old = bare(plan.old_value)
        return f"a {old} background" if old else "a background", f"a {value} background"
    return plan.source_caption or "a picture", with_article(value)


_PLACE_IN_CAPTION = (r"(?:(?:at|on|in) the (?:(?:top|bottom|upper|lower|middle)(?: (?:left|right))?"
                     r"|left|right|center|middle))")
_NOT_ADJECTIVE = r"(?!(?:and|on|at|in|with|of|the|a|an|near|next|behind|under|above)\b)"
def _without_location(phrase: str) -> str:
    return re.sub(r" (?:(?:at|on|in|to|near|next to|beside|above|below|under|behind) (?:the )?.+)$", "", bare(phrase))


def find_entity(caption: str, entity: str) -> re.Match | None:
    """Where the caption mentions ``entity`` ("a large red circle at the top left" for "the red circle"): the
    noun phrase with the entity's head noun whose words include all of the entity's, its place too if the entity
    names one; ``None`` when no phrase of the caption fits."""
    thing = _without_location(entity).split()
    if not thing:
        return None
    head, wanted = thing[-1], set(thing[:-1])
    place = entity[len(_without_location(entity)):].strip() if entity.startswith(("the ", "a ")) else ""
    pattern = rf"\b(?:a|an|the|one|two)\s+(?:{_NOT_ADJECTIVE}[\w-]+\s+){{0,4}}?{re.escape(head)}e?s?\b" \
              rf"(?:\s+{_PLACE_IN_CAPTION})?"
    best = None
    for match in re.finditer(pattern, caption):
        words = set(match.group(0).split())
        if not wanted <= words:
            continue
        fits_place = bool(place) and bare(place.split(" ", 1)[-1]) in match.group(0)
        if best is None or (fits_place and not best[0]):
            best = (fits_place, match)
    return best[1] if best else None


def _position_phrase(place: str) -> str:
    if place in ("center", "middle"):
        return "in the center"
    return f"on the {place}" if place in ("left", "right") else f"at the {place}"


def _with_object(caption: str, obj: str) -> str:
    if caption.startswith("an empty scene"):
        return obj + caption[len("an empty scene"):]
    background = re.search(r" on (?:a|an) [\w ]+ background$", caption)
    if background:
        objects = caption[: background.start()]
        objects = objects.replace(" and ", ", ")
        return f"{objects} and {obj}{caption[background.start():]}"
    return f"{caption} with {obj}"


def _without_span(caption: str, match: re.Match) -> str:
    start, end = match.span()
    before, after = caption[:start], caption[end:]
    if before.endswith(", "):
        out = before[:-2] + after
    elif before.endswith(" and "):
        head = before[:-5]
        out = (head[::-1].replace(" ,", " dna ", 1)[::-1] if ", " in head else head) + after
    elif after.startswith(", ") or after.startswith(" and "):
        out = before + after.split(" ", 2)[-1] if after.startswith(" and ") else before + after[2:]
    else:
        out = before + after
    out = out.strip()
    if not out or out.startswith("on "):
        out = f"an empty scene {out}".strip()
    return out


def edited_captions(fields: dict, caption: str) -> tuple[dict, str]:
    """``fields`` of one plan with its source and target captions (and the old value the caption tells), and
    the caption after the edit (the next plan's source). Unchanged fields and caption when the caption does not
    mention the edited entity."""
    kind, entity, value = fields["type"], fields.get("entity"), fields.get("value")
    fields = dict(fields)
    target = None
    if kind == "add":
        target = _with_object(caption, with_article(value) + (f" {fields['location']}" if fields.get("location")
                                                                else ""))
    elif kind == "background":
        found = re.search(r"\b(?:a|an) ((?:\w+ )?\w+) (?:background|backdrop)\b", caption)
        if found:
            fields["old_value"] = fields.get("old_value") or found.group(1)
            target = caption[: found.start()] + f"a {value} background" + caption[found.end():]
        else:
            target = f"{caption} on a {value} background"
    elif kind == "style":
        target = f"{with_article(value)} of {caption}"
    elif entity:
        match = find_entity(caption, entity)
        if match is None:
            return fields, caption
        span = match.group(0)
        head = _without_location(entity).split()[-1]
        if kind in ("remove", "replace"):  # what was there: the old value that makes the edit reversible
            fields["old_value"] = fields.get("old_value") or bare(span)
        if kind == "remove":
            target = _without_span(caption, match)
        else:
            new = span
            if kind == "replace":
                place = re.search(rf"\s+{_PLACE_IN_CAPTION}$", span)
                new = with_article(value) + (place.group(0) if place else "")
            elif kind == "colour":
                old = next((w for w in span.split() if w in COLOURS), None)
                fields["old_value"] = fields.get("old_value") or old
                new = re.sub(rf"\b{old}\b", value, span, count=1) if old else \
                    re.sub(rf"\b{re.escape(head)}", f"{value} {head}", span, count=1)
            elif kind == "attribute":
                new = re.sub(rf"\b{re.escape(head)}", f"{value} {head}", span, count=1)
            elif kind == "size":
                size = {"bigger": "large", "smaller": "small"}.get(value, value)
                old = next((w for w in span.split() if w in ("small", "large", "big", "tiny", "huge")), None)
                new = re.sub(rf"\b{old}\b", size, span, count=1) if old else \
                    re.sub(rf"\b{re.escape(head)}", f"{size} {head}", span, count=1)
            elif kind == "move":
                place = re.search(rf"\s+{_PLACE_IN_CAPTION}$", span)
                if place:
                    fields["old_value"] = fields.get("old_value") or place.group(0).strip().split(" the ", 1)[1]
                    new = span[: place.start()]
                new = f"{new} {_position_phrase(value)}"
            target = caption[: match.start()] + new + caption[match.end():]
    if target is None:
        return fields, caption
    fields.update(source_caption=caption, target_caption=target)
    return fields, target
