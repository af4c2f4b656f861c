"""Pixel metrics between an edited image and a reference: L1, L2 (MagicBrush), MSE, PSNR and SSIM (PIE-Bench).

Every function takes ``image`` (the edited / generated image), ``reference`` (the source image for PIE-Bench
style background preservation, the ground truth for MagicBrush) and an optional ``edit_mask`` (1 = edited). Without
a mask the metric covers the whole image; with one it covers the **unedited region only**, with PIE-Bench's
definition: both images are multiplied by ``1 - edit_mask`` and the metric is computed on the whole masked images
(so the zeroed edited pixels count as perfect matches and averages are over all pixels). An all-zeros mask gives
the whole-image value; an all-ones mask leaves nothing to compare and the function returns ``None``. Images are
floats in [0, 1] (see :mod:`._images` for the accepted inputs); all results are plain Python floats.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...errors import InvalidImageError
from ._images import ImageInput, MaskInput, masked_pair, size_text

#: SSIM constants of torchmetrics' ``structural_similarity_index_measure`` defaults (Wang et al. 2004).
SSIM_SIGMA = 1.5
SSIM_KERNEL_SIZE = 11
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _pair(
    image: ImageInput, reference: ImageInput, edit_mask: MaskInput | None, resize: bool
) -> tuple[torch.Tensor, torch.Tensor] | None:
    pair = masked_pair(image, reference, edit_mask, resize=resize)
    if pair is None:
        return None
    return pair[0].double(), pair[1].double()


def l1_distance(
    image: ImageInput, reference: ImageInput, edit_mask: MaskInput | None = None, *, resize: bool = True
) -> float | None:
    """MagicBrush's L1: the mean absolute difference over all pixels and channels, in [0, 1] units.

    As MagicBrush's ``evaluation/image_eval.py`` (``eval_distance``, ``nn.L1Loss`` on ``ToTensor`` images), the
    image is first resized to the reference's size (PIL bicubic, the default of ``Image.resize``) unless
    ``resize=False``. With ``edit_mask``: the unedited region with PIE-Bench's masking (module docstring).
    """
    pair = _pair(image, reference, edit_mask, resize)
    if pair is None:
        return None
    return float((pair[0] - pair[1]).abs().mean())


def l2_distance(
    image: ImageInput, reference: ImageInput, edit_mask: MaskInput | None = None, *, resize: bool = True
) -> float | None:
    """MagicBrush's L2, which is ``nn.MSELoss``: the mean *squared* difference (not a Euclidean norm), [0, 1] units.

    Identical to :func:`mse` except that, like MagicBrush, the image is resized to the reference's size first
    (PIL bicubic) unless ``resize=False``.
    """
    pair = _pair(image, reference, edit_mask, resize)
    if pair is None:
        return None
    return float((pair[0] - pair[1]).square().mean())


def mse(image: ImageInput, reference: ImageInput, edit_mask: MaskInput | None = None) -> float | None:
    """Mean squared error over all pixels and channels in [0, 1] units (torchmetrics ``MeanSquaredError``).

    With ``edit_mask`` this is PIE-Bench's "MSE unedit part": masked images, averaged over the whole image.
    Images must have the same size.
    """
    pair = _pair(image, reference, edit_mask, False)
    if pair is None:
        return None
    return float((pair[0] - pair[1]).square().mean())


def psnr(image: ImageInput, reference: ImageInput, edit_mask: MaskInput | None = None) -> float | None:
    """Peak signal-to-noise ratio in dB, ``10·log10(1 / MSE)`` with data range 1 (torchmetrics
    ``PeakSignalNoiseRatio(data_range=1.0)``, MSE over all pixels and channels as in :func:`mse`).

    Identical images give ``inf``. With ``edit_mask`` this is PIE-Bench's "PSNR unedit part".
    """
    pair = _pair(image, reference, edit_mask, False)
    if pair is None:
        return None
    error = float((pair[0] - pair[1]).square().mean())
    return math.inf if error == 0.0 else -10.0 * math.log10(error)


def _gaussian_window(channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``channels×1×11×11`` Gaussian window (sigma 1.5, normalised), one copy per channel."""
    half = (SSIM_KERNEL_SIZE - 1) / 2
    offsets = torch.arange(-half, half + 1, dtype=dtype, device=device)
    profile = torch.exp(-((offsets / SSIM_SIGMA) ** 2) / 2)
    profile = profile / profile.sum()
    window = profile[:, None] * profile[None, :]
    return window.expand(channels, 1, SSIM_KERNEL_SIZE, SSIM_KERNEL_SIZE)


def ssim_map(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM of two ``N×C×H×W`` tensors in [0, 1], same size as the inputs (reflect padding).

    Follows torchmetrics' ``structural_similarity_index_measure`` with ``data_range=1``: an 11×11 Gaussian
    window with sigma 1.5, constants ``(0.01)²`` and ``(0.03)²``, inputs reflect-padded by 5 pixels, local
    variances clamped at 0.
    """
    pad = (SSIM_KERNEL_SIZE - 1) // 2
    channels = first.shape[1]
    window = _gaussian_window(channels, first.dtype, first.device)
    stacked = torch.cat([first, second, first * first, second * second, first * second])
    stacked = F.pad(stacked, (pad, pad, pad, pad), mode="reflect")
    mean_a, mean_b, mean_aa, mean_bb, mean_ab = F.conv2d(stacked, window, groups=channels).split(first.shape[0])
    var_a = (mean_aa - mean_a.square()).clamp(min=0.0)
    var_b = (mean_bb - mean_b.square()).clamp(min=0.0)
    cov = mean_ab - mean_a * mean_b
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    numerator = (2 * mean_a * mean_b + c1) * (2 * cov + c2)
    denominator = (mean_a.square() + mean_b.square() + c1) * (var_a + var_b + c2)
    return numerator / denominator


def ssim(
    image: ImageInput,
    reference: ImageInput,
    edit_mask: MaskInput | None = None,
    *,
    crop_border: bool = False,
) -> float | None:
    """Structural similarity, the mean of :func:`ssim_map` over pixels and channels (data range 1).

    Equals torchmetrics >= 1.5 ``structural_similarity_index_measure(image, reference, data_range=1.0)``.
    ``crop_border=True`` drops the 5-pixel border before averaging, as torchmetrics < 1.5 did (the version
    PIE-Bench's published numbers were computed with). With ``edit_mask`` this is PIE-Bench's "SSIM unedit
    part". Images must be at least 6×6 (11×11 with ``crop_border``).
    """
    pair = _pair(image, reference, edit_mask, False)
    if pair is None:
        return None
    smallest = SSIM_KERNEL_SIZE if crop_border else (SSIM_KERNEL_SIZE + 1) // 2
    if min(pair[0].shape[-2:]) < smallest:
        raise InvalidImageError(
            f"image is {size_text(pair[0])}, too small for SSIM's {SSIM_KERNEL_SIZE}x{SSIM_KERNEL_SIZE} window: "
            f"pass images of at least {smallest}x{smallest}."
        )
    values = ssim_map(*pair)
    if crop_border:
        pad = (SSIM_KERNEL_SIZE - 1) // 2
        values = values[..., pad:-pad, pad:-pad]
    return float(values.mean())
