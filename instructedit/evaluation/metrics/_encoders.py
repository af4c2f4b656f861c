"""Private helpers shared by the model-based metrics (clip, dino, structure): preprocessing as the references
do it, loading each encoder once per (model, device), per-sample argument checks, cosine similarity."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from PIL import Image

from ...engine.components import resolve_device
from ...errors import InvalidRequestError
from ...hub import looks_like_local_path
from ._images import ImageInput, as_image_tensor

T = TypeVar("T")


def _pil_rgb(image: ImageInput, name: str) -> Image.Image:
    """``image`` (any input ``_images`` accepts) as an RGB uint8 PIL image, the form the references resize."""
    if isinstance(image, Image.Image):
        as_image_tensor(image, name=name)  # validation only: same errors as every other metric
        return image if image.mode == "RGB" else image.convert("RGB")
    pixels = as_image_tensor(image, name=name)[0].permute(1, 2, 0).cpu()
    return Image.fromarray((pixels * 255.0).round().to(torch.uint8).numpy())


def _resize_and_center_crop(image: Image.Image, shorter_side: int, crop: int) -> Image.Image:
    """torchvision's ``Resize(shorter_side, BICUBIC)`` then ``CenterCrop(crop)`` on a PIL image (no torchvision)."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_long = int(shorter_side * long / short)
    new_size = (shorter_side, new_long) if width <= height else (new_long, shorter_side)
    if new_size != image.size:
        image = image.resize(new_size, Image.Resampling.BICUBIC)
    width, height = image.size  # callers keep crop <= shorter_side, so the crop always fits
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    return image.crop((left, top, left + crop, top + crop))


def _normalised_pixels(images: Sequence[Image.Image], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(N, 3, H, W) float32 tensor of same-size RGB images scaled to [0, 1] and normalised per channel."""
    pixels = torch.from_numpy(np.stack([np.asarray(image, dtype=np.float32) for image in images]) / 255.0)
    pixels = pixels.permute(0, 3, 1, 2)
    return (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _device(device: str | torch.device) -> torch.device:
    """``device`` resolved by the engine (:func:`~instructedit.engine.components.resolve_device`); a device
    string torch cannot parse becomes a one-line InvalidRequestError."""
    try:
        return resolve_device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidRequestError(f"unknown device {device!r}: pass 'cpu', 'cuda', 'cuda:1' or 'mps'.") from exc


def _model_key(name: str) -> str:
    """Cache key of a model name: local folders by absolute path, hub ids as given."""
    return str(Path(name).expanduser().resolve()) if looks_like_local_path(name) else name


class CachedLoader(Generic[T]):
    """An encoder loader that builds each (model, device) once: ``loader(name, device)`` -> the cached encoder.

    ``build(key, device)`` receives the model's cache key (a local folder as an absolute path, a hub id as given)
    and the resolved ``torch.device``; :meth:`clear` forgets everything built so far.
    """

    def __init__(self, build: Callable[[str, torch.device], T]) -> None:
        self._build = functools.cache(build)

    def __call__(self, name: str, device: str | torch.device = "cpu") -> T:
        return self._build(_model_key(name), _device(device))

    def clear(self) -> None:
        """Forget every cached encoder (frees their memory once nothing else holds them)."""
        self._build.cache_clear()


def _same_length(what: str, **sequences: Sequence[Any]) -> int:
    """The common length of the per-sample lists ``sequences``, or InvalidRequestError naming the problem."""
    for key, value in sequences.items():
        if isinstance(value, str | Image.Image | np.ndarray | torch.Tensor) or not isinstance(value, Sequence):
            raise InvalidRequestError(
                f"{what}: {key} is a {type(value).__name__}, not a list: pass one item per sample in a list."
            )
    lengths = {key: len(value) for key, value in sequences.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{count} {key}" for key, count in lengths.items())
        raise InvalidRequestError(f"{what} needs one of each per sample, got {described}: pass lists of equal length.")
    return next(iter(lengths.values()))


def _check_captions(captions: Sequence[str], name: str = "captions") -> None:
    """InvalidRequestError naming the first caption that is empty or not a string."""
    for i, text in enumerate(captions):
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequestError(f"{name}[{i}] is empty or not a string ({text!r}): pass a non-empty caption.")


def _cosine(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Row-wise cosine similarity, computed in float64 (as scipy's ``1 - distance.cosine``)."""
    a, b = a.double(), b.double()
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-12)
    return cos.tolist()
