"""Short captions of one edit's entity before and after it, for caption-driven methods given only an
instruction and no caption of the image (DiffEdit-style short prompts: "a red circle" -> "a blue circle")."""

from __future__ import annotations

import re

from .plan import EditPlan

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
