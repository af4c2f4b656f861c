"""Scene specifications: a background and 1-3 objects, resolution-free, with layout rules and sampling.

Coordinates are normalised: ``x`` to the right and ``y`` downwards, both in [0, 1], and ``(x, y)`` is the
centre of the object's square bounding box, whose half side is ``SIZES[size]``. A valid scene keeps
objects inside the image, in distinct 3x3 grid cells (with the centre away from cell borders, so the
position word is unambiguous), separated by a gap (so anti-aliased silhouettes never touch), and with
unique (colour, shape) pairs (so "the red circle" always names exactly one object).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from instructedit.errors import DatasetError

from .palette import (
    BACKGROUND_COLOURS,
    BACKGROUND_STYLES,
    OBJECT_COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    position_cell,
    position_word,
)

MAX_OBJECTS = 3
EDGE_MARGIN = 0.03  # min distance from an object's bounding box to the image border
GAP = 0.03  # min gap between two objects' bounding boxes
CELL_MARGIN = 0.04  # min distance from an object's centre to its grid-cell border


@dataclass(frozen=True)
class SceneObject:
    """One object: ``shape`` in SHAPES, ``colour`` in OBJECT_COLOURS, ``size`` in SIZES, centre (x, y)."""

    shape: str
    colour: str
    size: str
    x: float
    y: float

    @property
    def half(self) -> float:
        """Half the side of the bounding box, as a fraction of the image side."""
        return SIZES[self.size]

    @property
    def position(self) -> str:
        """The 3x3 grid word of the centre ("top left" ... "bottom right")."""
        return position_word(self.x, self.y)

    @property
    def name(self) -> str:
        """The referring name, "red circle"."""
        return f"{self.colour} {self.shape}"

    def bbox(self) -> tuple[float, float, float, float]:
        """Normalised bounding box (x0, y0, x1, y1)."""
        h = self.half
        return (self.x - h, self.y - h, self.x + h, self.y + h)

    def to_dict(self) -> dict[str, Any]:
        return {"shape": self.shape, "colour": self.colour, "size": self.size, "x": self.x, "y": self.y}


@dataclass(frozen=True)
class Background:
    """Background colour (in BACKGROUND_COLOURS) and style (in BACKGROUND_STYLES)."""

    colour: str
    style: str = "plain"

    def to_dict(self) -> dict[str, Any]:
        return {"colour": self.colour, "style": self.style}


@dataclass(frozen=True)
class Scene:
    """A background and its objects. Object order is storage order only; captions sort by position."""

    background: Background
    objects: tuple[SceneObject, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"background": self.background.to_dict(), "objects": [o.to_dict() for o in self.objects]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        """Parse a scene written by ``to_dict``; raises DatasetError naming the bad field."""
        try:
            bg = data["background"]
            background = Background(colour=str(bg["colour"]), style=str(bg.get("style", "plain")))
            objects = tuple(
                SceneObject(
                    shape=str(o["shape"]),
                    colour=str(o["colour"]),
                    size=str(o["size"]),
                    x=float(o["x"]),
                    y=float(o["y"]),
                )
                for o in data["objects"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(
                f"malformed scene spec ({exc!r}); expected {{'background': {{'colour', 'style'}}, "
                "'objects': [{'shape', 'colour', 'size', 'x', 'y'}]}"
            ) from exc
        scene = cls(background=background, objects=objects)
        problems = vocabulary_problems(scene)
        if problems:
            raise DatasetError(f"invalid scene spec: {problems[0]}; use the names in instructedit.domain.palette")
        return scene

    def with_objects(self, objects: Sequence[SceneObject]) -> Scene:
        return replace(self, objects=tuple(objects))

    def find(self, colour: str, shape: str) -> int | None:
        """Index of the object with this colour and shape, or None."""
        for i, o in enumerate(self.objects):
            if o.colour == colour and o.shape == shape:
                return i
        return None


def vocabulary_problems(scene: Scene) -> list[str]:
    """Names outside the palettes (empty list when every name is known)."""
    problems = []
    if scene.background.colour not in BACKGROUND_COLOURS:
        problems.append(f"unknown background colour {scene.background.colour!r}")
    if scene.background.style not in BACKGROUND_STYLES:
        problems.append(f"unknown background style {scene.background.style!r}")
    for o in scene.objects:
        if o.shape not in SHAPES:
            problems.append(f"unknown shape {o.shape!r}")
        if o.colour not in OBJECT_COLOURS:
            problems.append(f"unknown object colour {o.colour!r}")
        if o.size not in SIZES:
            problems.append(f"unknown size {o.size!r}")
    return problems


def _separated(a: SceneObject, b: SceneObject) -> bool:
    need = a.half + b.half + GAP
    return abs(a.x - b.x) >= need or abs(a.y - b.y) >= need


def _placed_ok(o: SceneObject) -> bool:
    h = o.half
    if not (h + EDGE_MARGIN <= o.x <= 1 - h - EDGE_MARGIN and h + EDGE_MARGIN <= o.y <= 1 - h - EDGE_MARGIN):
        return False
    fx, fy = o.x * 3.0, o.y * 3.0
    m = CELL_MARGIN * 3.0
    return min(fx - np.floor(fx), np.ceil(fx) - fx) >= m - 1e-9 and min(fy - np.floor(fy), np.ceil(fy) - fy) >= m - 1e-9


def layout_problems(scene: Scene) -> list[str]:
    """Everything that breaks the layout rules (empty list for a valid scene)."""
    problems = vocabulary_problems(scene)
    if problems:
        return problems
    n = len(scene.objects)
    if not 1 <= n <= MAX_OBJECTS:
        problems.append(f"{n} objects (need 1-{MAX_OBJECTS})")
    for i, o in enumerate(scene.objects):
        if not _placed_ok(o):
            problems.append(f"object {i} ({o.name}) out of bounds or too close to a grid-cell border")
        for j in range(i):
            p = scene.objects[j]
            if o.position == p.position:
                problems.append(f"objects {j} and {i} share the grid cell {o.position!r}")
            if not _separated(o, p):
                problems.append(f"objects {j} and {i} are too close")
            if o.name == p.name:
                problems.append(f"two objects are both a {o.name}")
    return problems


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def sample_centre(rng: np.random.Generator, size: str, cell: str) -> tuple[float, float]:
    """A random centre inside grid cell ``cell`` for an object of ``size``, obeying margins (4 decimals)."""
    row, col = position_cell(cell)
    h = SIZES[size]

    def axis(k: int) -> float:
        # work on a 1e-4 lattice strictly inside the allowed interval, so JSON round trips are exact
        lo = int(np.ceil(max(k / 3.0 + CELL_MARGIN, h + EDGE_MARGIN) * 1e4)) + 1
        hi = int(np.floor(min((k + 1) / 3.0 - CELL_MARGIN, 1.0 - h - EDGE_MARGIN) * 1e4)) - 1
        return int(rng.integers(lo, hi + 1)) / 1e4

    return axis(col), axis(row)


def fits(objects: Sequence[SceneObject], candidate: SceneObject, ignore: int | None = None) -> bool:
    """Whether ``candidate`` can join ``objects`` (skipping index ``ignore``) without breaking a rule."""
    if not _placed_ok(candidate):
        return False
    for i, o in enumerate(objects):
        if i == ignore:
            continue
        if o.position == candidate.position or o.name == candidate.name or not _separated(o, candidate):
            return False
    return True


def free_cells(objects: Sequence[SceneObject], ignore: int | None = None) -> list[str]:
    """Grid cells not occupied by any object (skipping index ``ignore``), in grid order."""
    used = {o.position for i, o in enumerate(objects) if i != ignore}
    return [c for c in POSITIONS if c not in used]


def sample_object(
    rng: np.random.Generator,
    objects: Sequence[SceneObject],
    ignore: int | None = None,
    tries: int = 50,
    **fixed: Any,
) -> SceneObject | None:
    """A random object that fits among ``objects``; keyword arguments fix attributes (shape, colour, size,
    cell). Returns None when nothing fitting was found in ``tries`` attempts."""
    for _ in range(tries):
        shape = fixed.get("shape") or _pick(rng, SHAPES)
        colour = fixed.get("colour") or _pick(rng, list(OBJECT_COLOURS))
        size = fixed.get("size") or _pick(rng, list(SIZES))
        cells = [fixed["cell"]] if fixed.get("cell") else free_cells(objects, ignore)
        if not cells:
            return None
        x, y = sample_centre(rng, size, _pick(rng, cells))
        candidate = SceneObject(shape=shape, colour=colour, size=size, x=x, y=y)
        if fits(objects, candidate, ignore):
            return candidate
    return None


def sample_background(rng: np.random.Generator, exclude: str | None = None) -> Background:
    """A random background (plain 40 %, each textured style 20 %), colour different from ``exclude``."""
    colours = [c for c in BACKGROUND_COLOURS if c != exclude]
    u = float(rng.random())
    style = "plain" if u < 0.4 else BACKGROUND_STYLES[1 + min(2, int((u - 0.4) / 0.2))]
    return Background(colour=_pick(rng, colours), style=style)


def sample_scene(rng: np.random.Generator, num_objects: int) -> Scene:
    """A random valid scene with ``num_objects`` objects (1-3)."""
    if not 1 <= num_objects <= MAX_OBJECTS:
        raise ValueError(f"num_objects must be 1-{MAX_OBJECTS}, got {num_objects}")
    while True:
        objects: list[SceneObject] = []
        for _ in range(num_objects):
            o = sample_object(rng, objects)
            if o is None:
                break
            objects.append(o)
        if len(objects) == num_objects:
            return Scene(background=sample_background(rng), objects=tuple(objects))
