"""All of a request's inputs read once: the image, the mask at the image's size, and the texts its method needs."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from PIL import Image

from ..errors import InvalidRequestError
from .images import DEFAULT_MAX_PIXELS, load_image
from .masks import load_mask
from .text import validate_text

TEXT_FIELDS = {"instruction": "instruction", "source": "source caption", "target": "target caption"}
"""The request's text fields and how messages call them."""

_MISSING_HINTS = {
    "instruction": "give an instruction such as 'make the circle red'",
    "target": "give a target caption (target) describing the edited image, and ideally a source caption (source)",
    "source": "give a source caption (source) describing the input image",
}


@dataclass
class RequestInputs:
    """A request's inputs, checked: RGB image, {0, 255} mask of the same size (or ``None``), cleaned texts."""

    image: Image.Image
    mask: Image.Image | None
    texts: dict[str, str | None]


def read_inputs(
    request, *, needs: Collection[str] = (), accepts_mask: bool = True, method: str = "this method",
    max_pixels: int | None = DEFAULT_MAX_PIXELS, instruction_methods: Sequence[str] = (),
) -> RequestInputs:
    """Read and check ``request``'s image, mask and texts against what its method ``needs``.

    ``request`` is anything with ``image``, ``mask``, ``instruction``, ``source`` and ``target`` attributes
    (an :class:`~instructedit.types.EditRequest`). Texts are checked first (no file is opened for a request
    that cannot run), then the image, then the mask against the image's size. ``instruction_methods`` (the
    methods that take an instruction) are suggested when a caption method got only an instruction.
    """
    texts = check_texts(request, needs, method=method, instruction_methods=instruction_methods)
    if request.mask is not None and not accepts_mask:
        raise InvalidRequestError(
            f"{method} does not take a mask: leave the request's mask out or choose a method that takes one",
            field="mask",
        )
    image = load_image(request.image, max_pixels=max_pixels)
    mask = load_mask(request.mask, size=image.size, max_pixels=max_pixels) if request.mask is not None else None
    return RequestInputs(image=image, mask=mask, texts=texts)


def check_texts(request, needs: Collection[str], *, method: str = "this method",
                instruction_methods: Sequence[str] = ()) -> dict[str, str | None]:
    """The request's cleaned texts; a clear error naming the field when one ``needs`` asks for is missing."""
    texts = {}
    for key, what in TEXT_FIELDS.items():
        raw = getattr(request, key)
        # A text the method needs may not be blank; a blank optional one means "not given".
        try:
            texts[key] = validate_text(raw, what=what, required=key in needs and raw is not None)
        except InvalidRequestError as exc:
            raise InvalidRequestError(str(exc), field=key) from None
    for need in sorted(needs):
        if texts[need] is None:
            extra, suggest = "", {}
            if need == "target" and texts["instruction"] and instruction_methods:
                extra = f" (an instruction alone is not enough for this method: use method='{instruction_methods[0]}', "
                extra += "or give captions)"
                suggest = {"method": instruction_methods[0]}
            article = "an" if TEXT_FIELDS[need][0] in "aeiou" else "a"
            raise InvalidRequestError(
                f"{method} needs {article} {TEXT_FIELDS[need]}{extra}: {_MISSING_HINTS[need]}",
                field=need, suggest=suggest,
            )
    return texts
