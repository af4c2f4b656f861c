"""Structure distance (PIE-Bench): how far the edit moved the image's layout, from DINO ViT self-similarity.

PIE-Bench (``evaluation/matrics_calculator.py``, copying Splice's ``VitExtractor``) takes the keys of the last
attention block of DINO ViT-B/8, for every token including [CLS], concatenates the heads, builds the cosine
self-similarity matrix of the tokens, and reports the mean squared difference of the two images' matrices.
0 means identical structure. Here:

* the keys come from a forward hook on the last layer's key projection of ``transformers.ViTModel``
  (``facebook/dino-vitb8``); DINO's fused ``qkv`` output sliced to its key third and reshaped head by head, as
  PIE-Bench does, is exactly that projection's output;
* preprocessing is PIE-Bench's, quirks included: the pixels stay in [0, 255] (PIE-Bench never divides by 255)
  and are multiplied by the optional mask, the shorter side is resized to 224 (the model's ``image_size``) with
  the longer side capped at 480 (kept at the ratio 480/224 for other sizes), bilinearly *without* antialiasing
  (torchvision 0.13 ``Resize`` on tensors, the version PIE-Bench pins), then ImageNet mean/std normalisation.
  ``antialias=True`` gives the torchvision >= 0.17 behaviour instead.

Difference from the torch.hub model: for inputs that are not 224x224 the position embeddings are interpolated
by transformers (bicubic to the target grid size) rather than by DINO's ``interpolate_pos_encoding`` (bicubic
by a scale factor with a +0.1 offset), which differs slightly; PIE-Bench's 512x512 images are resized to
224x224 and need no interpolation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ...errors import InvalidModelError
from ._encoders import _same_length
from ._images import ImageInput, MaskInput, load_pair, mask_to_tensor, unedited_region
from .dino import IMAGENET_MEAN, IMAGENET_STD, DinoEncoder, load_dino

STRUCTURE_MODEL = "facebook/dino-vitb8"
"""DINO ViT-B/8, used by PIE-Bench for the structure distance."""


def _resized_size(width: int, height: int, size: int, max_size: int) -> tuple[int, int]:
    """(width, height) of torchvision's ``Resize(size, max_size=max_size)``: shorter side to ``size``."""
    short, long = min(width, height), max(width, height)
    new_short, new_long = size, int(size * long / short)
    if new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_short, new_long) if width <= height else (new_long, new_short)


def _structure_pixels(image: torch.Tensor, size: int, antialias: bool) -> torch.Tensor:
    """PIE-Bench's structure preprocessing of a (1, 3, H, W) float image in [0, 255]: (3, h, w) float32."""
    height, width = image.shape[-2:]
    new_width, new_height = _resized_size(width, height, size, int(size * 480 / 224))
    if (new_width, new_height) != (width, height):
        image = F.interpolate(
            image, size=(new_height, new_width), mode="bilinear", align_corners=False, antialias=antialias
        )
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((image - mean) / std)[0]


def _key_projection(model: torch.nn.Module) -> torch.nn.Module:
    """The key projection (``nn.Linear``) of the last attention layer of a ``transformers.ViTModel``."""
    suffixes = (".attention.k_proj", ".attention.attention.key")  # transformers >= 5, transformers 4
    keys = [module for name, module in model.named_modules() if name.endswith(suffixes)]
    if not keys:
        raise InvalidModelError("the ViT has no attention key projection; pass a DINO ViT such as facebook/dino-vitb8")
    return keys[-1]


def _cosine_self_similarity(tokens: torch.Tensor) -> torch.Tensor:
    """(B, T, T) cosine similarities between the T token vectors of each (T, D) item, norms clamped at 1e-8."""
    norms = tokens.norm(dim=-1, keepdim=True)
    return (tokens @ tokens.transpose(1, 2)) / (norms @ norms.transpose(1, 2)).clamp_min(1e-8)


@torch.inference_mode()
def _key_self_similarity(encoder: DinoEncoder, pixels: torch.Tensor) -> torch.Tensor:
    """(B, T, T) self-similarity of the last-layer keys of preprocessed same-size ``pixels`` (B, 3, h, w)."""
    captured: list[torch.Tensor] = []
    handle = _key_projection(encoder.model).register_forward_hook(
        lambda _module, _inputs, output: captured.append(output)
    )
    try:
        encoder.model(pixel_values=pixels.to(encoder.device), interpolate_pos_encoding=True)
    finally:
        handle.remove()
    return _cosine_self_similarity(captured[-1].float()).cpu()


def _self_similarities(encoder: DinoEncoder, tensors: list[torch.Tensor], batch_size: int) -> list[torch.Tensor]:
    """Key self-similarity of every preprocessed image, batching images of the same size together."""
    by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for index, tensor in enumerate(tensors):
        by_shape[tuple(tensor.shape)].append(index)
    results: list[torch.Tensor | None] = [None] * len(tensors)
    for indices in by_shape.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            for index, matrix in zip(
                chunk, _key_self_similarity(encoder, torch.stack([tensors[i] for i in chunk])), strict=True
            ):
                results[index] = matrix
    return [matrix for matrix in results if matrix is not None]


def structure_distance(
    images: Sequence[ImageInput],
    references: Sequence[ImageInput],
    *,
    edit_masks: Sequence[MaskInput | None] | None = None,
    model: str = STRUCTURE_MODEL,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    antialias: bool = False,
) -> list[float | None]:
    """Structure distance (PIE-Bench) between ``images[i]`` and ``references[i]``: >= 0, 0 for the same layout.

    The two images of a pair must have the same size (PIE-Bench asserts it). Without masks this is PIE-Bench's
    headline "Structure Distance" (usually reported multiplied by 10^3). With ``edit_masks`` (1/white = edited)
    it covers the unedited region, as every masked metric of this package: both images are multiplied by
    ``1 - mask`` first (PIE-Bench's ``structure_distance_unedit_part``); a mask covering the whole image leaves
    nothing to compare and gives ``None``. Pass ``1 - mask`` for PIE-Bench's ``..._edit_part``.
    """
    count = _same_length("structure distance", images=images, references=references)
    if edit_masks is not None:
        _same_length("structure distance", images=images, edit_masks=edit_masks)
    if count == 0:
        return []
    encoder = load_dino(model, device)
    tensors: list[torch.Tensor] = []
    undefined: set[int] = set()
    for i in range(count):
        pair = load_pair(images[i], references[i], names=(f"images[{i}]", f"references[{i}]"))
        mask = None if edit_masks is None else edit_masks[i]
        if mask is not None:
            kept = unedited_region(mask_to_tensor(mask, tuple(pair[1].shape[-2:]), name=f"edit_masks[{i}]"))
            if kept is None:
                undefined.add(i)
            else:
                pair = (pair[0] * kept.to(pair[0].device), pair[1] * kept.to(pair[1].device))
        for image in pair:  # PIE-Bench feeds the float pixels in [0, 255]
            tensors.append(_structure_pixels(image.cpu() * 255.0, encoder.image_size, antialias))
    matrices = _self_similarities(encoder, tensors, batch_size)
    return [None if i in undefined else F.mse_loss(matrices[2 * i], matrices[2 * i + 1]).item() for i in range(count)]
