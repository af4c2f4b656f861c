"""Referring phrases for the domain's scenes and the exact masks they name, for training and scoring grounding.

A phrase names objects by any of colour, shape, size and grid place ("the red circle", "the circle on the
left", "the small blue one", "the object at the top"), or the background; its mask is the union of the
silhouettes of every object that fits all it says (the background: every pixel no object touches), so an
ambiguous or absent reference has an exact answer too (several objects, or none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .palette import BACKGROUND_COLOURS, OBJECT_COLOURS, POSITIONS, SHAPES, position_phrase
from .render import silhouette
from .scene import Scene, SceneObject

NOUNS = ("object", "thing", "shape", "one")
VOCABULARY = tuple(sorted({*OBJECT_COLOURS, *BACKGROUND_COLOURS, *SHAPES, "small", "large", "bigger", "smaller",
                           *{w for p in POSITIONS for w in p.split()}, "background", *NOUNS}))
"""Words a referring phrase is made of (a grounder's vocabulary; other words carry no meaning here)."""


@dataclass(frozen=True)
class Reference:
    """What a phrase asks for: each attribute or ``None`` (any)."""

    colour: str | None = None
    shape: str | None = None
    size: str | None = None
    position: str | None = None
    background: bool = False

    def fits(self, obj: SceneObject) -> bool:
        return all(want is None or want == have for want, have in ((self.colour, obj.colour),
                                                                   (self.shape, obj.shape), (self.size, obj.size),
                                                                   (self.position, obj.position)))

    def mask(self, scene: Scene, size: int = 64) -> np.ndarray:
        """The exact (size, size) boolean mask of what this reference names in ``scene``."""
        region = np.zeros((size, size), dtype=bool)
        if self.background:
            for obj in scene.objects:
                region |= silhouette(obj, size)
            return ~region
        for obj in scene.objects:
            if self.fits(obj):
                region |= silhouette(obj, size)
        return region

    def phrase(self, rng: np.random.Generator) -> str:
        """One wording of this reference."""
        if self.background:
            return str(rng.choice(["the background", "background", "the backdrop background"]))
        words = [w for w in (self.size, self.colour) if w]
        noun = self.shape or str(rng.choice(NOUNS))
        text = " ".join([*words, noun])
        if self.position:
            text = f"{text} {position_phrase(self.position)}"
        return text if rng.random() < 0.3 else f"the {text}"


def random_reference(rng: np.random.Generator, scene: Scene) -> Reference:
    """A reference to an object of ``scene`` by a random subset of its attributes (at least colour, shape or
    place), to the background, or (one time in seven) to something the scene does not hold."""
    draw = rng.random()
    if draw < 0.12:
        return Reference(background=True)
    if draw < 0.26 or not scene.objects:  # likely absent: a random combination
        return Reference(colour=str(rng.choice(list(OBJECT_COLOURS))), shape=str(rng.choice(SHAPES)))
    obj = scene.objects[int(rng.integers(len(scene.objects)))]
    while True:
        keep = rng.random(4) < (0.8, 0.7, 0.25, 0.3)
        if keep[0] or keep[1] or keep[3]:
            break
    return Reference(colour=obj.colour if keep[0] else None, shape=obj.shape if keep[1] else None,
                     size=obj.size if keep[2] else None, position=obj.position if keep[3] else None)
