"""Edits on scenes: the seven edit types, sampling a feasible edit, applying it, and its exact edit mask."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from instructedit.errors import DatasetError, InvalidRequestError

from .captions import object_description
from .palette import BACKGROUND_COLOURS, OBJECT_COLOURS, SHAPES, position_phrase
from .render import check_size, dilate, interior, silhouette
from .scene import MAX_OBJECTS, Background, Scene, SceneObject, _pick, fits, free_cells, sample_object

EDIT_TYPES: tuple[str, ...] = (
    "add",
    "remove",
    "replace",
    "change_colour",
    "change_size",
    "move",
    "change_background",
)


@dataclass(frozen=True)
class Edit:
    """One edit. ``index``: the edited object in the source scene (None for add / change_background).
    ``obj``: the object after the edit (None for remove / change_background). ``background``: the new
    background (change_background only)."""

    type: str
    index: int | None = None
    obj: SceneObject | None = None
    background: Background | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "index": self.index,
            "object": self.obj.to_dict() if self.obj else None,
            "background": self.background.to_dict() if self.background else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Edit:
        try:
            obj = data.get("object")
            bg = data.get("background")
            edit = cls(
                type=str(data["type"]),
                index=None if data.get("index") is None else int(data["index"]),
                obj=SceneObject(**{k: obj[k] for k in ("shape", "colour", "size", "x", "y")}) if obj else None,
                background=Background(colour=bg["colour"], style=bg.get("style", "plain")) if bg else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(
                f"malformed edit spec ({exc!r}); expected {{'type', 'index', 'object', 'background'}}"
            ) from exc
        if edit.type not in EDIT_TYPES:
            raise DatasetError(f"unknown edit type {edit.type!r}; expected one of {', '.join(EDIT_TYPES)}")
        return edit


def apply_edit(scene: Scene, edit: Edit) -> Scene:
    """The scene after ``edit``."""
    objects = list(scene.objects)
    if edit.type == "add":
        if edit.obj is None:
            raise InvalidRequestError("an 'add' edit needs the object to add")
        return scene.with_objects([*objects, edit.obj])
    if edit.type == "change_background":
        if edit.background is None:
            raise InvalidRequestError("a 'change_background' edit needs the new background")
        return replace(scene, background=edit.background)
    if edit.index is None or not 0 <= edit.index < len(objects):
        raise InvalidRequestError(f"edit {edit.type!r} refers to object {edit.index}, scene has {len(objects)}")
    if edit.type == "remove":
        del objects[edit.index]
        return scene.with_objects(objects)
    if edit.type not in EDIT_TYPES or edit.obj is None:
        raise InvalidRequestError(f"edit {edit.type!r} needs the object after the edit")
    objects[edit.index] = edit.obj
    return scene.with_objects(objects)


def edited_objects(source: Scene, edit: Edit) -> tuple[SceneObject | None, SceneObject | None]:
    """(object before, object after) the edit; None where there is none (add / remove / background)."""
    before = source.objects[edit.index] if edit.index is not None else None
    return before, edit.obj


def _order(rng: np.random.Generator, n: int) -> list[int]:
    return [int(i) for i in rng.permutation(n)]


def sample_edit(rng: np.random.Generator, scene: Scene, edit_type: str) -> Edit | None:
    """A random feasible edit of ``edit_type`` on ``scene`` that keeps the scene valid and changes its
    caption, or None when this scene admits none."""
    objects = scene.objects
    n = len(objects)
    if edit_type == "add":
        if n >= MAX_OBJECTS:
            return None
        new = sample_object(rng, objects)
        return Edit("add", obj=new) if new else None
    if edit_type == "remove":
        return Edit("remove", index=int(rng.integers(n))) if n >= 2 else None
    if edit_type == "change_background":
        colours = [c for c in BACKGROUND_COLOURS if c != scene.background.colour]
        return Edit("change_background", background=replace(scene.background, colour=_pick(rng, colours)))
    for i in _order(rng, n):
        old = objects[i]
        if edit_type == "replace":
            options = [replace(old, shape=s) for s in SHAPES if s != old.shape]
        elif edit_type == "change_colour":
            options = [replace(old, colour=c) for c in OBJECT_COLOURS if c != old.colour]
        elif edit_type == "change_size":
            options = [replace(old, size="large" if old.size == "small" else "small")]
        elif edit_type == "move":
            cells = [c for c in free_cells(objects, ignore=i) if c != old.position]
            moved = [
                sample_object(rng, objects, ignore=i, shape=old.shape, colour=old.colour, size=old.size, cell=c)
                for c in cells
            ]
            options = [m for m in moved if m is not None]
        else:
            raise InvalidRequestError(f"unknown edit type {edit_type!r}; choose one of {', '.join(EDIT_TYPES)}")
        options = [o for o in options if fits(objects, o, ignore=i)]
        if options:
            return Edit(edit_type, index=i, obj=_pick(rng, options))
    return None


def default_dilation(size: int) -> int:
    """Mask dilation in pixels: 1 px at 64 x 64, scaled with resolution (2 px at 128)."""
    return max(1, round(check_size(size) / 64))


def edit_mask(source: Scene, edit: Edit, size: int = 64, dilation: int | None = None) -> np.ndarray:
    """Boolean (size, size) mask of the pixels the edit may change.

    Object edits: the union of the object's silhouettes before and after, dilated by ``dilation`` px.
    Background change: everything except the objects' fully covered interiors (eroded by ``dilation``).
    Source and target renders are identical outside this mask, pixel for pixel."""
    d = default_dilation(size) if dilation is None else int(dilation)
    if edit.type == "change_background":
        inside = np.zeros((size, size), dtype=bool)
        for obj in source.objects:
            inside |= interior(obj, size)
        return dilate(~inside, d)
    before, after = edited_objects(source, edit)
    region = np.zeros((size, size), dtype=bool)
    for obj in (before, after):
        if obj is not None:
            region |= silhouette(obj, size)
    return dilate(region, d)


def template_values(source: Scene, edit: Edit) -> dict[str, str]:
    """Values for the phrasing placeholders of ``edit`` on ``source`` (see ``phrasings``)."""
    before, after = edited_objects(source, edit)
    values = {"bg": source.background.colour, "old_bg": source.background.colour}
    if edit.background is not None:
        values["bg"] = edit.background.colour
    if before is not None:
        values["ref"] = before.name
    if after is not None:
        values.update(size=after.size, colour=after.colour, shape=after.shape)
        values.update(pos=position_phrase(after.position), place=position_phrase(after.position).split(" ", 1)[1])
        grow = before is not None and after.size == "large" and before.size == "small"
        values.update(comparative="bigger" if grow else "smaller", updown="up" if grow else "down")
    return values


def local_description(source: Scene, edit: Edit) -> str:
    """What the edited region shows after the edit ("a large blue circle at the top left", "a black
    background"), MagicBrush's local description."""
    if edit.obj is not None:
        return object_description(edit.obj)
    bg = edit.background.colour if edit.background is not None else source.background.colour
    return f"a {bg} background"
