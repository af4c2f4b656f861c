"""CLIP-I, CLIP-T, CLIP directional similarity and CLIPScore on a tiny random CLIP.

The model is built from a config, saved to a folder with the real CLIP BPE tokenizer, and loaded back by the
metrics through the public loader, as a user's hub id or local folder would be. The metrics are checked against:

* MagicBrush's CLIP-I / CLIP-T steps (``evaluation/image_eval.py``), re-implemented here because the original
  calls ``clip.load`` (OpenAI's package, torchvision transforms and a download): ``Resize(n_px, bicubic)``,
  ``CenterCrop(n_px)``, ``ToTensor``, ``Normalize(OpenAI mean/std)``, ``encode_image``/``encode_text`` and
  ``1 - scipy.spatial.distance.cosine``; resize sizes and crop boxes are worked out by hand below;
* InstructPix2Pix's ``ClipSimilarity.forward`` arithmetic for the directional similarity, from embeddings taken
  here with ``get_image_features``/``get_text_features``;
* torchmetrics' ``CLIPScore`` itself for CLIPScore, fed exactly as PIE-Bench's ``calculate_clip_similarity``
  feeds it (uint8 CHW tensors, ``np.uint8(image * mask)`` for the edited part).
"""

from __future__ import annotations

import copy
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial import distance

from instructedit.errors import (
    InvalidImageError,
    InvalidMaskError,
    InvalidModelError,
    InvalidRequestError,
    ModelNotFoundError,
)
from instructedit.evaluation.metrics.clip import (
    clip_directional_similarity,
    clip_image_similarity,
    clip_score,
    clip_text_similarity,
    load_clip,
)
from instructedit.models.tokenizer import build_clip_tokenizer

OPENAI_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
OPENAI_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)

# Resize(32) then CenterCrop(32) as torchvision computes them, worked out by hand for the test sizes (w x h):
# 49x40 -> (int(32*49/40)=39)x32, crop left round(3.5)=4; 40x56 -> 32x(int(32*56/40)=44), crop top round(6)=6;
# 48x40 -> 38x32, crop left 3; 32x32 unchanged.
MAGICBRUSH_GEOMETRY = {
    (49, 40): ((39, 32), (4, 0, 36, 32)),
    (40, 56): ((32, 44), (0, 6, 32, 38)),
    (48, 40): ((38, 32), (3, 0, 35, 32)),
    (32, 32): ((32, 32), (0, 0, 32, 32)),
}


