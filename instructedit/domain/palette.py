"""The vocabulary of the reference domain: named colours, background colours, shapes, sizes, grid positions.

Object colours and background colours are disjoint palettes chosen so that every object colour contrasts
with every background colour (RGB distance > 100 on a 0-255 scale) and object colours are well separated
from each other (pairwise distance > 99, red / orange being the closest pair), so that nearest-colour
naming is unambiguous. Background colours are > 65 apart (white / beige the closest).
"""

from __future__ import annotations

import numpy as np

#: Object colours: name -> sRGB (0-255).
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (250, 230, 30),
    "purple": (140, 40, 190),
    "orange": (245, 125, 15),
    "cyan": (20, 210, 220),
    "pink": (255, 120, 200),
    "brown": (130, 75, 30),
}

#: Background colours: name -> sRGB (0-255). Disjoint from the object colours.
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (25, 25, 25),
    "gray": (150, 150, 150),
    "beige": (235, 220, 185),
}

#: Background textures. Every style keeps the named colour as its mean, with a small amplitude.
BACKGROUND_STYLES: tuple[str, ...] = ("plain", "gradient_v", "gradient_h", "stripes")

#: Shapes, each drawn upright and touching all four sides of a square bounding box.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")

#: Size words -> half the side of the object's bounding box, as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.115, "large": 0.175}

#: The 3x3 grid of coarse positions, row-major (top row first).
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip


def position_word(x: float, y: float) -> str:
    """The 3x3 grid word for a point in normalised image coordinates (x right, y down, both in [0, 1])."""
    col = min(2, max(0, int(x * 3.0)))
    row = min(2, max(0, int(y * 3.0)))
    return POSITIONS[row * 3 + col]


def position_cell(word: str) -> tuple[int, int]:
    """(row, col) of a grid word."""
    index = POSITIONS.index(word)
    return divmod(index, 3)


def position_phrase(word: str) -> str:
    """The prepositional phrase for a grid word: "at the top left", "on the left", "in the center"."""
    if word == "center":
        return "in the center"
    if word in ("left", "right"):
        return f"on the {word}"
    return f"at the {word}"


def _nearest(rgb: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    names = list(palette)
    table = np.asarray([palette[n] for n in names], dtype=np.float64)
    dist = np.linalg.norm(table - np.asarray(rgb, dtype=np.float64)[None, :], axis=1)
    return names[int(np.argmin(dist))]


def nearest_object_colour(rgb: np.ndarray | tuple[float, float, float]) -> str:
    """Name of the object colour nearest (RGB Euclidean, 0-255 scale) to ``rgb``."""
    return _nearest(np.asarray(rgb), OBJECT_COLOURS)


def nearest_background_colour(rgb: np.ndarray | tuple[float, float, float]) -> str:
    """Name of the background colour nearest (RGB Euclidean, 0-255 scale) to ``rgb``."""
    return _nearest(np.asarray(rgb), BACKGROUND_COLOURS)
