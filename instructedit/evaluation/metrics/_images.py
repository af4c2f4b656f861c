"""Shared input handling for the metrics: images and edit masks to tensors, and the unedited region of an edit.

Conventions, the same for every metric of this package:

* An **image** is a PIL image (any mode, converted to RGB as ``Image.convert("RGB")`` does), a numpy array
  ``H×W`` or ``H×W×C`` (channels last, what ``np.asarray(pil_image)`` gives), or a torch tensor ``C×H×W`` or
  ``1×C×H×W`` (channels first), with ``C`` 1 or 3. ``uint8`` data is divided by 255; float data must already lie
  in [0, 1]. One-channel images are repeated to three channels. It becomes a float32 tensor ``1×3×H×W`` in [0, 1]
  (PIL images through the engine's :func:`~instructedit.engine.latents.image_to_tensor` with range (0, 1)).
* An **edit mask** marks the edited region: 1 (white) = edited, 0 = kept; values in between act as weights. It is
  a PIL image in mode ``"1"``, ``"L"`` or ``"F"``, a numpy array ``H×W`` (or ``H×W×C`` with equal channels) or a
  tensor ``H×W``, ``1×H×W`` or ``1×1×H×W``; bool, other integers holding 0/1, float in [0, 1], or ``uint8`` in
  either convention: 0/255 (divided by 255; grey levels are weights) or 0/1 (what PIE-Bench's ``mask_decode`` and
  :func:`~instructedit.evaluation.datasets.decode_pie_mask` return). A ``uint8`` mask whose largest value is 1 is
  read as 0/1, any other as 0-255. Its size must equal the reference image's: it is never resized silently. It
  becomes a float32 tensor ``1×1×H×W``.
* The **unedited region** is the complement ``1 - mask``. Metrics "on the unedited region" follow PIE-Bench
  (cure-lab/PnPInversion ``evaluation/matrics_calculator.py``): both images are multiplied by ``1 - mask`` and
  the metric is computed on the whole masked images. When nothing is left unedited (an all-ones mask) such a
  metric is undefined and :func:`masked_pair` returns ``None`` (PIE-Bench writes the string ``"nan"`` there).
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ...engine.latents import image_to_tensor
from ...errors import InvalidImageError, InvalidMaskError

ImageInput: TypeAlias = Image.Image | np.ndarray | torch.Tensor
MaskInput: TypeAlias = Image.Image | np.ndarray | torch.Tensor

#: Float inputs may overshoot [0, 1] by this much (rounding in a decoder) before they count as out of range.
RANGE_TOLERANCE = 1e-6


def size_text(tensor: torch.Tensor) -> str:
    """``"W×H"`` of a ``…×H×W`` tensor, as sizes are written in error messages (PIL order)."""
    return f"{tensor.shape[-1]}x{tensor.shape[-2]}"


def _scaled(data: torch.Tensor, *, name: str, error: type[ValueError], what: str, binary_uint8: bool = False
            ) -> torch.Tensor:  # fmt: skip
    """uint8 → /255, bool → 0/1, other integers must hold 0/1, floats must lie in [0, 1]; returns float32.

    ``binary_uint8`` (masks): a uint8 tensor whose largest value is 1 holds 0/1 and is not divided.
    """
    if data.dtype == torch.uint8:
        if binary_uint8 and data.numel() and int(data.max()) <= 1:
            return data.to(torch.float32)
        return data.to(torch.float32) / 255.0
    if data.dtype == torch.bool:
        return data.to(torch.float32)
    if not data.is_floating_point():
        if data.numel() and (data.min() < 0 or data.max() > 1):
            raise error(
                f"{name} has integer dtype {data.dtype} with values outside 0/1: pass uint8 (0-255) data or "
                f"floats in [0, 1] for {what}."
            )
        return data.to(torch.float32)
    data = data.to(torch.float32)
    if not torch.isfinite(data).all():
        raise error(f"{name} contains NaN or infinite values: pass finite {what}.")
    low, high = float(data.min()), float(data.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise error(
            f"{name} values must lie in [0, 1] (got min {low:.4g}, max {high:.4g}): divide 0-255 data by 255, "
            "or map [-1, 1] data with (x + 1) / 2."
        )
    return data.clamp(0.0, 1.0)


def as_image_tensor(image: ImageInput, *, name: str = "image") -> torch.Tensor:
    """Convert one image (see the module conventions) to a float32 tensor ``1×3×H×W`` in [0, 1].

    PIL images go through the engine's ``image_to_tensor(image, value_range=(0.0, 1.0))``; numpy arrays and
    tensors are checked and scaled here. Tensors keep their device. Raises :class:`InvalidImageError` naming
    ``name`` and the problem.
    """
    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise InvalidImageError(f"{name} is empty ({image.width}x{image.height}): pass a non-empty image.")
        return image_to_tensor(image, value_range=(0.0, 1.0)).contiguous()
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3:
            raise InvalidImageError(
                f"{name} is a numpy array of shape {image.shape}: pass H×W or H×W×C (channels last)."
            )
        data = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # a copy: arrays may be read-only
    elif isinstance(image, torch.Tensor):
        data = image.detach()
        if data.ndim == 4:
            if data.shape[0] != 1:
                raise InvalidImageError(
                    f"{name} is a batch of {data.shape[0]} images: metrics take one image at a time (1×C×H×W)."
                )
            data = data[0]
        if data.ndim != 3:
            raise InvalidImageError(
                f"{name} is a tensor of shape {tuple(image.shape)}: pass C×H×W or 1×C×H×W (channels first)."
            )
    else:
        raise InvalidImageError(
            f"{name} has type {type(image).__name__}: pass a PIL image, a numpy array or a torch tensor."
        )
    channels = data.shape[0]
    if channels not in (1, 3):
        hint = " (RGBA? drop the alpha channel)" if channels == 4 else ""
        raise InvalidImageError(f"{name} has {channels} channels{hint}: pass 1 (grey) or 3 (RGB) channels.")
    if data.shape[1] == 0 or data.shape[2] == 0:
        raise InvalidImageError(f"{name} is empty ({data.shape[2]}x{data.shape[1]}): pass a non-empty image.")
    data = _scaled(data, name=name, error=InvalidImageError, what="image data")
    return data.expand(3, -1, -1).unsqueeze(0).contiguous()


def mask_to_tensor(mask: MaskInput, size: tuple[int, int], *, name: str = "edit_mask") -> torch.Tensor:
    """Convert an edit mask (see the module conventions) to float32 ``1×1×H×W`` in [0, 1], checking its size.

    ``size`` is the expected ``(H, W)``, the reference image's. Raises :class:`InvalidMaskError`.
    """
    if isinstance(mask, Image.Image):
        if mask.mode not in ("1", "L", "F"):
            raise InvalidMaskError(
                f"{name} has PIL mode '{mask.mode}': pass a single-channel mask (mode '1' or 'L', "
                "e.g. mask.convert('L')), white = edited."
            )
        data = torch.from_numpy(np.array(mask))
    elif isinstance(mask, np.ndarray):
        array = mask
        if array.ndim == 3:
            if array.shape[2] > 1 and not (array == array[:, :, :1]).all():
                raise InvalidMaskError(
                    f"{name} has {array.shape[2]} different channels: pass a single-channel H×W mask."
                )
            array = array[:, :, 0]
        if array.ndim != 2:
            raise InvalidMaskError(f"{name} is a numpy array of shape {mask.shape}: pass an H×W array.")
        data = torch.from_numpy(np.array(array))
    elif isinstance(mask, torch.Tensor):
        data = mask.detach()
        while data.ndim > 2 and data.shape[0] == 1:
            data = data[0]
        if data.ndim != 2:
            raise InvalidMaskError(f"{name} is a tensor of shape {tuple(mask.shape)}: pass H×W, 1×H×W or 1×1×H×W.")
    else:
        raise InvalidMaskError(
            f"{name} has type {type(mask).__name__}: pass a PIL image, a numpy array or a torch tensor."
        )
    if tuple(data.shape) != tuple(size):
        raise InvalidMaskError(
            f"{name} is {data.shape[1]}x{data.shape[0]} but the reference image is {size[1]}x{size[0]} "
            "(width x height): pass a mask of the reference image's size."
        )
    scaled = _scaled(data, name=name, error=InvalidMaskError, what="mask values", binary_uint8=True)
    return scaled.reshape(1, 1, *size)


def _resized(image: ImageInput, tensor: torch.Tensor, size: tuple[int, int], name: str) -> torch.Tensor:
    """``image`` resized to ``size`` (H, W): PIL bicubic for PIL input, antialiased torch bicubic otherwise."""
    if isinstance(image, Image.Image):
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return as_image_tensor(rgb.resize((size[1], size[0]), Image.Resampling.BICUBIC), name=name)
    resized = F.interpolate(tensor, size=size, mode="bicubic", align_corners=False, antialias=True)
    return resized.clamp(0.0, 1.0)


def load_pair(
    image: ImageInput,
    reference: ImageInput,
    *,
    resize: bool = False,
    names: tuple[str, str] = ("image", "reference"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert an (image, reference) pair to two ``1×3×H×W`` tensors on ``image``'s device.

    With ``resize=True`` an image of another size is resized to the reference's size, as MagicBrush does
    (``gen_img.resize(gt_img.size)``: bicubic on PIL images; non-PIL inputs use antialiased torch bicubic, close
    to but not bit-identical with PIL). Otherwise different sizes raise :class:`InvalidImageError`.
    """
    first = as_image_tensor(image, name=names[0])
    second = as_image_tensor(reference, name=names[1]).to(first.device)
    if first.shape != second.shape:
        if not resize:
            raise InvalidImageError(
                f"{names[0]} is {size_text(first)} but {names[1]} is {size_text(second)} (width x height): "
                "pass images of the same size."
            )
        first = _resized(image, first, tuple(second.shape[-2:]), names[0]).to(second.device)
    return first, second


def unedited_region(mask: torch.Tensor) -> torch.Tensor | None:
    """The complement ``1 - mask`` of an edit-mask tensor, or ``None`` when nothing is left unedited."""
    kept = 1.0 - mask
    if not bool((kept > 0).any()):
        return None
    return kept


def masked_pair(
    image: ImageInput,
    reference: ImageInput,
    edit_mask: MaskInput | None = None,
    *,
    resize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The pair a metric compares: whole images, or both multiplied by the unedited region (PIE-Bench).

    Without ``edit_mask`` the two ``1×3×H×W`` tensors are returned as they are. With it, both are multiplied by
    ``1 - edit_mask`` (edited pixels become 0, as PIE-Bench's ``img * mask`` does); ``None`` means the metric is
    undefined because the mask covers the whole image. The mask must have the reference's size.
    """
    first, second = load_pair(image, reference, resize=resize)
    if edit_mask is None:
        return first, second
    mask = mask_to_tensor(edit_mask, tuple(second.shape[-2:])).to(second.device)
    kept = unedited_region(mask)
    if kept is None:
        return None
    return first * kept, second * kept
