"""Pixel metrics and shared input handling: hand-computed values, MagicBrush/PIE-Bench/torchmetrics equality,
mask edge cases and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from instructedit.errors import InvalidImageError, InvalidMaskError
from instructedit.evaluation.metrics import pixel
from instructedit.evaluation.metrics._images import as_image_tensor, mask_to_tensor, masked_pair

PAIR_METRICS = [pixel.l1_distance, pixel.l2_distance, pixel.mse, pixel.psnr, pixel.ssim]


def grey(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)[None]


def random_pil(seed: int, size=(64, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


def pie_mask(size: int = 64) -> np.ndarray:
    """A PIE-Bench style edit mask: a rectangle plus the 1-pixel border PIE-Bench's mask_decode sets."""
    mask = np.zeros((size, size))
    mask[10:30, 20:50] = 1
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = 1
    return mask


# --- hand-computed values -------------------------------------------------------------------------------


def test_hand_computed_whole_image():
    image, reference = grey([[0.2, 0.4], [0.6, 0.8]]), grey([[0.1, 0.1], [0.1, 0.1]])
    # differences 0.1, 0.3, 0.5, 0.7 (each repeated over the three channels)
    assert pixel.l1_distance(image, reference) == pytest.approx(0.4, abs=1e-7)
    assert pixel.l2_distance(image, reference) == pytest.approx(0.21, abs=1e-7)
    assert pixel.mse(image, reference) == pytest.approx(0.21, abs=1e-7)
    assert pixel.psnr(image, reference) == pytest.approx(10 * math.log10(1 / 0.21), abs=1e-5)


def test_hand_computed_unedited_region_pie_bench_convention():
    image, reference = grey([[0.0, 1.0], [1.0, 1.0]]), torch.zeros(1, 2, 2)
    edit = np.array([[0, 1], [0, 0]], dtype=np.uint8) * 255  # top-right pixel edited
    # edited pixel zeroed in both images, averages over all 4 pixels: errors 0, 0, 1, 1
    assert pixel.l1_distance(image, reference, edit) == pytest.approx(0.5)
    assert pixel.mse(image, reference, edit) == pytest.approx(0.5)
    assert pixel.psnr(image, reference, edit) == pytest.approx(10 * math.log10(2))
    assert pixel.l1_distance(image, reference) == pytest.approx(0.75)


def test_hand_computed_ssim_of_constant_images():
    image, reference = torch.full((3, 8, 8), 0.5), torch.full((3, 8, 8), 0.25)
    c1 = 0.01**2  # zero variances: SSIM reduces to the luminance term everywhere
    expected = (2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1)
    assert pixel.ssim(image, reference) == pytest.approx(expected, abs=1e-12)
    assert pixel.ssim(image, reference, crop_border=False) == pixel.ssim(image, reference)


def test_identical_images():
    image = as_image_tensor(random_pil(0, (16, 16)))
    assert pixel.l1_distance(image, image) == 0.0
    assert pixel.mse(image, image) == 0.0
    assert pixel.psnr(image, image) == math.inf
    assert pixel.ssim(image, image) == pytest.approx(1.0, abs=1e-12)


def test_results_are_python_floats():
    image, reference = random_pil(1, (16, 16)), random_pil(2, (16, 16))
    for metric in PAIR_METRICS:
        assert type(metric(image, reference)) is float


# --- masks: all-zeros = whole image, all-ones = undefined, partial ------------------------------------------


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_all_zeros_mask_equals_whole_image(metric):
    image, reference = random_pil(3, (24, 20)), random_pil(4, (24, 20))
    assert metric(image, reference, np.zeros((20, 24), dtype=bool)) == metric(image, reference)


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_all_ones_mask_is_undefined(metric):
    image, reference = random_pil(5, (24, 20)), random_pil(6, (24, 20))
    assert metric(image, reference, Image.new("L", (24, 20), 255)) is None


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_partial_mask_ignores_edited_pixels(metric):
    image, reference = as_image_tensor(random_pil(7, (24, 20))), as_image_tensor(random_pil(8, (24, 20)))
    mask = torch.zeros(20, 24)
    mask[5:15, 6:18] = 1
    changed = image.clone()
    changed[..., 5:15, 6:18] = torch.rand(1, 3, 10, 12)  # edits inside the mask do not count
    assert metric(changed, reference, mask) == pytest.approx(metric(image, reference, mask), abs=1e-12)
    assert metric(image, reference, mask) != pytest.approx(metric(image, reference), abs=1e-6)


# --- equality with the field's reference implementations -----------------------------------------------------


