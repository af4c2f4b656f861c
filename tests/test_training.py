"""Training building blocks: datasets and their errors, the diffusion objective, conditioning dropout, data
order, tokenizer/text encoding, InstructPix2Pix UNet surgery, pipeline folders."""

from __future__ import annotations

import json

import pytest
import torch

from instructedit.errors import DatasetError, InvalidModelError, InvalidRequestError
from instructedit.training.data import (
    EditTripletDataset,
    ImageCaptionColumns,
    ImageCaptionDataset,
    collate,
)
from instructedit.training.diffusion import (
    diffusion_loss,
    inference_scheduler,
    ip2p_dropout_masks,
    make_noise_scheduler,
    noisy_latents_and_target,
)
from instructedit.training.sampling import StepBatchSampler, step_generator
from instructedit.training.toy_data import write_toy_datasets


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run fastest single-threaded (no thread hand-offs on a shared CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_datasets(tmp_path_factory.mktemp("toy"), num_samples=6, resolution=16)


def _write_metadata(folder, lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


# --- datasets -----------------------------------------------------------------------------------------------


def test_image_caption_dataset_reads_pixels_in_range(toy):
    ds = ImageCaptionDataset(toy["t2i"], resolution=16)
    item = ds[0]
    assert len(ds) == 6
    assert item["pixel_values"].shape == (3, 16, 16)
    assert item["pixel_values"].min() >= -1 and item["pixel_values"].max() <= 1
    # a white pixel is +1, the red square's red channel 220 -> 220/127.5 - 1
    assert torch.isclose(item["pixel_values"].max(), torch.tensor(1.0))
    assert item["text"] == "a red square on a white background"


def test_triplets_carry_the_mask_and_collate(toy):
    ds = EditTripletDataset(toy["edit"], resolution=16)
    batch = collate([ds[0], ds[1]])
    assert batch["original_pixel_values"].shape == (2, 3, 16, 16)
    assert batch["mask"].shape == (2, 1, 16, 16)
    assert set(batch["mask"].unique().tolist()) == {0.0, 1.0}
    assert batch["text"] == ["make the square green", "make the square blue"]
    # where the mask is 0, input and edited images agree
    keep = batch["mask"] == 0
    assert torch.equal(
        batch["original_pixel_values"].masked_select(keep), batch["edited_pixel_values"].masked_select(keep)
    )


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['{"file_name": "0.png", "text": "a"}', "{not json"], "line 2 is not valid JSON"),
        (['{"file_name": "0.png"}'], "line 1 lacks key(s) ['text']"),
        (['{"file_name": "missing.png", "text": "a"}'], "'missing.png' not found"),
        (['["a list"]'], "not a JSON object"),
        (['{"file_name": "", "text": "a"}'], "must be a non-empty string"),
    ],
)
def test_malformed_image_caption_data_names_the_line(tmp_path, toy, lines, expected):
    folder = _write_metadata(tmp_path / "bad", lines)
    (folder / "0.png").write_bytes((toy["t2i"] / "0.png").read_bytes())
    with pytest.raises(DatasetError) as info:
        ImageCaptionDataset(folder, resolution=16)
    assert expected in str(info.value)
    assert "metadata.jsonl" in str(info.value)


def test_wrong_size_and_unreadable_images_are_dataset_errors(tmp_path, toy):
    folder = _write_metadata(
        tmp_path / "bad", ['{"file_name": "0.png", "text": "a"}', '{"file_name": "x.png", "text": "b"}']
    )
    (folder / "0.png").write_bytes((toy["t2i"] / "0.png").read_bytes())
    (folder / "x.png").write_text("not an image")
    with pytest.raises(DatasetError, match="16x16 but training runs at 32x32"):
        ImageCaptionDataset(folder, resolution=32)
    with pytest.raises(DatasetError, match="line 2: 'x.png' is not a readable image"):
        ImageCaptionDataset(folder, resolution=16)


def test_missing_folder_metadata_and_empty_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        ImageCaptionDataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="metadata.jsonl' is missing"):
        ImageCaptionDataset(tmp_path / "empty")
    _write_metadata(tmp_path / "blank", [""])
    with pytest.raises(DatasetError, match="holds no samples"):
        ImageCaptionDataset(tmp_path / "blank")