def _features(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _image(width: int, height: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """(folder, model, tokenizer) of a tiny random CLIP saved the way hub CLIP folders are laid out."""
    from transformers import CLIPConfig, CLIPModel

    folder = tmp_path_factory.mktemp("models") / "openai-tiny-clip"
    tokenizer = build_clip_tokenizer(folder)
    torch.manual_seed(0)
    common = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = CLIPConfig(
        text_config={
            **common,
            "vocab_size": 49408,
            "max_position_embeddings": 77,
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 49407,
        },
        vision_config={**common, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    model = CLIPModel(config).eval()
    model.save_pretrained(folder)
    return str(folder), model, tokenizer


def _magicbrush_image_features(model, image: Image.Image) -> np.ndarray:
    """MagicBrush's ``model.encode_image(transform(image))`` with clip.load's transform, for the 32-px model."""
    size, box = MAGICBRUSH_GEOMETRY[image.size]
    pixels = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BICUBIC).crop(box), np.float32) / 255
    pixels = (pixels - OPENAI_MEAN) / OPENAI_STD
    with torch.no_grad():
        output = model.get_image_features(pixel_values=torch.from_numpy(pixels).permute(2, 0, 1)[None])
    return _features(output)[0].double().numpy()


def _magicbrush_text_features(model, tokenizer, caption: str) -> np.ndarray:
    tokens = tokenizer([caption], return_tensors="pt")
    with torch.no_grad():
        output = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    return _features(output)[0].double().numpy()


def test_clip_i_matches_magicbrush_and_is_one_for_identical_images(tiny_clip):
    folder, model, _ = tiny_clip
    images = [_image(49, 40, 1), _image(40, 56, 2), _image(48, 40, 3)]
    references = [_image(48, 40, 4), _image(32, 32, 5), images[2]]
    expected = [
        1 - distance.cosine(_magicbrush_image_features(model, a), _magicbrush_image_features(model, b))
        for a, b in zip(images, references, strict=True)
    ]
    scores = clip_image_similarity(images, references, model=folder)
    assert scores == pytest.approx(expected, abs=1e-5)
    assert scores[2] == pytest.approx(1.0, abs=1e-6)
    assert abs(scores[0] - 1.0) > 1e-3  # different images really differ: the comparison above is not vacuous


def test_clip_t_matches_magicbrush(tiny_clip):
    folder, model, tokenizer = tiny_clip
    images = [_image(49, 40, 6), _image(40, 56, 7)]
    captions = ["a photo of a red bicycle", "two dogs playing in the snow"]
    expected = [
        1 - distance.cosine(_magicbrush_image_features(model, image), _magicbrush_text_features(model, tokenizer, c))
        for image, c in zip(images, captions, strict=True)
    ]
    assert clip_text_similarity(images, captions, model=folder) == pytest.approx(expected, abs=1e-5)


def test_directional_similarity_matches_instructpix2pix_arithmetic(tiny_clip):
    folder, model, tokenizer = tiny_clip
    inputs, edited = [_image(48, 40, 8), _image(32, 32, 9)], [_image(48, 40, 10), _image(32, 32, 11)]
    sources, targets = ["a cat on a sofa", "a house"], ["a dog on a sofa", "a house at night"]

    def unit(vector: np.ndarray) -> np.ndarray:
        return vector / np.linalg.norm(vector)

    expected = []
    for image_0, image_1, text_0, text_1 in zip(inputs, edited, sources, targets, strict=True):
        image_direction = unit(_magicbrush_image_features(model, image_1)) - unit(
            _magicbrush_image_features(model, image_0)
        )
        text_direction = unit(_magicbrush_text_features(model, tokenizer, text_1)) - unit(
            _magicbrush_text_features(model, tokenizer, text_0)
        )
        expected.append(
            float(image_direction @ text_direction / (np.linalg.norm(image_direction) * np.linalg.norm(text_direction)))
        )
    scores = clip_directional_similarity(inputs, edited, sources, targets, model=folder)
    assert scores == pytest.approx(expected, abs=1e-5)
    # Reversing the caption change reverses the direction; an unchanged caption has no direction.
    reversed_scores = clip_directional_similarity(inputs, edited, targets, sources, model=folder)
    assert reversed_scores == pytest.approx([-s for s in scores], abs=1e-6)
    assert clip_directional_similarity(inputs, edited, sources, sources, model=folder) == [0.0, 0.0]


def _torchmetrics_clip_score(folder: str):
    """torchmetrics' CLIPScore on the tiny folder (PIL image processor, as without torchvision)."""
    import transformers
    from torchmetrics.multimodal import CLIPScore
    from transformers import AutoTokenizer, CLIPModel, CLIPProcessor

    class TensorFeaturesCLIP(CLIPModel):
        """torchmetrics 1.9 expects tensors from get_*_features; transformers 5 returns model outputs."""

        def get_image_features(self, *args, **kwargs):
            return _features(super().get_image_features(*args, **kwargs))

        def get_text_features(self, *args, **kwargs):
            return _features(super().get_text_features(*args, **kwargs))

    processor_class = getattr(transformers, "CLIPImageProcessorPil", transformers.CLIPImageProcessor)
    processor = CLIPProcessor(
        image_processor=processor_class(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=AutoTokenizer.from_pretrained(folder),
    )
    return CLIPScore(model_name_or_path=lambda: (TensorFeaturesCLIP.from_pretrained(folder).eval(), processor))


def test_clip_score_equals_torchmetrics_as_pie_bench_calls_it(tiny_clip):
    folder, _, _ = tiny_clip
    images = [_image(32, 32, 12), _image(48, 40, 13), _image(48, 40, 14)]
    captions = ["a red apple on a table", "a mountain lake", "an old car"]
    edit_mask = np.zeros((40, 48), dtype=np.float64)
    edit_mask[5:30, 10:40] = 1
    masks = [None, None, edit_mask]

    metric = _torchmetrics_clip_score(folder)
    expected = []
    for image, caption, mask in zip(images, captions, masks, strict=True):
        pixels = np.array(image)
        if mask is not None:  # PIE-Bench: mask repeated to 3 channels, img = np.uint8(img * mask)
            pixels = np.uint8(pixels * mask[:, :, None].repeat(3, axis=2))
        expected.append(metric(torch.tensor(pixels).permute(2, 0, 1), caption).item())

    scores = clip_score(images, captions, edit_masks=masks, model=folder)
    assert scores == pytest.approx(expected, abs=1e-3)
    assert all(0.0 <= s <= 100.0 for s in scores)
    assert scores[2] != pytest.approx(clip_score(images[2:], captions[2:], model=folder)[0], abs=1e-3)


def test_clip_score_is_clamped_at_zero_and_undefined_for_an_empty_edit(tiny_clip, tmp_path):
    folder, model, tokenizer = tiny_clip
    images = [_image(32, 32, 15), _image(48, 40, 16)]
    captions = ["a cat", "the sea at night"]
    cosines = [
        1 - distance.cosine(_magicbrush_image_features(model, i), _magicbrush_text_features(model, tokenizer, c))
        for i, c in zip(images, captions, strict=True)
    ]
    assert clip_score(images, captions, model=folder) == pytest.approx([100 * max(c, 0) for c in cosines], abs=1e-3)
    # The same CLIP with its text projection negated: every cosine flips sign, so every score clamps to 0.
    negated = tmp_path / "openai-negated-clip"
    shutil.copytree(folder, negated)
    flipped = copy.deepcopy(model)
    with torch.no_grad():
        flipped.text_projection.weight.neg_()
    flipped.save_pretrained(negated)
    assert min(cosines) > 0.01
    assert clip_score(images, captions, model=str(negated)) == [0.0, 0.0]
    assert clip_score(images[:1], captions[:1], edit_masks=[Image.new("L", (32, 32), 0)], model=folder) == [None]


def test_batching_and_model_cache(tiny_clip):
    folder, _, _ = tiny_clip
    images = [_image(49, 40, 30), _image(32, 32, 31), _image(40, 56, 32)]
    references = [_image(32, 32, 33), _image(48, 40, 34), _image(32, 32, 35)]
    one_by_one = clip_image_similarity(images, references, model=folder, batch_size=1)
    assert clip_image_similarity(images, references, model=folder, batch_size=3) == pytest.approx(one_by_one, abs=1e-6)
    assert load_clip(folder) is load_clip(folder + "/")  # loaded once per (model, device)
    assert clip_image_similarity([], [], model=folder) == []


def test_input_errors_are_clear(tiny_clip):
    folder, _, _ = tiny_clip
    image = _image(32, 32, 40)
    with pytest.raises(InvalidRequestError, match=r"captions\[1\] is empty"):
        clip_text_similarity([image, image], ["a cat", "  "], model=folder)
    with pytest.raises(InvalidRequestError, match=r"target_captions\[0\]"):
        clip_directional_similarity([image], [image], ["a cat"], [""], model=folder)
    with pytest.raises(InvalidRequestError, match="equal length"):
        clip_text_similarity([image, image], ["a cat"], model=folder)
    with pytest.raises(InvalidRequestError, match="not a list"):
        clip_image_similarity(image, image, model=folder)
    with pytest.raises(InvalidMaskError, match="24x32 but the reference image is 32x32"):
        clip_score([image], ["a cat"], edit_masks=[np.ones((32, 24))], model=folder)
    with pytest.raises(InvalidMaskError, match="mode 'RGB'"):
        clip_score([image], ["a cat"], edit_masks=[Image.new("RGB", (32, 32))], model=folder)
    with pytest.raises(InvalidImageError, match=r"references\[0\] has 4 channels"):
        clip_image_similarity([image], [np.zeros((32, 32, 4), np.uint8)], model=folder)
    with pytest.raises(InvalidRequestError, match="unknown device"):
        clip_image_similarity([image], [image], model=folder, device="nonsense")


def test_model_errors_are_clear(tiny_clip, tmp_path):
    from transformers import ViTConfig

    image = _image(32, 32, 41)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        clip_image_similarity([image], [image], model=str(tmp_path / "missing"))
    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4).save_pretrained(tmp_path / "vit")
    with pytest.raises(InvalidModelError, match="not CLIP"):
        clip_image_similarity([image], [image], model=str(tmp_path / "vit"))
    assert not math.isnan(clip_image_similarity([image], [image], model=tiny_clip[0])[0])
