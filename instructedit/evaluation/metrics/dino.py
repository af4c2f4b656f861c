"""DINO similarity (MagicBrush) and the DINO ViT loader it shares with the structure distance.

MagicBrush (``evaluation/image_eval.py``) loads ``dino_vits16`` through torch.hub and scores a pair of images by
the cosine of the model outputs, i.e. the final-norm [CLS] embeddings, after the transform
``Resize(256, bicubic) -> CenterCrop(224) -> ToTensor -> Normalize(ImageNet mean/std)``. Here the same weights
come from ``facebook/dino-vits16`` (``transformers.ViTModel``, whose ``last_hidden_state[:, 0]`` is that [CLS]
embedding) and the transform is reproduced with PIL: the shorter side goes to ``image_size * 256 / 224`` (256 for
the real model), then the centre ``image_size`` square is cropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from ...errors import InvalidModelError
from ...hub import load_pretrained
from ._encoders import CachedLoader, _cosine, _normalised_pixels, _pil_rgb, _resize_and_center_crop, _same_length
from ._images import ImageInput

DINO_MODEL = "facebook/dino-vits16"
"""DINO ViT-S/16, used by MagicBrush for the DINO similarity."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, eq=False)
class DinoEncoder:
    """A DINO ``transformers.ViTModel`` on one device."""

    model: Any  # transformers.ViTModel
    device: torch.device

    @property
    def image_size(self) -> int:
        """Input resolution the position embeddings were trained at (224 for the DINO checkpoints)."""
        size = self.model.config.image_size
        return int(size if isinstance(size, int) else size[0])

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """MagicBrush's DINO transform of RGB PIL ``images``: (N, 3, S, S) float32, S = ``image_size``."""
        crop = self.image_size
        resize = int(crop * 256 / 224)
        return _normalised_pixels(
            [_resize_and_center_crop(image, resize, crop) for image in images], IMAGENET_MEAN, IMAGENET_STD
        )

    @torch.inference_mode()
    def cls_embeddings(
        self, images: Sequence[ImageInput], batch_size: int = 16, *, name: str = "images"
    ) -> torch.Tensor:
        """Final-norm [CLS] embeddings (MagicBrush's DINO features), (N, D) float32 on the CPU."""
        rgb = [_pil_rgb(image, f"{name}[{i}]") for i, image in enumerate(images)]
        chunks = []
        for start in range(0, len(rgb), batch_size):
            pixels = self.pixel_values(rgb[start : start + batch_size]).to(self.device)
            chunks.append(self.model(pixel_values=pixels).last_hidden_state[:, 0].float().cpu())
        return torch.cat(chunks)


def _build_dino(key: str, device: torch.device) -> DinoEncoder:
    from transformers import AutoConfig, ViTModel

    config = load_pretrained(key, AutoConfig.from_pretrained, what="DINO ViT")
    if config.model_type != "vit":
        raise InvalidModelError(
            f"'{key}' is a '{config.model_type}' model, not a ViT: pass a DINO ViT such as '{DINO_MODEL}'."
        )
    model = load_pretrained(
        key, lambda name: ViTModel.from_pretrained(name, config=config, add_pooling_layer=False), what="DINO ViT"
    )
    model = model.float().eval().requires_grad_(False).to(device)
    return DinoEncoder(model=model, device=device)


_DINO_LOADER = CachedLoader(_build_dino)


def load_dino(name: str = DINO_MODEL, device: str | torch.device = "cpu") -> DinoEncoder:
    """The DINO ViT ``name`` (hub id or local ``ViTModel`` folder) on ``device``, loaded once and cached.

    Raises ModelNotFoundError when the weights cannot be found or downloaded, InvalidModelError when ``name`` is
    not a ViT.
    """
    return _DINO_LOADER(name, device)


def clear_dino_cache() -> None:
    """Forget every cached DINO ViT."""
    _DINO_LOADER.clear()


def dino_similarity(
    images: Sequence[ImageInput],
    references: Sequence[ImageInput],
    *,
    model: str = DINO_MODEL,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
) -> list[float]:
    """DINO similarity (MagicBrush): cosine of the DINO [CLS] embeddings of ``images[i]`` and ``references[i]``.

    In [-1, 1], 1 for identical images.
    """
    if _same_length("DINO similarity", images=images, references=references) == 0:
        return []
    encoder = load_dino(model, device)
    return _cosine(
        encoder.cls_embeddings(images, batch_size, name="images"),
        encoder.cls_embeddings(references, batch_size, name="references"),
    )
