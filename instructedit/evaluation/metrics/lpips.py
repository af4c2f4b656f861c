"""LPIPS (Zhang et al. 2018) with AlexNet, VGG-16 or SqueezeNet-1.1 backbones, numerically as the ``lpips`` package.

The network is rebuilt here in plain torch so that it needs neither ``lpips`` nor ``torchvision`` at run time:

* backbone: the ``features`` part of torchvision's ``alexnet`` / ``vgg16`` / ``squeezenet1_1`` with the same layer
  indices (so torchvision state dicts load as they are), truncated after the last layer LPIPS reads;
* ``lpips``' scaling layer (shift ``[-.030, -.088, -.188]``, scale ``[.458, .448, .450]``) on inputs in [-1, 1];
* at each tapped ReLU: unit-normalise the features over channels (``x / (||x|| + 1e-10)``), square the difference,
  apply the linear head (a bias-free 1×1 convolution to one channel), average over space; sum over layers.

Weights are loaded the way users get them: the backbone from torchvision's ImageNet checkpoint (the same URL and
cache, ``$TORCH_HOME/hub/checkpoints``, that ``torchvision.models.alexnet(weights="IMAGENET1K_V1")`` uses; no
torchvision needed) or a local state dict; the linear heads ("v0.1") from the installed ``lpips`` package (or
``torchmetrics``, which ships the same files) or a local ``.pth``.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from ...errors import InvalidImageError, InvalidModelError, InvalidRequestError, ModelNotFoundError
from ._images import ImageInput, MaskInput, masked_pair, size_text

NETS = ("alex", "vgg", "squeeze")

#: torchvision's ImageNet checkpoints (``IMAGENET1K_V1``), the weights ``lpips`` uses via ``pretrained=True``.
BACKBONE_URLS = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "squeeze": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
}

#: Where the v0.1 linear heads live inside packages that ship them.
HEAD_FILES = {"lpips": "weights/v0.1/{net}.pth", "torchmetrics": "functional/image/lpips_models/{net}.pth"}

#: Smallest square input each backbone accepts (every tapped layer keeps at least one pixel).
MIN_SIZE = {"alex": 31, "vgg": 16, "squeeze": 17}

_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class Fire(nn.Module):
    """SqueezeNet's fire module (torchvision layout): squeeze 1×1, then concatenated expand 1×1 and 3×3."""

    def __init__(self, inplanes: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze, kernel_size=1)
        self.expand1x1 = nn.Conv2d(squeeze, expand, kernel_size=1)
        self.expand3x3 = nn.Conv2d(squeeze, expand, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1x1(x)), torch.relu(self.expand3x3(x))], dim=1)


def _alexnet() -> list[nn.Module]:
    relu = nn.ReLU
    return [
        nn.Conv2d(3, 64, 11, stride=4, padding=2), relu(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), relu(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), relu(),
        nn.Conv2d(384, 256, 3, padding=1), relu(),
        nn.Conv2d(256, 256, 3, padding=1), relu(),
    ]  # fmt: skip


def _vgg16() -> list[nn.Module]:
    layers: list[nn.Module] = []
    channels = 3
    for width in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if width == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            channels = width
    return layers


def _squeezenet1_1() -> list[nn.Module]:
    pool = nn.MaxPool2d
    return [
        nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(), pool(3, 2, ceil_mode=True),
        Fire(64, 16, 64), Fire(128, 16, 64), pool(3, 2, ceil_mode=True),
        Fire(128, 32, 128), Fire(256, 32, 128), pool(3, 2, ceil_mode=True),
        Fire(256, 48, 192), Fire(384, 48, 192), Fire(384, 64, 256), Fire(512, 64, 256),
    ]  # fmt: skip


#: net -> (layer builder, indices of the layers whose outputs LPIPS reads, their channel counts).
_ARCHITECTURES = {
    "alex": (_alexnet, (1, 4, 7, 9, 11), (64, 192, 384, 256, 256)),
    "vgg": (_vgg16, (3, 8, 15, 22, 29), (64, 128, 256, 512, 512)),
    "squeeze": (_squeezenet1_1, (1, 4, 7, 9, 10, 11, 12), (64, 128, 256, 384, 384, 512, 512)),
}


