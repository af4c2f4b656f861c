"""Deterministic captions: "a large red circle at the top left and a small blue square at the bottom right
on a white background". Objects are listed in grid order (top row first, left to right); the background
style is not mentioned (it is a texture of the named colour)."""

from __future__ import annotations

from .palette import POSITIONS, position_phrase
from .scene import Scene, SceneObject


def object_description(obj: SceneObject, with_position: bool = True) -> str:
    """ "a large red circle at the top left" (or without the position)."""
    text = f"a {obj.size} {obj.colour} {obj.shape}"
    return f"{text} {position_phrase(obj.position)}" if with_position else text


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(scene: Scene) -> str:
    """The caption of ``scene``: every object with size, colour, shape and grid position, then the background."""
    ordered = sorted(scene.objects, key=lambda o: (POSITIONS.index(o.position), o.shape, o.colour))
    background = f"a {scene.background.colour} background"
    if not ordered:
        return f"an empty scene on {background}"
    return f"{_join([object_description(o) for o in ordered])} on {background}"
