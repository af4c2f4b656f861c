"""Source-caption providers: BLIP through transformers (a tiny random BLIP built here, loaded by folder as a hub
model is), the domain captioner read off the trained grounder, and clear errors for unknown or missing ones."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from instructedit.captioning import Captioner, make_captioner
from instructedit.domain import generate_samples
from instructedit.errors import InvalidRequestError, ModelNotFoundError
from instructedit.grounding.builtin import SHIPPED

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "picture", "of", "red", "circle"]


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    """A random two-layer BLIP whose language head prefers "red", saved with its processor."""
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,
        BlipProcessor,
    )

    folder = tmp_path_factory.mktemp("blip")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(WORDS)}, bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37}
    config = BlipConfig(text_config={**small, "vocab_size": len(WORDS), "encoder_hidden_size": 32,
                                     "bos_token_id": WORDS.index("[DEC]"), "pad_token_id": 0, "sep_token_id": 3},
                        vision_config={**small, "image_size": 32, "patch_size": 8}, projection_dim=32)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config)
    model.text_decoder.cls.predictions.bias.data[WORDS.index("red")] = 50.0
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_blip_captioner_decodes_as_transformers_does(tiny_blip):
    from transformers import BlipForConditionalGeneration, BlipProcessor

    image = Image.new("RGB", (40, 50), (200, 10, 10))
    captioner = make_captioner(str(tiny_blip), max_new_tokens=4)
    assert isinstance(captioner, Captioner) and captioner.name == "blip"
    processor = BlipProcessor.from_pretrained(tiny_blip)
    model = BlipForConditionalGeneration.from_pretrained(tiny_blip).eval()
    tokens = model.generate(**processor(images=image, return_tensors="pt"), max_new_tokens=4, do_sample=False)
    expected = processor.decode(tokens[0], skip_special_tokens=True).strip()
    assert captioner.caption(image) == expected == "red red red red"
    assert captioner.caption(image) == expected  # greedy: the same caption every time
    prompted = make_captioner(str(tiny_blip), max_new_tokens=2, prompt="a picture of").caption(image)
    assert prompted == "a picture of red red"


def test_unknown_or_missing_captioners_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(InvalidRequestError) as error:
        make_captioner("gpt")
    assert error.value.field == "captioner"
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        make_captioner(str(tmp_path / "nothing" / "here")).caption(Image.new("RGB", (8, 8)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download"):
        make_captioner("blip").caption(Image.new("RGB", (8, 8)))


@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="no shipped grounder")
def test_domain_captioner_reads_held_out_scenes():
    captioner = make_captioner("builtin")
    samples = generate_samples("test", 30, seed=11)
    exact = sum(captioner.caption(s.source_image()) == s.source_caption for s in samples)
    assert exact / len(samples) >= 0.9, exact