def _check_net(net: str) -> str:
    if net not in NETS:
        raise InvalidRequestError(f"unknown LPIPS network '{net}': choose one of {', '.join(NETS)}.")
    return net


def _unit_normalise(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return features / (features.square().sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """The LPIPS distance network; ``LPIPS(net)`` has random weights, :meth:`from_pretrained` real ones.

    ``forward(first, second)`` takes two ``N×3×H×W`` batches in [-1, 1] and returns the ``N`` distances.
    """

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        build, taps, channels = _ARCHITECTURES[_check_net(net)]
        self.net = net
        self.taps = taps
        self.backbone = nn.Sequential(*build())
        self.heads = nn.ModuleList(nn.Conv2d(width, 1, kernel_size=1, bias=False) for width in channels)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_pretrained(
        cls, net: str = "alex", *, backbone_path: str | Path | None = None, heads_path: str | Path | None = None
    ) -> LPIPS:
        """The standard LPIPS-v0.1 network: ImageNet backbone plus the calibrated linear heads, in eval mode.

        ``backbone_path``: a local torchvision state dict (the whole model or its ``features``); default: the
        torchvision checkpoint, downloaded once into the torch hub cache. ``heads_path``: a local ``lpips``
        v0.1 ``.pth``; default: the file shipped in the installed ``lpips`` (or ``torchmetrics``) package.
        Raises :class:`ModelNotFoundError` when weights cannot be found, :class:`InvalidModelError` when they
        do not fit.
        """
        model = cls(net)
        model.load_backbone_state_dict(load_backbone_weights(net, backbone_path))
        model.load_heads_state_dict(load_head_weights(net, heads_path))
        return model.eval().requires_grad_(False)

    def load_backbone_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load torchvision weights: a whole-model state dict (``features.*`` keys) or its ``features`` part."""
        if any(key.startswith("features.") for key in state_dict):
            state_dict = {k.removeprefix("features."): v for k, v in state_dict.items() if k.startswith("features.")}
        expected = self.backbone.state_dict()
        wanted = {key: value for key, value in state_dict.items() if key in expected}
        missing = sorted(set(expected) - set(wanted))
        wrong = [key for key, value in wanted.items() if tuple(value.shape) != tuple(expected[key].shape)]
        if missing or wrong:
            problem = f"missing {missing[:4]}" if missing else f"wrong shapes for {wrong[:4]}"
            raise InvalidModelError(
                f"backbone weights do not fit LPIPS-{self.net} ({problem}): pass torchvision's "
                f"{Path(BACKBONE_URLS[self.net]).name} or a state dict of the same architecture."
            )
        self.backbone.load_state_dict(wanted)

    def load_heads_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load ``lpips`` linear heads (keys ``lin{k}.model.1.weight``, shapes ``1×C×1×1``)."""
        for index, head in enumerate(self.heads):
            weight = state_dict.get(f"lin{index}.model.1.weight")
            if weight is None or tuple(weight.shape) != tuple(head.weight.shape):
                got = "missing" if weight is None else f"shape {tuple(weight.shape)}"
                raise InvalidModelError(
                    f"LPIPS-{self.net} head {index} ('lin{index}.model.1.weight') is {got}, expected shape "
                    f"{tuple(head.weight.shape)}: pass the lpips v0.1 file weights/v0.1/{self.net}.pth."
                )
            with torch.no_grad():
                head.weight.copy_(weight)

    def tapped_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The backbone activations LPIPS compares, for scaled inputs."""
        outputs = []
        for index, layer in enumerate(self.backbone):
            images = layer(images)
            if index in self.taps:
                outputs.append(images)
        return outputs

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        features_a = self.tapped_features((first - self.shift) / self.scale)
        features_b = self.tapped_features((second - self.shift) / self.scale)
        total: torch.Tensor | int = 0
        for head, part_a, part_b in zip(self.heads, features_a, features_b, strict=True):
            difference = (_unit_normalise(part_a) - _unit_normalise(part_b)).square()
            total = total + head(difference).mean(dim=(2, 3))
        assert isinstance(total, torch.Tensor)
        return total[:, 0]


def _load_file(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelNotFoundError(f"{what} file '{path}' does not exist: pass the path of an existing .pth file.")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types (pickle, zip, runtime)
        raise InvalidModelError(f"cannot read {what} file '{path}': {str(exc).splitlines()[0][:200]}.") from exc
    if not isinstance(state, dict):
        raise InvalidModelError(f"{what} file '{path}' holds a {type(state).__name__}, not a state dict.")
    return state


def load_backbone_weights(net: str, path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of ``net``'s torchvision backbone, from ``path`` or torchvision's checkpoint URL.

    Without ``path`` the checkpoint comes from the torch hub cache (``torch.hub.get_dir()/checkpoints``, shared
    with torchvision) or is downloaded there.
    """
    url = BACKBONE_URLS[_check_net(net)]
    if path is not None:
        return _load_file(path, f"LPIPS-{net} backbone")
    try:
        return torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except OSError as exc:  # URLError, socket errors, missing cache directory
        target = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        raise ModelNotFoundError(
            f"cannot download the LPIPS-{net} backbone ({url}): {str(exc).splitlines()[0][:200]} -- on a "
            f"machine with internet download it to {target}, or pass backbone_path=<local .pth>."
        ) from exc


def _packaged_head_file(net: str) -> Path | None:
    for package, relative in HEAD_FILES.items():
        spec = importlib.util.find_spec(package)  # finds without importing (lpips would import torchvision)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(folder) / relative.format(net=net)
            if candidate.is_file():
                return candidate
    return None


def load_head_weights(net: str, path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The LPIPS v0.1 linear heads of ``net``, from ``path`` or the installed ``lpips``/``torchmetrics`` package."""
    _check_net(net)
    if path is None:
        path = _packaged_head_file(net)
        if path is None:
            raise ModelNotFoundError(
                f"no LPIPS-{net} linear heads found: `pip install --no-deps lpips` (it ships them), or pass "
                f"heads_path=<lpips weights/v0.1/{net}.pth>."
            )
    return _load_file(path, f"LPIPS-{net} heads")


@lru_cache(maxsize=6)
def load_lpips(
    net: str = "alex", *, backbone_path: str | None = None, heads_path: str | None = None, device: str = "cpu"
) -> LPIPS:
    """A pretrained :class:`LPIPS` on ``device``, loaded once per argument set and shared."""
    return LPIPS.from_pretrained(net, backbone_path=backbone_path, heads_path=heads_path).to(device)


def lpips_distance(
    image: ImageInput,
    reference: ImageInput,
    edit_mask: MaskInput | None = None,
    *,
    model: LPIPS | str = "alex",
) -> float | None:
    """LPIPS between two images, as ``lpips.LPIPS(net=...)(2·image - 1, 2·reference - 1)``.

    ``model`` is a loaded :class:`LPIPS` or a network name (``"alex"``, the ``lpips`` default; ``"vgg"``;
    ``"squeeze"``, the one PIE-Bench uses), loaded with :func:`load_lpips`. With ``edit_mask``: PIE-Bench's
    "LPIPS unedit part" -- both images multiplied by ``1 - edit_mask`` (in [0, 1]) before the [-1, 1] mapping,
    ``None`` when the mask covers everything. Images must have the same size.
    """
    network = load_lpips(model) if isinstance(model, str) else model
    pair = masked_pair(image, reference, edit_mask)
    if pair is None:
        return None
    smallest = MIN_SIZE[network.net]
    if min(pair[0].shape[-2:]) < smallest:
        raise InvalidImageError(
            f"image is {size_text(pair[0])}, too small for LPIPS-{network.net}: pass images of at least "
            f"{smallest}x{smallest}."
        )
    parameter = next(network.parameters())
    first, second = (2 * part.to(parameter.device, parameter.dtype) - 1 for part in pair)
    with torch.no_grad():
        return float(network(first, second)[0])
