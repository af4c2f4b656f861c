"""Open-vocabulary grounding through transformers, on tiny random CLIPSeg, GroundingDINO and SAM models built
here and loaded by folder as hub models are: the same maps, boxes and masks as calling transformers directly,
masks at the image's size, and clear errors offline or for bad thresholds."""

from __future__ import annotations

import string

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from instructedit.errors import InvalidRequestError, ModelNotFoundError
from instructedit.grounding import ground, make_grounder
from instructedit.grounding.open_vocabulary import CLIPSegGrounder, GroundedSAMGrounder

IMAGE = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37}


def _pil(name: str):
    return getattr(transformers, f"{name}Pil", None) or getattr(transformers, name)  # no torchvision here


@pytest.fixture(scope="module")
def clipseg_dir(tmp_path_factory):
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, CLIPTokenizerFast

    folder = tmp_path_factory.mktemp("clipseg")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for letter in string.ascii_lowercase:
            vocab[letter + suffix] = len(vocab)
    processor = CLIPSegProcessor(image_processor=_pil("ViTImageProcessor")(size={"height": 32, "width": 32}),
                                 tokenizer=CLIPTokenizerFast(vocab=vocab, merges=[]))
    config = CLIPSegConfig(text_config={**SMALL, "vocab_size": len(vocab), "max_position_embeddings": 32,
                                        "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
                           vision_config={**SMALL, "image_size": 32, "patch_size": 8}, projection_dim=32,
                           extract_layers=(0, 1), reduce_dim=16, decoder_intermediate_size=32,
                           decoder_num_attention_heads=2)
    torch.manual_seed(0)
    CLIPSegForImageSegmentation(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def grounded_sam_dirs(tmp_path_factory):
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
        SamConfig,
        SamModel,
        SamProcessor,
        SwinConfig,
    )

    detector, segmenter = tmp_path_factory.mktemp("dino"), tmp_path_factory.mktemp("sam")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "the", "red", "circle", "square"]
    processor = GroundingDinoProcessor(
        image_processor=_pil("GroundingDinoImageProcessor")(size={"shortest_edge": 64, "longest_edge": 64}),
        tokenizer=BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}))
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(image_size=64, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 1],
                                   window_size=4, out_features=["stage1", "stage2"]),
        text_config=BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=16, max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=16,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=5, num_feature_levels=2,
        encoder_n_points=2, decoder_n_points=2, max_text_len=16, use_pretrained_backbone=False)
    torch.manual_seed(0)
    GroundingDinoForObjectDetection(config).save_pretrained(detector)
    processor.save_pretrained(detector)
    sam = SamConfig(
        vision_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
                       "image_size": 64, "patch_size": 8, "output_channels": 16, "window_size": 4,
                       "global_attn_indexes": [0], "mlp_dim": 16, "num_pos_feats": 8},
        prompt_encoder_config={"hidden_size": 16, "image_size": 64, "patch_size": 8, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "mlp_dim": 16,
                             "iou_head_hidden_dim": 16})
    SamModel(sam).save_pretrained(segmenter)
    sam_images = _pil("SamImageProcessor")(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    SamProcessor(image_processor=sam_images).save_pretrained(segmenter)
    return detector, segmenter


def test_clipseg_map_is_transformers_own(clipseg_dir):
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    grounder = make_grounder("clipseg", model=str(clipseg_dir), threshold=0.5)
    assert isinstance(grounder, CLIPSegGrounder)
    processor = CLIPSegProcessor.from_pretrained(clipseg_dir)
    model = CLIPSegForImageSegmentation.from_pretrained(clipseg_dir).eval()
    with torch.no_grad():
        logits = model(**processor(text=["the red circle"], images=[IMAGE], padding=True, return_tensors="pt")).logits
    np.testing.assert_allclose(grounder.probabilities(IMAGE, "the red circle"), logits.sigmoid()[0].numpy(),
                               atol=1e-6)
    found = ground(IMAGE, "the red circle", backend=grounder)
    again = ground(IMAGE, "the red circle", backend=grounder)
    assert found.mask.size == IMAGE.size and found.backend == "clipseg"
    assert np.array_equal(np.asarray(found.mask), np.asarray(again.mask))
    prob = grounder.probabilities(IMAGE, "the red circle")
    assert found.score == pytest.approx(float(prob[prob >= 0.5].mean()) if (prob >= 0.5).any() else 0.0)


def test_grounded_sam_boxes_and_masks_are_transformers_own(grounded_sam_dirs):
    from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor, SamModel, SamProcessor

    detector, segmenter = grounded_sam_dirs
    grounder = make_grounder("grounded-sam", detector=str(detector), segmenter=str(segmenter),
                             box_threshold=0.05, text_threshold=0.05)
    assert isinstance(grounder, GroundedSAMGrounder)
    processor = GroundingDinoProcessor.from_pretrained(detector)
    model = GroundingDinoForObjectDetection.from_pretrained(detector).eval()
    inputs = processor(images=IMAGE, text="the red circle.", return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    expected = processor.post_process_grounded_object_detection(outputs, inputs["input_ids"], threshold=0.05,
                                                                text_threshold=0.05, target_sizes=[(60, 80)])[0]
    boxes, scores = grounder.boxes(IMAGE, "The red circle")
    assert boxes and boxes == expected["boxes"].tolist() and scores == expected["scores"].tolist()

    sam_processor = SamProcessor.from_pretrained(segmenter)
    sam = SamModel.from_pretrained(segmenter).eval()
    sam_inputs = sam_processor(images=IMAGE, input_boxes=[boxes], return_tensors="pt")
    with torch.no_grad():
        pred = sam(**sam_inputs, multimask_output=False).pred_masks
    masks = sam_processor.image_processor.post_process_masks(pred, sam_inputs["original_sizes"],
                                                             sam_inputs["reshaped_input_sizes"])[0]
    found = grounder.ground(IMAGE, "the red circle")
    assert found.mask.size == IMAGE.size and found.score == pytest.approx(max(scores))
    np.testing.assert_array_equal(np.asarray(found.mask) > 127, masks.reshape(-1, 60, 80).any(dim=0).numpy())
    assert len(found.details["boxes"]) == 4 * len(boxes)
    strict = GroundedSAMGrounder(str(detector), str(segmenter), box_threshold=0.99999)
    nothing = strict.ground(IMAGE, "the red circle")
    assert not nothing.found and nothing.score == 0.0 and strict._segmenter is None  # SAM not even loaded


def test_offline_hub_ids_and_bad_settings_are_clear_errors(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for backend in ("clipseg", "grounded-sam"):
        with pytest.raises(ModelNotFoundError, match="huggingface-cli download"):
            make_grounder(backend).ground(IMAGE, "the red circle")
    with pytest.raises(InvalidRequestError) as error:
        CLIPSegGrounder(threshold=0)
    assert error.value.field == "threshold"
    with pytest.raises(InvalidRequestError) as error:
        GroundedSAMGrounder(box_threshold=2)
    assert error.value.field == "box_threshold"
