"""DINO similarity (MagicBrush) and structure distance (PIE-Bench) on a tiny random DINO-style ViT.

The ViT is built from a config, saved to a folder and loaded back by the metrics through the public loader. The
originals load ``dino_vits16`` / ``dino_vitb8`` with torch.hub and preprocess with torchvision, neither usable
here, so the tests re-implement their steps faithfully on the same tiny model:

* MagicBrush ``eval_clip_i(metric='dino')``: ``Resize(256, bicubic)``, ``CenterCrop(224)``, ``ToTensor``,
  ``Normalize(ImageNet)`` (scaled to the 32-px model: 36 and 32; sizes and crop boxes worked out by hand), the
  model output (final-norm [CLS]) and ``1 - scipy.spatial.distance.cosine``;
* PIE-Bench ``calculate_structure_distance``: float pixels in [0, 255] times the mask, torchvision 0.13
  ``Resize(224, max_size=480)`` on a tensor (bilinear, no antialiasing; 32 and 68 here, sizes worked out by hand),
  ``Normalize(ImageNet)``, then Splice's ``VitExtractor``: the last block's fused ``qkv`` output (built here from
  the model's query/key/value weights) reshaped to ``(patch_num, 3, heads, head_dim)``, the keys' heads
  concatenated, ``attn_cosine_sim`` and ``F.mse_loss``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.spatial import distance

from instructedit.errors import InvalidImageError, InvalidMaskError, InvalidModelError, ModelNotFoundError
from instructedit.evaluation.metrics.dino import dino_similarity, load_dino
from instructedit.evaluation.metrics.structure import structure_distance

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
HEADS = 4

# MagicBrush's DINO transform for a 32-px model: Resize(36) then CenterCrop(32), as torchvision computes them.
# 50x40 -> (int(36*50/40)=45)x36, crop left round(6.5)=6 (half to even), top round(2)=2; 40x40 -> 36x36;
# 40x56 -> 36x(int(36*56/40)=50), crop top round(9)=9.
DINO_GEOMETRY = {
    (50, 40): ((45, 36), (6, 2, 38, 34)),
    (40, 40): ((36, 36), (2, 2, 34, 34)),
    (40, 56): ((36, 50), (2, 9, 34, 41)),
}

# PIE-Bench's Resize(size=32, max_size=68) (224 and 480 scaled to the 32-px model), output (width, height):
# 40x56 -> 32x(int(32*56/40)=44); 20x100 -> long int(32*100/20)=160 > 68, so short int(68*32/160)=13, long 68;
# 48x48 -> 32x32; 32x40 -> unchanged 32x40.
STRUCTURE_SIZES = {(40, 56): (32, 44), (20, 100): (13, 68), (48, 48): (32, 32), (32, 40): (32, 40)}


def _image(width: int, height: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    """(folder, model) of a tiny random ViT saved as hub DINO folders are (``ViTModel``, no pooler)."""
    from transformers import ViTConfig, ViTModel

    folder = tmp_path_factory.mktemp("models") / "tiny-dino"
    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
        qkv_bias=True,
    )
    model = ViTModel(config, add_pooling_layer=False).eval()
    model.save_pretrained(folder)
    return str(folder), model


def _magicbrush_dino_features(model, image: Image.Image) -> np.ndarray:
    size, box = DINO_GEOMETRY[image.size]
    pixels = np.asarray(image.resize(size, Image.Resampling.BICUBIC).crop(box), np.float32) / 255
    pixels = (pixels - IMAGENET_MEAN) / IMAGENET_STD
    with torch.no_grad():
        output = model(pixel_values=torch.from_numpy(pixels).permute(2, 0, 1)[None])
    return output.last_hidden_state[0, 0].double().numpy()


def test_dino_similarity_matches_magicbrush_and_is_one_for_identical_images(tiny_vit):
    folder, model = tiny_vit
    images = [_image(50, 40, 1), _image(40, 40, 2), _image(40, 56, 3)]
    references = [_image(40, 56, 4), _image(50, 40, 5), images[2]]
    expected = [
        1 - distance.cosine(_magicbrush_dino_features(model, a), _magicbrush_dino_features(model, b))
        for a, b in zip(images, references, strict=True)
    ]
    scores = dino_similarity(images, references, model=folder)
    assert scores == pytest.approx(expected, abs=1e-5)
    assert scores[2] == pytest.approx(1.0, abs=1e-6)
    assert abs(scores[0] - 1.0) > 1e-4
    assert dino_similarity(images, references, model=folder, batch_size=1) == pytest.approx(scores, abs=1e-6)


def _last_layer(model):
    return model.layers[-1] if hasattr(model, "layers") else model.encoder.layer[-1]


def _fused_qkv(layer) -> torch.nn.Linear:
    """DINO's ``attn.qkv``: one Linear whose output is [q | k | v], from the layer's separate projections."""
    attention = layer.attention
    names = ("q_proj", "k_proj", "v_proj") if hasattr(attention, "k_proj") else ("query", "key", "value")
    parts = [getattr(attention if hasattr(attention, "k_proj") else attention.attention, n) for n in names]
    fused = torch.nn.Linear(parts[0].in_features, 3 * parts[0].out_features)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([p.weight for p in parts]))
        fused.bias.copy_(torch.cat([p.bias for p in parts]))
    return fused


def _pie_bench_keys_self_sim(model, image: np.ndarray, antialias: bool) -> torch.Tensor:
    """``VitExtractor.get_keys_self_sim_from_input(global_transform(image), layer_num=last)``."""
    height, width = image.shape[:2]
    tensor = torch.from_numpy(np.transpose(image, (2, 0, 1)))[None]
    new_width, new_height = STRUCTURE_SIZES[(width, height)]
    if (new_width, new_height) != (width, height):
        tensor = F.interpolate(
            tensor, size=(new_height, new_width), mode="bilinear", align_corners=False, antialias=antialias
        )
    tensor = (tensor - torch.from_numpy(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.from_numpy(IMAGENET_STD).view(
        1, 3, 1, 1
    )
    layer = _last_layer(model)
    captured = []
    handle = layer.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    with torch.no_grad():
        model(pixel_values=tensor, interpolate_pos_encoding=True)
        handle.remove()
        qkv = _fused_qkv(layer)(layer.layernorm_before(captured[0]))[0]
    patch_num = 1 + (new_height // 8) * (new_width // 8)
    embedding_dim = qkv.shape[-1] // 3
    keys = qkv.reshape(patch_num, 3, HEADS, embedding_dim // HEADS).permute(1, 2, 0, 3)[1]
    h, t, d = keys.shape
    concatenated = keys.transpose(0, 1).reshape(t, h * d)[None, None]
    x = concatenated[0]  # attn_cosine_sim
    norm1 = x.norm(dim=2, keepdim=True)
    factor = torch.clamp(norm1 @ norm1.permute(0, 2, 1), min=1e-08)
    return (x @ x.permute(0, 2, 1)) / factor


def _pie_bench_structure_distance(model, image, reference, mask=None, antialias=False) -> float:
    first, second = np.array(image).astype(np.float32), np.array(reference).astype(np.float32)
    if mask is not None:
        first, second = first * mask, second * mask
    return F.mse_loss(
        _pie_bench_keys_self_sim(model, first, antialias), _pie_bench_keys_self_sim(model, second, antialias)
    ).item()


def test_structure_distance_matches_pie_bench(tiny_vit):
    folder, model = tiny_vit
    images = [_image(40, 56, 10), _image(20, 100, 11), _image(48, 48, 12), _image(32, 40, 13), _image(40, 56, 14)]
    references = [_image(40, 56, 15), _image(20, 100, 16), _image(48, 48, 17), _image(32, 40, 18), images[4]]
    expected = [_pie_bench_structure_distance(model, a, b) for a, b in zip(images, references, strict=True)]
    distances = structure_distance(images, references, model=folder)
    assert distances == pytest.approx(expected, rel=1e-4, abs=1e-8)
    assert distances[4] == 0.0
    assert min(distances[:4]) > 1e-6
    # Mixed sizes batched together give the same numbers as one pair at a time.
    assert structure_distance(images, references, model=folder, batch_size=1) == pytest.approx(distances, rel=1e-5)
    antialiased = structure_distance(images[:2], references[:2], model=folder, antialias=True)
    assert antialiased == pytest.approx(
        [
            _pie_bench_structure_distance(model, a, b, antialias=True)
            for a, b in zip(images[:2], references[:2], strict=True)
        ],
        rel=1e-4,
    )
    assert antialiased != pytest.approx(distances[:2], rel=1e-3)


def test_structure_distance_on_the_unedited_region(tiny_vit):
    folder, model = tiny_vit
    image, reference = _image(40, 56, 20), _image(40, 56, 21)
    edit_mask = np.zeros((56, 40), dtype=np.float32)
    edit_mask[10:40, 5:30] = 1
    # PIE-Bench's structure_distance_unedit_part passes 1 - mask, repeated to three channels.
    kept = (1 - edit_mask)[:, :, None].repeat(3, axis=2)
    expected = _pie_bench_structure_distance(model, image, reference, kept)
    masked, whole = structure_distance(
        [image, image], [reference, reference], edit_masks=[edit_mask, None], model=folder
    )
    assert masked == pytest.approx(expected, rel=1e-4)
    assert masked != pytest.approx(whole, rel=1e-3)
    everything = Image.new("L", (40, 56), 255)
    assert structure_distance([image], [reference], edit_masks=[everything], model=folder) == [None]


def test_model_loading_and_errors(tiny_vit, tmp_path):
    from transformers import CLIPConfig

    folder, _ = tiny_vit
    assert load_dino(folder) is load_dino(folder + "/")
    image = _image(40, 40, 30)
    with pytest.raises(InvalidImageError, match="pass images of the same size"):
        structure_distance([image], [_image(40, 56, 31)], model=folder)
    with pytest.raises(InvalidMaskError, match="40x30 but the reference image is 40x40"):
        structure_distance([image], [image], edit_masks=[np.zeros((30, 40))], model=folder)
    with pytest.raises(InvalidMaskError, match="mode 'RGB'"):
        structure_distance([image], [image], edit_masks=[Image.new("RGB", (40, 40))], model=folder)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        dino_similarity([image], [image], model=str(tmp_path / "missing"))
    CLIPConfig().save_pretrained(tmp_path / "clip")
    with pytest.raises(InvalidModelError, match="not a ViT"):
        structure_distance([image], [image], model=str(tmp_path / "clip"))
    assert dino_similarity([], [], model=folder) == []
