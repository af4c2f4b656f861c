"""CLIP metrics of image editing: CLIP-I, CLIP-T, CLIP directional similarity and CLIPScore.

Definitions follow the papers' own evaluation code:

* **CLIP-I** (MagicBrush ``eval_clip_i``, CLIP ViT-B/32): cosine of the CLIP image embeddings of two images.
* **CLIP-T** (MagicBrush ``eval_clip_t``, CLIP ViT-B/32): cosine of the image embedding and the caption embedding.
* **CLIP directional similarity** (InstructPix2Pix ``metrics/clip_similarity.py``, after Gal et al.; ViT-L/14):
  cosine of ``E_img(edited) - E_img(input)`` and ``E_txt(target) - E_txt(source)``, each embedding first
  L2-normalised as InstructPix2Pix does.
* **CLIPScore** (PIE-Bench ``calculate_clip_similarity``: torchmetrics ``CLIPScore`` with
  ``openai/clip-vit-large-patch14``): ``100 * max(cos(E_img, E_txt), 0)``; with a mask, the image is first
  multiplied by the 0/1 edit mask and truncated to uint8 (PIE-Bench's ``clip_similarity_target_image_edit_part``).

Embeddings are the projected CLIP features (``get_image_features``/``get_text_features`` of
``transformers.CLIPModel``, equal to OpenAI CLIP's ``encode_image``/``encode_text``). Images go through OpenAI
CLIP's own preprocessing, done here with PIL so the numbers do not depend on which image-processor backend
transformers picks: RGB, shorter side resized to the model's resolution (bicubic, long side truncated to an
integer), centre crop (offsets rounded as torchvision's ``CenterCrop``), scaled to [0, 1], normalised with the
OpenAI mean/std. This is bit-for-bit the ``clip.load`` transform MagicBrush uses and the PIL path of
transformers' ``CLIPImageProcessor`` that torchmetrics uses (which floors, rather than rounds, odd crop offsets:
a one-pixel shift on non-square images only). InstructPix2Pix instead squashes images to 224x224 with
``F.interpolate(bicubic)``: identical geometry for square images, a slightly different resampling kernel.
Captions are tokenized with the model's tokenizer, truncated to the text model's 77 positions keeping the end
token (as ``clip.tokenize(truncate=True)``).

Every metric takes per-sample lists and returns one value per sample. Images are any input ``._images`` accepts
(PIL, numpy, torch); non-PIL inputs are quantised to 8 bits first, as the references read 8-bit files. Models
are hub ids or local folders, loaded once per (model, device) and run in batches of ``batch_size`` images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ...errors import InvalidModelError
from ...hub import load_pretrained
from ._encoders import (
    CachedLoader,
    _check_captions,
    _cosine,
    _normalised_pixels,
    _pil_rgb,
    _resize_and_center_crop,
    _same_length,
)
from ._images import ImageInput, MaskInput, mask_to_tensor

CLIP_I_MODEL = "openai/clip-vit-base-patch32"
"""CLIP used by MagicBrush for CLIP-I and CLIP-T."""
CLIP_SCORE_MODEL = "openai/clip-vit-large-patch14"
"""CLIP used by PIE-Bench (torchmetrics' default) for CLIPScore."""
CLIP_DIRECTIONAL_MODEL = "openai/clip-vit-large-patch14"
"""CLIP used by InstructPix2Pix for the directional similarity."""

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# --- the CLIP encoder -------------------------------------------------------------------------------------


def _projected(output: Any) -> torch.Tensor:
    """Projected features from ``get_*_features``: a tensor (transformers 4) or ``.pooler_output`` (5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@dataclass(frozen=True, eq=False)
class ClipEncoder:
    """A CLIP model and its tokenizer on one device, giving L2-normalised embeddings in batches."""

    model: Any  # transformers.CLIPModel
    tokenizer: Any  # transformers CLIP tokenizer
    device: torch.device

    @property
    def image_size(self) -> int:
        """Input resolution of the vision tower (224 for ViT-B/32 and ViT-L/14)."""
        return int(self.model.config.vision_config.image_size)

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """OpenAI CLIP preprocessing of RGB PIL ``images`` (see the module docstring): (N, 3, S, S) float32."""
        size = self.image_size
        prepared = [_resize_and_center_crop(image, size, size) for image in images]
        return _normalised_pixels(prepared, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)

    @torch.inference_mode()
    def image_embeddings(
        self, images: Sequence[ImageInput], batch_size: int = 16, *, name: str = "images"
    ) -> torch.Tensor:
        """L2-normalised projected image embeddings, (N, D) float32 on the CPU; ``name`` labels input errors."""
        rgb = [_pil_rgb(image, f"{name}[{i}]") for i, image in enumerate(images)]
        chunks = []
        for start in range(0, len(rgb), batch_size):
            pixels = self.pixel_values(rgb[start : start + batch_size]).to(self.device)
            chunks.append(_projected(self.model.get_image_features(pixel_values=pixels)).float().cpu())
        return torch.nn.functional.normalize(torch.cat(chunks), dim=-1)

    @torch.inference_mode()
    def text_embeddings(self, texts: Sequence[str], batch_size: int = 16, *, name: str = "captions") -> torch.Tensor:
        """L2-normalised projected text embeddings, (N, D) float32 on the CPU; ``name`` labels input errors."""
        _check_captions(texts, name)
        max_length = int(self.model.config.text_config.max_position_embeddings)
        chunks = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            features = self.model.get_text_features(
                input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
            )
            chunks.append(_projected(features).float().cpu())
        return torch.nn.functional.normalize(torch.cat(chunks), dim=-1)


def _build_clip(key: str, device: torch.device) -> ClipEncoder:
    from transformers import AutoConfig, AutoTokenizer, CLIPModel

    config = load_pretrained(key, AutoConfig.from_pretrained, what="CLIP model")
    if config.model_type != "clip":
        raise InvalidModelError(
            f"'{key}' is a '{config.model_type}' model, not CLIP: pass a CLIP model such as '{CLIP_I_MODEL}'."
        )
    model = load_pretrained(key, lambda name: CLIPModel.from_pretrained(name, config=config), what="CLIP model")
    tokenizer = load_pretrained(key, AutoTokenizer.from_pretrained, what="CLIP tokenizer")
    model = model.float().eval().requires_grad_(False).to(device)
    return ClipEncoder(model=model, tokenizer=tokenizer, device=device)


_CLIP_LOADER = CachedLoader(_build_clip)


def load_clip(name: str = CLIP_I_MODEL, device: str | torch.device = "cpu") -> ClipEncoder:
    """The CLIP model ``name`` (hub id or local folder with model + tokenizer) on ``device``.

    Loaded once per (model, device) and cached; ``clear_clip_cache()`` releases them. Raises
    ModelNotFoundError when the weights cannot be found or downloaded, InvalidModelError when ``name`` is not a
    CLIP model.
    """
    return _CLIP_LOADER(name, device)


def clear_clip_cache() -> None:
    """Forget every cached CLIP model (frees their memory once nothing else holds them)."""
    _CLIP_LOADER.clear()


# --- the metrics ------------------------------------------------------------------------------------------


def clip_image_similarity(
    images: Sequence[ImageInput],
    references: Sequence[ImageInput],
    *,
    model: str = CLIP_I_MODEL,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
) -> list[float]:
    """CLIP-I (MagicBrush): cosine of the CLIP image embeddings of ``images[i]`` and ``references[i]``.

    In [-1, 1], 1 for identical images. MagicBrush compares the edited image with the ground-truth edit; the two
    may differ in size (each is preprocessed on its own).
    """
    if _same_length("CLIP-I", images=images, references=references) == 0:
        return []
    encoder = load_clip(model, device)
    return _cosine(
        encoder.image_embeddings(images, batch_size, name="images"),
        encoder.image_embeddings(references, batch_size, name="references"),
    )


def clip_text_similarity(
    images: Sequence[ImageInput],
    captions: Sequence[str],
    *,
    model: str = CLIP_I_MODEL,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
) -> list[float]:
    """CLIP-T (MagicBrush): cosine of the CLIP embeddings of ``images[i]`` and ``captions[i]``, in [-1, 1]."""
    if _same_length("CLIP-T", images=images, captions=captions) == 0:
        return []
    _check_captions(captions, "captions")
    encoder = load_clip(model, device)
    return _cosine(encoder.image_embeddings(images, batch_size), encoder.text_embeddings(captions, batch_size))


def clip_directional_similarity(
    input_images: Sequence[ImageInput],
    edited_images: Sequence[ImageInput],
    source_captions: Sequence[str],
    target_captions: Sequence[str],
    *,
    model: str = CLIP_DIRECTIONAL_MODEL,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
) -> list[float]:
    """CLIP directional similarity (InstructPix2Pix): does the image change follow the caption change?

    ``cos(e(edited) - e(input), t(target) - t(source))`` with L2-normalised embeddings ``e``/``t``, in [-1, 1].
    It is 0 when the images or the captions are identical (a zero direction).
    """
    count = _same_length(
        "CLIP directional similarity",
        input_images=input_images,
        edited_images=edited_images,
        source_captions=source_captions,
        target_captions=target_captions,
    )
    if count == 0:
        return []
    _check_captions(source_captions, "source_captions")
    _check_captions(target_captions, "target_captions")
    encoder = load_clip(model, device)
    edited = encoder.image_embeddings(edited_images, batch_size, name="edited_images")
    image_direction = edited - encoder.image_embeddings(input_images, batch_size, name="input_images")
    target = encoder.text_embeddings(target_captions, batch_size, name="target_captions")
    text_direction = target - encoder.text_embeddings(source_captions, batch_size, name="source_captions")
    return _cosine(image_direction, text_direction)


def _edited_part(image: ImageInput, edit_mask: MaskInput, index: int) -> np.ndarray | None:
    """PIE-Bench's ``np.uint8(image * mask)`` as (H, W, 3) uint8, or None when the mask selects nothing."""
    rgb = np.asarray(_pil_rgb(image, f"images[{index}]"), dtype=np.float64)
    mask = mask_to_tensor(edit_mask, rgb.shape[:2], name=f"edit_masks[{index}]")[0, 0].cpu().double().numpy()
    if not mask.any():
        return None
    return (rgb * mask[..., None]).astype(np.uint8)


def clip_score(
    images: Sequence[ImageInput],
    captions: Sequence[str],
    *,
    edit_masks: Sequence[MaskInput | None] | None = None,
    model: str = CLIP_SCORE_MODEL,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
) -> list[float | None]:
    """CLIPScore (PIE-Bench / torchmetrics): ``100 * max(cos(image, caption), 0)`` per pair, in [0, 100].

    With ``edit_masks`` (1/white = edited region) the score is PIE-Bench's "CLIP similarity of the edited part":
    each image is multiplied by its mask and truncated to uint8 before encoding. A sample whose mask selects
    nothing has no edited part and scores ``None`` (PIE-Bench writes "nan"); a ``None`` mask scores the whole image.
    """
    count = _same_length("CLIPScore", images=images, captions=captions)
    if edit_masks is not None:
        _same_length("CLIPScore", images=images, edit_masks=edit_masks)
    if count == 0:
        return []
    _check_captions(captions, "captions")
    prepared: list[ImageInput] = []
    undefined: set[int] = set()
    for i, image in enumerate(images):
        mask = None if edit_masks is None else edit_masks[i]
        part = image if mask is None else _edited_part(image, mask, i)
        if part is None:
            undefined.add(i)
            part = image
        prepared.append(part)
    encoder = load_clip(model, device)
    cosines = _cosine(encoder.image_embeddings(prepared, batch_size), encoder.text_embeddings(captions, batch_size))
    return [None if i in undefined else 100.0 * max(cos, 0.0) for i, cos in enumerate(cosines)]
