"""Reading edit masks: any image -> mode ``"L"``, values {0, 255}, white = edit; bad sizes and empty masks refused."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import InvalidMaskError
from .images import (
    _SIXTEEN_BIT_MODES,
    DEFAULT_MAX_PIXELS,
    ImageSource,
    _convert,
    _flatten,
    _has_alpha,
    _open_decoded,
    _to_gray8,
    check_size,
)

MASK_THRESHOLD = 128
"""Mask values (0-255) at or above this (50 %) mean "edit"; values below mean "keep"."""

_BLACK = (0, 0, 0, 255)


def load_mask(
    source: ImageSource,
    *,
    size: tuple[int, int] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Load an edit mask as mode ``"L"`` with values {0, 255}: white (255) = edit, black (0) = keep.

    ``source`` is read like :func:`load_image` (path, bytes or PIL image; first frame; EXIF orientation
    applied). Then every pixel gets an 8-bit strength:

    * ``L``: its value; ``1``: 0 or 255; 16-bit and ``I``/``F`` masks: scaled to 8 bits like images;
    * RGB (and palette, CMYK...): the **largest** of R, G and B, so a stroke in any bright colour counts,
      not only white (a grayscale conversion would turn pure red into 30 % grey and drop it);
    * with transparency (RGBA, LA, PA, palette with a transparent colour): the pixel is first laid on black,
      i.e. strength = max(R, G, B) x alpha / 255. Opaque black/white masks read as their colours; strokes
      painted on a transparent layer are edited and the transparent rest is kept. Masks in the opposite
      convention (transparent = edit, as OpenAI's edit API uses) must be inverted first, e.g.
      ``ImageOps.invert(mask.getchannel("A"))``.

    Strengths at or above 50 % (128 of 255) become 255, the rest 0: soft or anti-aliased masks are
    thresholded, never passed through half-way.

    Args:
        size: the ``(width, height)`` of the image being edited; a mask of another size is refused rather
            than silently resized.

    Raises:
        InvalidMaskError: unreadable like :func:`load_image`, size differs from ``size``, or the mask is empty
            (nothing at or above 50 %, so nothing would be edited).
    """
    expected = check_size(size, "size") if size is not None else None
    mask, name = _open_decoded(source, max_pixels=max_pixels, error=InvalidMaskError, what="mask")
    if expected is not None and mask.size != expected:
        w, h = mask.size
        ew, eh = expected
        raise InvalidMaskError(
            f"mask {name} is {w}x{h} but the image is {ew}x{eh}: resize the mask to {ew}x{eh} "
            "(nearest-neighbour keeps it sharp) or pass the mask made for this image"
        )
    strength = _mask_strength(mask, name)
    binary = np.where(strength >= MASK_THRESHOLD, 255, 0).astype(np.uint8)
    if not binary.any():
        raise InvalidMaskError(
            f"mask {name} is empty (no pixel is 50 % white or brighter): nothing would be edited; "
            "paint the region to edit in white on black"
        )
    return Image.fromarray(binary)


def _mask_strength(mask: Image.Image, name: str) -> np.ndarray:
    """Per-pixel edit strength 0..255 (see :func:`load_mask` for the rules)."""
    if mask.mode in (*_SIXTEEN_BIT_MODES, "I", "F"):
        return np.asarray(_to_gray8(mask, name, InvalidMaskError, "mask"))
    if mask.mode == "L" and not _has_alpha(mask):
        return np.asarray(mask)
    if mask.mode == "1":
        return np.asarray(mask.convert("L"))
    if _has_alpha(mask):
        rgb = _flatten(mask, _BLACK, name, InvalidMaskError, "mask")
    else:
        rgb = _convert(mask, "RGB", name, InvalidMaskError, "mask")
    return np.asarray(rgb).max(axis=2)

