"""LPIPS: equality with the ``lpips`` package (whole image and PIE-Bench's masked variant), torchvision-compatible
backbones, and loading real weights the way users do (hub cache, local files) with clear errors."""

from __future__ import annotations

import importlib
import re
import sys
import types
import urllib.error
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from instructedit.errors import InvalidImageError, InvalidModelError, InvalidRequestError, ModelNotFoundError
from instructedit.evaluation.metrics import lpips as lp

NETS = ["alex", "vgg", "squeeze"]


def _fake_torchvision() -> types.ModuleType:
    """A stand-in ``torchvision`` whose ``models`` return our backbones with random weights.

    torchvision is not installed here (its PyPI wheels are CUDA builds that break with the CPU torch), so the
    ``lpips`` package runs on our backbone definitions; those are checked against torchvision separately below.
    """
    module, models = types.ModuleType("torchvision"), types.ModuleType("torchvision.models")

    def factory(net):
        return lambda *args, **kwargs: SimpleNamespace(features=lp.LPIPS(net).backbone)

    models.alexnet, models.vgg16, models.squeezenet1_1 = factory("alex"), factory("vgg"), factory("squeeze")
    module.models = models
    return module


def _torchvision_works() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        importlib.import_module("torchvision.models")
        return True
    except Exception:  # e.g. a CUDA wheel with a CPU torch: "operator torchvision::nms does not exist"
        for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
            del sys.modules[name]
        return False


@pytest.fixture(scope="module")
def reference_lpips():
    """The ``lpips`` package, imported on real torchvision when it works, else on the stand-in."""
    pytest.importorskip("scipy")
    if importlib.util.find_spec("lpips") is None:
        pytest.skip("lpips is not installed (pip install --no-deps lpips)")
    loaded_before = {name for name in sys.modules if name == "lpips" or name.startswith("lpips.")}
    with pytest.MonkeyPatch.context() as patch:
        for name in loaded_before:
            patch.delitem(sys.modules, name)
        if not _torchvision_works():
            fake = _fake_torchvision()
            patch.setitem(sys.modules, "torchvision", fake)
            patch.setitem(sys.modules, "torchvision.models", fake.models)
        package = importlib.import_module("lpips")
        yield package
        for name in [name for name in sys.modules if name == "lpips" or name.startswith("lpips.")]:
            if name not in loaded_before:
                del sys.modules[name]


def _ours_like(reference, net: str) -> lp.LPIPS:
    """Our network with the reference's backbone weights and the packaged v0.1 heads."""
    backbone = {re.sub(r"^slice\d+\.", "", key): value for key, value in reference.net.state_dict().items()}
    model = lp.LPIPS(net)
    model.load_backbone_state_dict(backbone)
    model.load_heads_state_dict(lp.load_head_weights(net))
    return model.eval()


@pytest.mark.parametrize("net", NETS)
def test_equals_lpips_package(reference_lpips, net):
    torch.manual_seed(0)
    reference = reference_lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    ours = _ours_like(reference, net)
    generator = torch.Generator().manual_seed(1)
    first, second = (torch.rand(2, 3, 40, 36, generator=generator) * 2 - 1 for _ in range(2))
    with torch.no_grad():
        expected = reference(first, second).flatten()
        got = ours(first, second)
    assert got.shape == (2,)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert expected.min() > 0  # a real comparison, not of zeros


@pytest.mark.parametrize("net", NETS)
def test_lpips_distance_matches_pie_bench_masked_pipeline(reference_lpips, net):
    """PIE-Bench's calculate_lpips, replayed: numpy /255, times (1 - mask), then LPIPS(2x - 1, 2y - 1)."""
    torch.manual_seed(2)
    reference = reference_lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    ours = _ours_like(reference, net)
    rng = np.random.default_rng(3)
    source, target = (Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)) for _ in range(2))
    edit = np.zeros((36, 40))
    edit[8:30, 10:32] = 1
    edit3 = edit[:, :, None].repeat(3, axis=2)

    def pie(unedited):
        pred = np.array(source).astype(np.float32) / 255
        gt = np.array(target).astype(np.float32) / 255
        if unedited is not None:
            pred, gt = pred * unedited.astype(np.float32), gt * unedited.astype(np.float32)
        pred_t, gt_t = (torch.tensor(x).permute(2, 0, 1).unsqueeze(0) for x in (pred, gt))
        with torch.no_grad():
            return reference(pred_t * 2 - 1, gt_t * 2 - 1).item()

    assert lp.lpips_distance(source, target, model=ours) == pytest.approx(pie(None), abs=1e-6)
    assert lp.lpips_distance(source, target, edit, model=ours) == pytest.approx(pie(1 - edit3), abs=1e-6)
    assert lp.lpips_distance(source, target, np.zeros((36, 40)), model=ours) == pytest.approx(pie(None), abs=1e-6)
    assert lp.lpips_distance(source, target, np.ones((36, 40)), model=ours) is None


