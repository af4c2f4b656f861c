"""The grounding interface: an image and a phrase naming something in it -> a mask of where it is, and a score.

Every backend (cross-attention maps, DiffEdit's noise difference, open-vocabulary segmenters, the
built-in domain model) implements :class:`Grounder`; :func:`instructedit.grounding.ground` picks one by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from ..errors import InvalidRequestError

DEFAULT_THRESHOLD = 0.3
"""Below this score a grounding is "not found" (each backend's score is in [0, 1])."""


@dataclass
class Grounding:
    """Where ``phrase`` is in the image: ``mask`` (mode "L", 0/255, the image's size, white = the entity),
    ``score`` in [0, 1] (how sure the backend is that the phrase is there), the ``backend`` that found it, and
    backend-specific ``details`` (boxes, the soft map's threshold, the tokens used...)."""

    phrase: str
    mask: Image.Image
    score: float
    backend: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return bool(np.asarray(self.mask).any())

    def to_record(self) -> dict[str, Any]:
        """What an edit record keeps of a grounding (no pixels)."""
        area = float(np.asarray(self.mask).astype(bool).mean())
        return {"phrase": self.phrase, "backend": self.backend, "score": round(float(self.score), 4),
                "area": round(area, 4), **{k: v for k, v in self.details.items() if _jsonable(v)}}


@runtime_checkable
class Grounder(Protocol):
    """A grounding backend. ``name`` is how requests and records call it."""

    name: str

    def ground(self, image: Image.Image, phrase: str) -> Grounding:
        """The mask of ``phrase`` in ``image`` (RGB) with its score; an empty mask and score 0 when absent."""
        ...


def binary_mask(values: np.ndarray, size: tuple[int, int], threshold: float = 0.5) -> Image.Image:
    """A soft map (h x w, any resolution, values in [0, 1]) -> a 0/255 mask of ``size`` = (width, height)."""
    soft = Image.fromarray(np.clip(values * 255.0, 0, 255).astype(np.uint8), "L")
    if soft.size != tuple(size):
        soft = soft.resize(tuple(size), Image.Resampling.BILINEAR)
    return Image.fromarray(np.where(np.asarray(soft) >= threshold * 255, 255, 0).astype(np.uint8), "L")


def check_phrase(phrase: object) -> str:
    """A cleaned, non-empty phrase; a clear error otherwise."""
    if not isinstance(phrase, str) or not phrase.strip():
        raise InvalidRequestError(f"the phrase to ground must be non-empty text, got {phrase!r}: name the thing "
                                  "to find, e.g. 'the red circle'", field="ground")
    return " ".join(phrase.split())


def _jsonable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | type(None)) or (
        isinstance(value, list | tuple) and all(isinstance(v, int | float | str) for v in value))
