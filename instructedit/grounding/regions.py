"""Where a location hint points: "on the left", "at the top right", "in the center" -> a region of the image.

Used for edits that name a place but no entity (an addition "at the top left"). The image is read as a 3x3 grid,
as people describe places: a corner word pair is its cell, a side word is its third of the image ("on the
left" = the left column), "center"/"middle" the middle cell. Relative places ("next to the dog") give ``None``:
they need the other entity grounded, and the caller then edits the whole image.
"""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

_ROWS = {"top": 0, "upper": 0, "bottom": 2, "lower": 2}
_COLS = {"left": 0, "right": 2}


def location_cells(location: str) -> set[tuple[int, int]] | None:
    """The (row, col) cells of the 3x3 grid that ``location`` names, or ``None`` when it names no grid place."""
    words = re.findall(r"[a-z]+", location.lower())
    if any(w in ("next", "near", "beside", "behind", "above", "below", "under", "of", "between") for w in words):
        return None
    row = next((_ROWS[w] for w in words if w in _ROWS), None)
    col = next((_COLS[w] for w in words if w in _COLS), None)
    centre = any(w in ("center", "centre", "middle") for w in words)
    if row is None and col is None:
        return {(1, 1)} if centre else None
    if row is not None and col is not None:
        return {(row, col)}
    if row is not None:
        return {(row, c) for c in range(3)}
    return {(r, col) for r in range(3)}


def location_mask(location: str | None, size: tuple[int, int], margin: float = 0.08) -> Image.Image | None:
    """The region ``location`` names in an image of ``size`` = (width, height), grown by ``margin`` of the image
    side (an object placed there may overhang its cell), as a 0/255 mask; ``None`` when it names no grid place."""
    cells = location_cells(location or "")
    if not cells:
        return None
    width, height = size
    mask = np.zeros((height, width), dtype=np.uint8)
    for row, col in cells:
        y0, y1 = (row / 3 - margin) * height, ((row + 1) / 3 + margin) * height
        x0, x1 = (col / 3 - margin) * width, ((col + 1) / 3 + margin) * width
        mask[max(0, int(y0)):min(height, int(np.ceil(y1))), max(0, int(x0)):min(width, int(np.ceil(x1)))] = 255
    return Image.fromarray(mask, "L")


GROWTH = 1.6
"""How much wider and taller than the entity's box a "bigger" edit may draw (the reference domain's large objects
are 1.5 times its small ones)."""


def edit_region(plan, entity: Image.Image) -> Image.Image | None:
    """What ``plan`` may change, given its entity's 0/255 mask: the entity itself, plus the destination of a move
    (its grid region; a relative move such as "up" or "next to the dog" gives ``None``, the whole image) or the
    room a "bigger" object grows into (its box scaled by :data:`GROWTH` about its centre)."""
    if plan.type == "move":
        destination = location_mask(plan.value, entity.size)
        if destination is None:
            return None
        return Image.fromarray(np.maximum(np.asarray(entity), np.asarray(destination)), "L")
    if plan.type == "size" and plan.value in ("bigger", "large", "big", "huge", "larger", "giant"):
        pixels = np.asarray(entity)
        ys, xs = np.nonzero(pixels)
        if not len(xs):
            return entity
        cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
        half_w, half_h = (xs.max() + 1 - xs.min()) * GROWTH / 2, (ys.max() + 1 - ys.min()) * GROWTH / 2
        grown = pixels.copy()
        rows = slice(max(0, int(cy - half_h)), int(np.ceil(cy + half_h)))
        grown[rows, max(0, int(cx - half_w)):int(np.ceil(cx + half_w))] = 255
        return Image.fromarray(grown, "L")
    return entity
