"""Source captions for methods that edit from a caption change: an image -> a caption of what it shows.

``make_captioner(name)``: ``builtin`` (the reference domain's captioner, read off the trained built-in grounder)
or ``blip`` / a BLIP hub id or folder (``Salesforce/blip-image-captioning-base`` through transformers). The
user's own caption (``source=``) and a dataset's caption always win over a captioner.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from PIL import Image

from ..errors import InvalidRequestError

CAPTIONERS = {
    "builtin": "the reference domain's captioner, read off the trained built-in grounder (offline)",
    "blip": "BLIP through transformers (Salesforce/blip-image-captioning-base; or give any BLIP id or folder)",
}
"""Each captioner and what it is, as ``instructedit methods`` lists them."""
CAPTIONER_NAMES = tuple(CAPTIONERS)
BLIP_BASE = "Salesforce/blip-image-captioning-base"


@runtime_checkable
class Captioner(Protocol):
    """A caption provider. ``name`` is how requests and records call it."""

    name: str

    def caption(self, image: Image.Image) -> str:
        """A caption of ``image`` (RGB)."""
        ...


def make_captioner(name: str, **options: Any) -> Captioner:
    """``builtin``, ``blip`` (the base BLIP captioner) or a BLIP model id / folder (anything with a ``/``)."""
    if name == "builtin":
        from .domain import DomainCaptioner

        return DomainCaptioner(**options)
    if name == "blip" or "/" in name:
        from .blip import BlipCaptioner

        return BlipCaptioner(BLIP_BASE if name == "blip" else name, **options)
    raise InvalidRequestError(f"unknown captioner '{name}': choose one of {', '.join(CAPTIONER_NAMES)} or give a "
                              "BLIP model id or folder", field="captioner")


__all__ = ["BLIP_BASE", "CAPTIONERS", "CAPTIONER_NAMES", "Captioner", "make_captioner"]
