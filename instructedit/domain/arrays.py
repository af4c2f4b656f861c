"""Conversion of user images and masks to numpy arrays, with typed errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from instructedit.errors import InvalidImageError, InvalidMaskError

ImageLike = Image.Image | np.ndarray | str | Path
MaskLike = Image.Image | np.ndarray | str | Path


def _open(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except (OSError, ValueError) as exc:
        raise InvalidImageError(f"cannot read image {path}: {exc}") from exc


def to_rgb255(image: ImageLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """float64 (H, W, 3) in 0-255. Accepts a PIL image, a path, a uint8 (H, W, 3) array or a float
    (H, W, 3) array in [0, 1]. ``size`` (width, height): resize (bicubic) to it if different."""
    if isinstance(image, str | Path):
        image = _open(image)
    if isinstance(image, Image.Image):
        pil = image.convert("RGB")
    elif isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
            raise InvalidImageError(f"image array must have shape (H, W, 3), got {image.shape}")
        if image.dtype == np.uint8:
            pil = Image.fromarray(image)
        elif np.issubdtype(image.dtype, np.floating):
            if not np.isfinite(image).all() or image.min() < -1e-6 or image.max() > 1 + 1e-6:
                raise InvalidImageError("float image arrays must be finite and in [0, 1]; scale uint8 data by 1/255")
            pil = Image.fromarray(np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8))
            if size is None or pil.size == size:
                return np.clip(image.astype(np.float64), 0, 1) * 255.0
        else:
            raise InvalidImageError(f"image array dtype must be uint8 or float, got {image.dtype}")
    else:
        raise InvalidImageError(f"expected a PIL image, a path or a numpy array, got {type(image).__name__}")
    if size is not None and pil.size != tuple(size):
        pil = pil.resize(tuple(size), Image.Resampling.BICUBIC)
    return np.asarray(pil, dtype=np.float64)


def to_bool_mask(mask: MaskLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Boolean (H, W) mask, True = edit region. Accepts a PIL image or path (any mode; > 127 after
    conversion to "L" is True) or a 2-D bool / number array (> 0.5 for floats, > 127 for uint8).
    ``shape`` (H, W): the mask must have it (no resizing: a mask is exact)."""
    if isinstance(mask, str | Path):
        mask = _open(mask)
    if isinstance(mask, Image.Image):
        arr = np.asarray(mask.convert("L")) > 127
    elif isinstance(mask, np.ndarray):
        if mask.ndim != 2:
            raise InvalidMaskError(f"mask array must be 2-D (H, W), got shape {mask.shape}")
        if mask.dtype == bool:
            arr = mask
        elif mask.dtype == np.uint8:
            arr = mask > 127
        elif np.issubdtype(mask.dtype, np.number):
            arr = mask > 0.5
        else:
            raise InvalidMaskError(f"mask array dtype must be bool or numeric, got {mask.dtype}")
    else:
        raise InvalidMaskError(f"expected a PIL image, a path or a numpy array as mask, got {type(mask).__name__}")
    if shape is not None and arr.shape != tuple(shape):
        raise InvalidMaskError(f"mask has shape {arr.shape}, the image has {tuple(shape)}; resize the mask first")
    return arr