# Torchvision's ``features`` of alexnet / vgg16 / squeezenet1_1 (torchvision 0.28): parameter count, number of
# state-dict tensors, indices of layers with weights, and the shapes of the activations LPIPS reads.
TORCHVISION_FEATURES = {
    "alex": (2469696, 10, [0, 3, 6, 8, 10], 224, [(64, 55), (192, 27), (384, 13), (256, 13), (256, 13)]),
    "vgg": (
        14714688,
        26,
        [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
        64,
        [(64, 64), (128, 32), (256, 16), (512, 8), (512, 4)],
    ),
    "squeeze": (
        722496,
        50,
        [0, 3, 4, 6, 7, 9, 10, 11, 12],
        224,
        [(64, 111), (128, 55), (256, 27), (384, 13), (384, 13), (512, 13), (512, 13)],
    ),
}


@pytest.mark.parametrize("net", NETS)
def test_backbone_has_torchvision_layout(net):
    parameters, tensors, indices, size, shapes = TORCHVISION_FEATURES[net]
    state = lp.LPIPS(net).backbone.state_dict()
    assert sum(value.numel() for value in state.values()) == parameters
    assert len(state) == tensors
    assert sorted({int(key.split(".")[0]) for key in state}) == indices
    with torch.no_grad():
        features = lp.LPIPS(net).tapped_features(torch.zeros(1, 3, size, size))
    assert [(f.shape[1], f.shape[2]) for f in features] == shapes
    assert all(f.shape[2] == f.shape[3] for f in features)


def _torchvision_style_checkpoint(net: str, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    features = lp.LPIPS(net).backbone.state_dict()
    checkpoint = {f"features.{key}": value for key, value in features.items()}
    checkpoint["classifier.1.weight"] = torch.zeros(10, 4)  # whole-model checkpoints also hold the classifier
    return checkpoint


def _random_heads(net: str, path) -> None:
    torch.manual_seed(5)
    heads = {f"lin{i}.model.1.weight": torch.rand_like(h.weight) for i, h in enumerate(lp.LPIPS(net).heads)}
    torch.save(heads, path)


def test_from_pretrained_reads_torchvision_checkpoint_from_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoint = _torchvision_style_checkpoint("squeeze", seed=4)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(checkpoint, cache / "squeezenet1_1-b8a52dc0.pth")
    _random_heads("squeeze", tmp_path / "heads.pth")

    model = lp.LPIPS.from_pretrained("squeeze", heads_path=tmp_path / "heads.pth")
    assert not model.training
    assert torch.equal(model.backbone[0].weight, checkpoint["features.0.weight"])
    assert torch.equal(model.backbone[12].expand3x3.bias, checkpoint["features.12.expand3x3.bias"])
    assert torch.equal(model.heads[6].weight, torch.load(tmp_path / "heads.pth")["lin6.model.1.weight"])

    lp.load_lpips.cache_clear()
    try:
        first = lp.load_lpips("squeeze", heads_path=str(tmp_path / "heads.pth"))
        assert lp.load_lpips("squeeze", heads_path=str(tmp_path / "heads.pth")) is first
        image = torch.rand(3, 32, 32)
        value = lp.lpips_distance(image, torch.rand(3, 32, 32), model=first)
        assert type(value) is float and value > 0
        assert lp.lpips_distance(image, image, model=first) == 0.0
    finally:
        lp.load_lpips.cache_clear()


def test_local_backbone_path(tmp_path):
    checkpoint = _torchvision_style_checkpoint("alex", seed=6)
    features_only = {key.removeprefix("features."): value for key, value in checkpoint.items()}
    torch.save(features_only, tmp_path / "features.pth")
    torch.save(checkpoint["features.0.weight"], tmp_path / "tensor.pth")
    _random_heads("alex", tmp_path / "heads.pth")
    model = lp.LPIPS.from_pretrained("alex", backbone_path=tmp_path / "features.pth", heads_path=tmp_path / "heads.pth")
    assert torch.equal(model.backbone[10].weight, checkpoint["features.10.weight"])
    with pytest.raises(InvalidModelError, match="not a state dict"):
        lp.LPIPS.from_pretrained("alex", backbone_path=tmp_path / "tensor.pth", heads_path=tmp_path / "heads.pth")


def test_download_failure_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ModelNotFoundError, match=r"alexnet-owt-7be5be79\.pth.*backbone_path"):
        lp.load_backbone_weights("alex")


def test_weight_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        lp.load_backbone_weights("vgg", tmp_path / "missing.pth")
    torch.save(_torchvision_style_checkpoint("alex", seed=8), tmp_path / "alex.pth")
    with pytest.raises(InvalidModelError, match="do not fit LPIPS-squeeze"):
        lp.LPIPS("squeeze").load_backbone_state_dict(torch.load(tmp_path / "alex.pth"))
    _random_heads("alex", tmp_path / "alex_heads.pth")
    with pytest.raises(InvalidModelError, match="head 1"):
        lp.LPIPS("vgg").load_heads_state_dict(torch.load(tmp_path / "alex_heads.pth"))
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(InvalidModelError, match="cannot read"):
        lp.load_head_weights("vgg", tmp_path / "junk.pth")
    monkeypatch.setattr(lp, "HEAD_FILES", {})
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps lpips"):
        lp.load_head_weights("vgg")


def test_packaged_heads_are_found():
    if importlib.util.find_spec("lpips") is None and importlib.util.find_spec("torchmetrics") is None:
        pytest.skip("neither lpips nor torchmetrics is installed")
    heads = lp.load_head_weights("squeeze")
    assert heads["lin6.model.1.weight"].shape == (1, 512, 1, 1)


def test_invalid_requests():
    model = lp.LPIPS("alex").eval()
    with pytest.raises(InvalidImageError, match="at least 31x31"):
        lp.lpips_distance(torch.rand(3, 30, 40), torch.rand(3, 30, 40), model=model)
    with pytest.raises(InvalidRequestError, match="unknown LPIPS network 'resnet'"):
        lp.lpips_distance(torch.rand(3, 32, 32), torch.rand(3, 32, 32), model="resnet")
    with pytest.raises(InvalidImageError, match="same size"):
        lp.lpips_distance(torch.rand(3, 32, 32), torch.rand(3, 40, 32), model=model)