def test_ssim_equals_torchmetrics():
    functional = pytest.importorskip("torchmetrics.functional.image")
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, 40, 37, generator=generator)
    reference = (image + 0.2 * torch.randn(3, 40, 37, generator=generator)).clamp(0, 1)
    expected = functional.structural_similarity_index_measure(
        image[None].double(), reference[None].double(), data_range=1.0
    )
    assert pixel.ssim(image, reference) == pytest.approx(float(expected), abs=1e-12)
    single = functional.structural_similarity_index_measure(image[None], reference[None], data_range=1.0)
    assert pixel.ssim(image, reference) == pytest.approx(float(single), abs=1e-6)
    # torchmetrics < 1.5 averaged the map without its 5-pixel border: crop_border=True
    _, full = functional.structural_similarity_index_measure(
        image[None].double(), reference[None].double(), data_range=1.0, return_full_image=True
    )
    assert pixel.ssim(image, reference, crop_border=True) == pytest.approx(float(full[..., 5:-5, 5:-5].mean()))


def test_psnr_equals_torchmetrics():
    functional = pytest.importorskip("torchmetrics.functional.image")
    generator = torch.Generator().manual_seed(1)
    image, reference = torch.rand(3, 16, 16, generator=generator), torch.rand(3, 16, 16, generator=generator)
    expected = functional.peak_signal_noise_ratio(image[None].double(), reference[None].double(), data_range=1.0)
    assert pixel.psnr(image, reference) == pytest.approx(float(expected), rel=1e-6)  # torchmetrics logs in fp32


def test_matches_pie_bench_pipeline():
    """PIE-Bench's MetricsCalculator steps, replayed: numpy /255, multiply by (1 - mask), torchmetrics modules."""
    image_module = pytest.importorskip("torchmetrics.image")
    regression = pytest.importorskip("torchmetrics.regression")
    source, target = random_pil(10), random_pil(11)
    mask = pie_mask()[:, :, None].repeat(3, axis=2)

    def pie(metric, unedited):
        pred = np.array(source).astype(np.float32) / 255
        gt = np.array(target).astype(np.float32) / 255
        if unedited is not None:
            pred, gt = pred * unedited.astype(np.float32), gt * unedited.astype(np.float32)
        pred_t, gt_t = (torch.tensor(x).permute(2, 0, 1) for x in (pred, gt))
        if metric == "mse":
            return regression.MeanSquaredError()(pred_t.contiguous(), gt_t.contiguous()).item()
        module = {
            "psnr": image_module.PeakSignalNoiseRatio(data_range=1.0),
            "ssim": image_module.StructuralSimilarityIndexMeasure(data_range=1.0),
        }[metric]
        return module(pred_t[None], gt_t[None]).item()

    ours = {"psnr": pixel.psnr, "mse": pixel.mse, "ssim": pixel.ssim}
    for name, metric in ours.items():
        assert metric(source, target) == pytest.approx(pie(name, None), rel=1e-5, abs=1e-6)
        # PIE-Bench's "<metric>_unedit_part": mask argument 1 - mask; ours takes the edit mask itself
        assert metric(source, target, mask) == pytest.approx(pie(name, 1 - mask), rel=1e-5, abs=1e-6)


def test_matches_magicbrush_eval_distance():
    """MagicBrush's eval_distance, replayed: gen.resize(gt.size), ToTensor, nn.L1Loss / nn.MSELoss."""
    generated, ground_truth = random_pil(12, (96, 80)), random_pil(13, (64, 64))
    resized = torch.from_numpy(np.asarray(generated.resize(ground_truth.size)).copy()).permute(2, 0, 1) / 255
    truth = torch.from_numpy(np.asarray(ground_truth).copy()).permute(2, 0, 1) / 255
    assert pixel.l1_distance(generated, ground_truth) == pytest.approx(torch.nn.L1Loss()(resized, truth).item())
    assert pixel.l2_distance(generated, ground_truth) == pytest.approx(torch.nn.MSELoss()(resized, truth).item())
    with pytest.raises(InvalidImageError, match="96x80"):
        pixel.l1_distance(generated, ground_truth, resize=False)


def test_tensor_inputs_are_resized_for_magicbrush_metrics():
    image, reference = torch.rand(3, 32, 32), torch.rand(3, 16, 16)
    value = pixel.l1_distance(image, reference)
    assert value is not None and 0 < value < 1
    with pytest.raises(InvalidImageError, match="same size"):
        pixel.mse(image, reference)


# --- input handling ---------------------------------------------------------------------------------------


def test_pil_numpy_and_tensor_inputs_agree():
    image, reference = random_pil(14, (20, 12)), random_pil(15, (20, 12))
    as_array = np.asarray(image)
    as_tensor = torch.from_numpy(as_array.copy()).permute(2, 0, 1)  # uint8 C×H×W
    as_float = as_tensor.float() / 255
    expected = pixel.mse(image, reference)
    assert pixel.mse(as_array, reference) == expected
    assert pixel.mse(as_tensor, reference) == expected
    assert pixel.mse(as_float[None], reference) == pytest.approx(expected, abs=1e-12)