def test_triplet_errors_and_custom_columns(tmp_path, toy):
    folder = _write_metadata(tmp_path / "t", ['{"input_image": "a.png", "edit_prompt": "x"}'])
    with pytest.raises(DatasetError, match=r"lacks key\(s\) \['edited_image'\]"):
        EditTripletDataset(folder)
    renamed = _write_metadata(tmp_path / "r", [json.dumps({"img": "0.png", "caption": ""})])
    (renamed / "0.png").write_bytes((toy["t2i"] / "0.png").read_bytes())
    ds = ImageCaptionDataset(renamed, resolution=16, columns=ImageCaptionColumns(image="img", caption="caption"))
    assert ds[0]["text"] == ""  # an empty caption is allowed (the unconditional prompt)


def test_resize_option_resizes_instead_of_failing(toy):
    ds = ImageCaptionDataset(toy["t2i"], resolution=8, resize=True)
    assert ds[0]["pixel_values"].shape == (3, 8, 8)


# --- diffusion objective --------------------------------------------------------------------------------------


def test_epsilon_and_v_targets_match_the_forward_process():
    latents = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    for prediction_type in ("epsilon", "v_prediction"):
        scheduler = make_noise_scheduler(prediction_type)
        noisy, t, target = noisy_latents_and_target(latents, scheduler, step_generator(0, 0))
        ab = scheduler.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        noise = (noisy - ab.sqrt() * latents) / (1 - ab).sqrt()
        expected = noise if prediction_type == "epsilon" else ab.sqrt() * noise - (1 - ab).sqrt() * latents
        torch.testing.assert_close(target, expected, atol=1e-4, rtol=1e-4)
        # same generator state -> same draw
        again = noisy_latents_and_target(latents, scheduler, step_generator(0, 0))
        assert torch.equal(again[0], noisy)


def test_min_snr_weighting_matches_hand_computation():
    scheduler = make_noise_scheduler("epsilon")
    t = torch.tensor([10, 900])
    pred, target = torch.zeros(2, 1, 1, 1), torch.ones(2, 1, 1, 1)
    ab = scheduler.alphas_cumprod[t]
    snr = ab / (1 - ab)
    expected = (torch.clamp(snr, max=5.0) / snr).mean()
    torch.testing.assert_close(diffusion_loss(pred, target, t, scheduler, snr_gamma=5.0), expected)
    assert diffusion_loss(pred, target, t, scheduler) == 1.0


def test_unknown_prediction_type_is_rejected():
    with pytest.raises(InvalidRequestError, match="sample"):
        make_noise_scheduler("sample")


def test_inference_scheduler_keeps_betas_and_prediction_type():
    train = make_noise_scheduler("v_prediction")
    infer = inference_scheduler(train)
    assert type(infer).__name__ == "DDIMScheduler"
    assert infer.config.prediction_type == "v_prediction"
    torch.testing.assert_close(infer.alphas_cumprod, train.alphas_cumprod)


def test_ip2p_conditioning_dropout_is_five_percent_each_way():
    drop_text, drop_image = ip2p_dropout_masks(200_000, 0.05, torch.Generator().manual_seed(0))
    text_only = (drop_text & ~drop_image).float().mean().item()
    both = (drop_text & drop_image).float().mean().item()
    image_only = (~drop_text & drop_image).float().mean().item()
    for share in (text_only, both, image_only):
        assert abs(share - 0.05) < 0.003
    assert abs((~drop_text & ~drop_image).float().mean().item() - 0.85) < 0.004


# --- data order -----------------------------------------------------------------------------------------------


def test_batches_cover_each_epoch_and_resume_identically():
    full = list(StepBatchSampler(10, 5, seed=3, start=0, count=6))
    assert all(sorted(full[2 * e] + full[2 * e + 1]) == list(range(10)) for e in range(3))
    assert full[0] != full[2]  # reshuffled each epoch
    assert list(StepBatchSampler(10, 5, seed=3, start=3, count=3)) == full[3:]
    a = StepBatchSampler(10, 2, seed=3, start=0, count=1, num_processes=2, process_index=0).batch(0)
    b = StepBatchSampler(10, 2, seed=3, start=0, count=1, num_processes=2, process_index=1).batch(0)
    assert a + b == StepBatchSampler(10, 4, seed=3, start=0, count=1).batch(0)


# --- text encoders ----------------------------------------------------------------------------------------------


