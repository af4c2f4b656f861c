"""Grounding: an entity phrase -> a mask of where it is in the image (object-centric faithful editing).

``ground(image, phrase, backend=...)`` with one of the backends below; each is a :class:`Grounder`.

========================  ===========================================================================
``builtin``               the reference domain's trained grounder (offline default on domain images)
``attention``             cross-attention of the phrase's tokens in the loaded diffusion model
``noise-difference``      DiffEdit's noise-difference map between the phrase and the empty prompt
``clipseg``               CLIPSeg through transformers (``CIDAS/clipseg-rd64-refined``)
``grounded-sam``          GroundingDINO boxes refined by SAM through transformers
``person``                MediaPipe selfie segmentation: people and the background on real photos (offline)
========================  ===========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PIL import Image, ImageFilter

from ..errors import InvalidRequestError
from ..inputs import paste_outside
from .base import DEFAULT_THRESHOLD, Grounder, Grounding, binary_mask, check_phrase

GROUNDERS = {
    "builtin": "the reference domain's trained grounder (offline; the default on domain images)",
    "attention": "cross-attention of the phrase's tokens in the loaded diffusion model (no extra weights)",
    "noise-difference": "DiffEdit's noise-difference map between the phrase and the empty prompt",
    "clipseg": "CLIPSeg through transformers (CIDAS/clipseg-rd64-refined; needs the hub or a local copy)",
    "grounded-sam": "GroundingDINO boxes refined by SAM through transformers (needs the hub or local copies)",
    "person": "MediaPipe selfie segmentation for people and the background on photos (offline; the [person] "
              "extra); ground='auto' picks it for phrases that name a person",
}
"""Each grounding backend and what it is, as ``instructedit methods`` lists them."""
GROUNDER_NAMES = tuple(GROUNDERS)


def make_grounder(name: str, *, components=None, prompts=None, **options: Any) -> Grounder:
    """The backend called ``name``; ``components`` (a loaded diffusion model) for ``attention`` and
    ``noise-difference``. Other backends load their own weights on first use."""
    makers: dict[str, Callable[[], Grounder]] = {
        "builtin": lambda: _builtin(**options),
        "attention": lambda: _diffusion("CrossAttentionGrounder", components, prompts, options),
        "noise-difference": lambda: _diffusion("NoiseDifferenceGrounder", components, prompts, options),
        "clipseg": lambda: _import("open_vocabulary", "CLIPSegGrounder")(**options),
        "grounded-sam": lambda: _import("open_vocabulary", "GroundedSAMGrounder")(**options),
        "person": lambda: _import("person", "PersonGrounder")(**options),
    }
    if name not in makers:
        raise InvalidRequestError(f"unknown grounding backend '{name}': choose one of {', '.join(GROUNDER_NAMES)}",
                                  field="ground")
    return makers[name]()


def _import(module: str, name: str):
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)


def _builtin(**options: Any) -> Grounder:
    return _import("builtin", "DomainGrounder")(**options)


def _diffusion(cls: str, components, prompts, options: dict[str, Any]) -> Grounder:
    if components is None:
        raise InvalidRequestError("this grounding backend reads the loaded diffusion model: pass components=",
                                  field="ground")
    return _import("diffusion", cls)(components, prompts, **options)


def ground(image: Image.Image, phrase: str, *, backend: str | Grounder = "builtin", components=None,
           **options: Any) -> Grounding:
    """Where ``phrase`` is in ``image``: the mask (0/255, the image's size) and the backend's score."""
    grounder = backend if not isinstance(backend, str) else make_grounder(backend, components=components,
                                                                           **options)
    return grounder.ground(image.convert("RGB"), check_phrase(phrase))


def dilate(mask: Image.Image, pixels: int) -> Image.Image:
    """Grow a 0/255 mask by ``pixels`` in every direction (a square max filter): the edit may spill a little
    past the entity's outline (shadows, anti-aliasing, a slightly larger new object)."""
    if pixels <= 0:
        return mask
    return mask.filter(ImageFilter.MaxFilter(2 * int(pixels) + 1))


__all__ = ["DEFAULT_THRESHOLD", "GROUNDERS", "GROUNDER_NAMES", "Grounder", "Grounding", "binary_mask", "dilate",
           "ground", "make_grounder", "paste_outside"]
