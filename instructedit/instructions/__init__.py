"""Instructions: what an edit request asks for, as edit plans (no torch here).

``plan(instruction, caption=None)`` reads a request with the offline rule-based planner
(:class:`RuleBasedPlanner`); :class:`LLMPlanner` asks any OpenAI-compatible chat-completions endpoint instead
(``planner_from_url``). A planner is anything with a ``name`` and ``plan(instruction, *, caption=None)``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .captions import edited_captions, local_captions
from .llm import LLMPlanner, PlannerError, PlannerFallbackWarning, planner_from_url
from .plan import MAX_PLANS, PLAN_TYPES, EditPlan, plan_schema
from .rules import RuleBasedPlanner


@runtime_checkable
class Planner(Protocol):
    """Turns one instruction into edit plans, applied in order."""

    name: str

    def plan(self, instruction: str, *, caption: str | None = None) -> list[EditPlan]: ...


_DEFAULT = RuleBasedPlanner()


def plan(instruction: str, *, caption: str | None = None) -> list[EditPlan]:
    """The edit plans of ``instruction`` by the rule-based planner; ``caption`` (the source image's caption)
    adds source/target captions and old values to each plan."""
    return _DEFAULT.plan(instruction, caption=caption)


__all__ = ["MAX_PLANS", "PLAN_TYPES", "EditPlan", "LLMPlanner", "Planner", "PlannerError", "PlannerFallbackWarning",
           "RuleBasedPlanner", "edited_captions", "local_captions", "plan", "plan_schema", "planner_from_url"]