def test_grey_images_become_rgb():
    grey_image = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), mode="L")
    tensor = as_image_tensor(grey_image)
    assert tensor.shape == (1, 3, 8, 8)
    assert torch.equal(tensor[0, 0], tensor[0, 2])
    assert torch.equal(as_image_tensor(np.asarray(grey_image)), tensor)


def test_mask_formats_agree():
    box = np.zeros((6, 5), dtype=bool)
    box[1:4, 2:4] = True
    expected = torch.from_numpy(box).float().reshape(1, 1, 6, 5)
    for mask in (
        box,
        box.astype(np.uint8) * 255,
        box.astype(np.uint8),  # 0/1 uint8, as PIE-Bench's mask_decode and decode_pie_mask return
        box.astype(np.float64),
        box[:, :, None].repeat(3, axis=2),
        Image.fromarray(box.astype(np.uint8) * 255, mode="L"),
        Image.fromarray(box.astype(np.uint8) * 255, mode="L").convert("1"),
        Image.fromarray(box.astype(np.uint8), mode="L"),  # 0/1 L image
        torch.from_numpy(box)[None, None],
        torch.from_numpy(box.astype(np.uint8)),  # 0/1 uint8 tensor
    ):
        assert torch.equal(mask_to_tensor(mask, (6, 5)), expected)


def test_zero_one_uint8_masks_are_read_as_binary_in_every_metric():
    """A decoded PIE-Bench mask (uint8 0/1) is the edit region, not a near-empty 1/255 weight map."""
    from instructedit.evaluation.datasets import decode_pie_mask

    encoded = [value for row in range(40, 240) for value in (512 * row + 100, 300)]  # a 300x200 box
    mask = decode_pie_mask(encoded)
    assert mask.dtype == np.uint8 and mask.max() == 1
    rng = np.random.default_rng(3)
    image, reference = (Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)) for _ in range(2))
    edited = mask.astype(bool)
    for metric in (pixel.psnr, pixel.mse, pixel.l1_distance, pixel.ssim):
        assert metric(image, reference, mask) == metric(image, reference, edited) == metric(
            image, reference, mask * 255
        )
    expected_mse = ((_pixels(image) - _pixels(reference)) ** 2 * ~edited[..., None]).mean()  # PIE-Bench's masking
    assert pixel.mse(image, reference, mask) == pytest.approx(expected_mse, rel=1e-6)  # float32 pixels
    misread = pixel.psnr(image, reference, mask.astype(np.float64) / 255)  # the old reading: weights of 1/255
    assert abs(pixel.psnr(image, reference, mask) - misread) > 1.0


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64) / 255


def test_masked_pair_zeroes_edited_pixels():
    image, reference = torch.ones(3, 2, 2), torch.full((3, 2, 2), 0.5)
    pair = masked_pair(image, reference, torch.tensor([[1.0, 0.0], [0.0, 0.25]]))
    assert pair is not None
    assert torch.allclose(pair[0][0, 0], torch.tensor([[0.0, 1.0], [1.0, 0.75]]))
    assert torch.allclose(pair[1][0, 0], torch.tensor([[0.0, 0.5], [0.5, 0.375]]))


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (torch.rand(3, 8, 9), "same size"),
        (torch.rand(3, 8, 8) * 2, r"\[0, 1\]"),
        (torch.full((3, 8, 8), float("nan")), "NaN"),
        (torch.rand(4, 8, 8), "4 channels"),
        (torch.rand(2, 3, 8, 8), "batch of 2"),
        (np.zeros((3, 8, 8, 1)), "shape"),
        ("image.png", "type str"),
        (torch.zeros(3, 0, 8), "empty"),
        (np.full((8, 8, 3), 300, dtype=np.int64), "integer dtype"),
    ],
)
def test_invalid_images_raise(image, match):
    with pytest.raises(InvalidImageError, match=match):
        pixel.mse(image, torch.rand(3, 8, 8))


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (np.zeros((8, 9)), "9x8 but the reference image is 8x8"),
        (Image.new("RGB", (8, 8)), "mode 'RGB'"),
        (np.full((8, 8), 2.0), r"\[0, 1\]"),
        (np.stack([np.zeros((8, 8)), np.ones((8, 8))], axis=2), "different channels"),
        (torch.zeros(2, 8, 8), "shape"),
        ([[0, 1]], "type list"),
    ],
)
def test_invalid_masks_raise(mask, match):
    with pytest.raises(InvalidMaskError, match=match):
        pixel.psnr(torch.rand(3, 8, 8), torch.rand(3, 8, 8), mask)


def test_ssim_rejects_images_smaller_than_its_window():
    with pytest.raises(InvalidImageError, match="at least 6x6"):
        pixel.ssim(torch.rand(3, 5, 8), torch.rand(3, 5, 8))
    with pytest.raises(InvalidImageError, match="at least 11x11"):
        pixel.ssim(torch.rand(3, 10, 12), torch.rand(3, 10, 12), crop_border=True)
