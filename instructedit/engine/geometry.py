"""Latent geometry: pad an image to the VAE's multiple before encoding, crop the output back afterwards."""

from __future__ import annotations

import math

from PIL import Image

from ..errors import InvalidImageError, InvalidRequestError
from ..inputs.images import check_size


def pad_to_multiple(image: Image.Image, multiple: int = 8) -> tuple[Image.Image, tuple[int, int]]:
    """Pad ``image`` on the right and bottom to the next multiple of ``multiple``; return it and the original
    ``(width, height)`` for :func:`crop_to`.

    Latent diffusion VAEs downsample by 8, so Stable Diffusion needs sides divisible by 8 (pass 16, 32 or 64
    for models that need more). Resizing a 67x45 photo to 72x48 would resample every pixel and blur the parts
    that should stay untouched; padding leaves them bit-identical, and cropping the output restores the exact
    original size. The padding mirrors the border (numpy's ``"symmetric"`` mode: the edge pixel is repeated
    once, then the image continues mirrored), which looks like the image to the model, unlike a black or
    constant band. Works for any mode, masks included (a binary mask stays binary); a size that is already a
    multiple gives an unchanged copy.
    """
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise InvalidRequestError(f"multiple must be a positive integer, got {multiple!r}")
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImageError(f"cannot pad a {width}x{height} image: it has no pixels")
    padded = _mirror_extend(image, math.ceil(width / multiple) * multiple, horizontal=True)
    padded = _mirror_extend(padded, math.ceil(height / multiple) * multiple, horizontal=False)
    return padded, (width, height)


def crop_to(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Undo :func:`pad_to_multiple`: keep the top-left ``size`` = ``(width, height)`` of ``image``."""
    width, height = check_size(size, "size")
    if width > image.width or height > image.height:
        raise InvalidImageError(
            f"cannot crop a {image.width}x{image.height} image to the larger {width}x{height}: "
            "pass the size pad_to_multiple returned for this image"
        )
    return image.crop((0, 0, width, height))


def _mirror_extend(image: Image.Image, target: int, *, horizontal: bool) -> Image.Image:
    """Extend one axis to ``target`` by mirroring the trailing edge, repeatedly when the image is short."""
    current = image.copy()
    length = current.width if horizontal else current.height
    while length < target:
        step = min(target - length, length)
        if horizontal:
            strip = current.crop((length - step, 0, length, current.height))
            strip = strip.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            grown = current.crop((0, 0, length + step, current.height))  # keeps mode, palette and info
            grown.paste(strip, (length, 0))
        else:
            strip = current.crop((0, length - step, current.width, length))
            strip = strip.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
            grown = current.crop((0, 0, current.width, length + step))
            grown.paste(strip, (0, length))
        current, length = grown, length + step
    return current