def test_learned_tokenizer_covers_unseen_words_and_round_trips(tmp_path):
    from transformers import CLIPTokenizer

    from instructedit.training.text_encoder import train_clip_tokenizer

    tokenizer = train_clip_tokenizer(["a red circle", "make the circle blue"] * 5, model_max_length=12)
    assert tokenizer.tokenize("circle") == ["circle</w>"]  # a training word is one token
    ids = tokenizer("erase the crimson circle")["input_ids"]
    assert tokenizer.unk_token_id not in ids[1:-1]  # unseen words fall back to byte symbols, never <unk>
    tokenizer.save_pretrained(tmp_path)
    reloaded = CLIPTokenizer.from_pretrained(tmp_path)
    assert reloaded("erase the crimson circle")["input_ids"] == ids
    assert reloaded.model_max_length == 12


def test_prompt_encoding_matches_the_pipeline(tmp_path):
    from diffusers import StableDiffusionPipeline

    from instructedit.training.pipelines import save_pipeline
    from instructedit.training.text_encoder import build_clip_text_encoder, encode_prompts

    components = _tiny_components(
        *build_clip_text_encoder(["a red square"], model_max_length=8, hidden_size=32, num_hidden_layers=1)
    )
    folder = save_pipeline(components, tmp_path / "p")
    pipe = StableDiffusionPipeline.from_pretrained(folder)  # saved in float32
    prompts = ["a red square", ""]
    ours = encode_prompts(pipe.tokenizer, pipe.text_encoder, prompts, "cpu")
    theirs, _ = pipe.encode_prompt(prompts, "cpu", 1, False)
    torch.testing.assert_close(ours, theirs)


# --- models and pipelines ----------------------------------------------------------------------------------------


def _tiny_components(tokenizer, text_encoder):
    from instructedit.engine.components import Components
    from instructedit.training.models import small_unet, small_vae

    vae = small_vae((8, 16), sample_size=16)
    unet = small_unet(text_encoder.config.hidden_size, sample_size=8, block_out_channels=(16, 32))
    return Components(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                      scheduler=inference_scheduler(make_noise_scheduler()))


def test_ip2p_unet_starts_as_the_text_to_image_unet():
    from instructedit.training.models import expand_unet_for_ip2p, small_unet

    unet = small_unet(16, sample_size=8, block_out_channels=(16, 32))
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor([3, 500]), torch.randn(2, 5, 16)
    with torch.no_grad():
        before = unet(x, t, text).sample
        expand_unet_for_ip2p(unet)
        after = unet(torch.cat([x, torch.randn(2, 4, 8, 8)], dim=1), t, text).sample
    assert unet.config.in_channels == 8 and unet.conv_in.in_channels == 8
    torch.testing.assert_close(after, before)
    assert expand_unet_for_ip2p(unet) is unet  # already expanded: unchanged
    odd = small_unet(16, sample_size=8, block_out_channels=(16, 32), in_channels=5)
    with pytest.raises(InvalidModelError, match="5 input channels"):
        expand_unet_for_ip2p(odd)


def test_pipelines_save_in_standard_layouts_and_reload(tmp_path):
    from diffusers import DiffusionPipeline

    from instructedit.training.models import expand_unet_for_ip2p
    from instructedit.training.pipelines import folder_size_mb, load_trainable_components, save_pipeline
    from instructedit.training.text_encoder import build_clip_text_encoder

    components = _tiny_components(
        *build_clip_text_encoder(["a red square"], model_max_length=8, hidden_size=32, num_hidden_layers=1)
    )
    with pytest.raises(InvalidModelError, match="needs 8 input channels"):
        save_pipeline(components, tmp_path / "wrong", kind="ip2p")
    t2i = save_pipeline(components, tmp_path / "t2i")
    half = save_pipeline(components, tmp_path / "half", save_dtype="fp16")
    assert folder_size_mb(half) == pytest.approx(folder_size_mb(t2i) / 2, rel=0.05)
    assert components.unet.dtype == torch.float32  # saving in fp16 leaves the live model alone
    for name in ("model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (t2i / name).exists()
    assert (t2i / "tokenizer" / "vocab.json").is_file() and (t2i / "tokenizer" / "merges.txt").is_file()
    assert type(DiffusionPipeline.from_pretrained(t2i)).__name__ == "StableDiffusionPipeline"

    loaded = load_trainable_components(str(half))
    assert loaded.unet.dtype == torch.float32 and loaded.text_encoder.dtype == torch.float32
    expand_unet_for_ip2p(loaded.unet)
    ip2p = save_pipeline(loaded, tmp_path / "ip2p", kind="ip2p")
    pipe = DiffusionPipeline.from_pretrained(ip2p)
    assert type(pipe).__name__ == "StableDiffusionInstructPix2PixPipeline"
    assert json.loads((ip2p / "model_index.json").read_text())["_class_name"] == type(pipe).__name__
