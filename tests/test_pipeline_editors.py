"""The large editors that wrap a diffusers pipeline (Kontext, FLUX.2, SDXL InstructPix2Pix, LEDITS++ ...): each
equals the pipeline called directly on tiny random components with the same seed and settings, loads by folder
and by hub id through the real ``from_pretrained`` paths, honours or refuses a mask, and records its calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from instructedit import Editor, EditRequest
from instructedit.errors import InvalidModelError, InvalidRequestError, ModelNotFoundError
from instructedit.methods import get_method
from instructedit.models import tiny_editors


@pytest.fixture(scope="module")
def image64() -> Image.Image:
    y, x = np.mgrid[0:64, 0:64]
    array = np.stack([x * 4, y * 4, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    array[16:40, 20:44] = [250, 30, 30]
    return Image.fromarray(array)


@pytest.fixture(scope="module")
def kontext():
    return tiny_editors.tiny_kontext()


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _direct(pipe, **kwargs) -> Image.Image:
    pipe.set_progress_bar_config(disable=True)
    return pipe(generator=torch.Generator("cpu").manual_seed(kwargs.pop("seed", 0)), output_type="pil",
                **kwargs).images[0]


def _edit(editor: Editor, method: str, model: str, image, *, seed: int = 0, **fields):
    return editor.edit(EditRequest(image=image, method=method, model=model, seed=seed, **fields))


KONTEXT_PARAMS = {"num_inference_steps": 2, "max_area": 64 * 64, "auto_resize": False, "max_sequence_length": 48}


def test_kontext_equals_the_pipeline_and_records_calls(kontext, image64):
    editor = Editor(device="cpu")
    editor.add_pipeline(kontext, "tiny-kontext")
    ours = _edit(editor, "kontext", "tiny-kontext", image64, instruction="make the square blue", seed=3,
                 params=KONTEXT_PARAMS)
    theirs = _direct(kontext, image=image64, prompt="make the square blue", seed=3, num_inference_steps=2,
                     max_area=64 * 64, _auto_resize=False, max_sequence_length=48)
    assert np.array_equal(_pixels(ours.image), _pixels(theirs))
    record = ours.record
    assert (record.unet_calls, record.unet_evals) == (2, 2)  # guidance-distilled: one transformer call per step
    assert record.params["guidance_scale"] == 3.5 and record.model_revision == "in-memory"
    assert record.memory["offload"] == "none" and record.seed == 3

    # true CFG against a negative prompt doubles the calls, exactly as the pipeline does
    cfg = _edit(editor, "kontext", "tiny-kontext", image64, instruction="make the square blue", seed=3,
                params={**KONTEXT_PARAMS, "true_cfg_scale": 2.0, "negative_prompt": "blurry"})
    assert cfg.record.unet_calls == 4
    other_seed = _edit(editor, "kontext", "tiny-kontext", image64, instruction="make the square blue", seed=4,
                       params=KONTEXT_PARAMS)
    assert not np.array_equal(_pixels(other_seed.image), _pixels(ours.image))


def test_kontext_mask_runs_the_inpainting_variant(kontext, image64):
    from diffusers import FluxKontextInpaintPipeline

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    editor = Editor(device="cpu")
    editor.add_pipeline(kontext, "tiny-kontext")
    ours = _edit(editor, "kontext", "tiny-kontext", image64, instruction="make the square blue", mask=mask,
                 params={**KONTEXT_PARAMS, "strength": 0.8})
    inpaint = FluxKontextInpaintPipeline.from_pipe(kontext)
    theirs = _direct(inpaint, image=image64, mask_image=mask, prompt="make the square blue", strength=0.8,
                     num_inference_steps=2, max_area=64 * 64, _auto_resize=False, max_sequence_length=48)
    assert np.array_equal(_pixels(ours.image), _pixels(theirs))
    assert ours.record.mask_source == "user" and ours.mask is not None


def test_flux2_klein_equals_the_pipeline_and_pastes_outside_a_mask(image64):
    pipe = tiny_editors.tiny_flux2_klein()
    editor = Editor(device="cpu")
    editor.add_pipeline(pipe, "tiny-klein")
    params = {"num_inference_steps": 2, "max_sequence_length": 64, "text_encoder_out_layers": "1"}
    ours = _edit(editor, "flux2", "tiny-klein", image64, instruction="add a hat", params=params)
    theirs = _direct(pipe, image=image64, prompt="add a hat", num_inference_steps=2, max_sequence_length=64,
                     text_encoder_out_layers=(1,))
    theirs = theirs.resize(image64.size, Image.Resampling.LANCZOS) if theirs.size != image64.size else theirs
    assert np.array_equal(_pixels(ours.image), _pixels(theirs))

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    masked = _edit(editor, "flux2", "tiny-klein", image64, instruction="add a hat", mask=mask, params=params)
    outside = np.asarray(mask) == 0
    assert np.array_equal(_pixels(masked.image)[outside], _pixels(image64)[outside])  # the input's own pixels
    assert np.array_equal(_pixels(masked.image)[~outside], _pixels(ours.image)[~outside])


def test_sdxl_instruct_pix2pix_equals_the_pipeline(image64):
    pipe = tiny_editors.tiny_sdxl_ip2p()
    editor = Editor(device="cpu")
    editor.add_pipeline(pipe, "tiny-sdxl-ip2p")
    ours = _edit(editor, "ip2p-xl", "tiny-sdxl-ip2p", image64, instruction="make it blue",
                 params={"num_inference_steps": 2})
    theirs = _direct(pipe, image=image64, prompt="make it blue", num_inference_steps=2)
    assert np.array_equal(_pixels(ours.image), _pixels(theirs))
    assert ours.record.unet_calls == 2 and ours.record.unet_evals == 6  # text, image and unconditional rows


def test_ledits_pp_equals_invert_then_call_with_the_changed_words(test_image):
    from diffusers import DPMSolverMultistepScheduler, LEditsPPPipelineStableDiffusion

    sd = tiny_editors.tiny_stable_diffusion()
    editor = Editor(device="cpu")
    editor.add_pipeline(sd, "tiny-sd")
    # the tiny UNet attends at one resolution only, not the latent/4 LEDITS++ reads its attention masks at
    params = {"num_inversion_steps": 3, "use_intersect_mask": False}
    ours = _edit(editor, "ledits++", "tiny-sd", test_image, source="a red square", target="a blue square",
                 params=params)
    pipe = LEditsPPPipelineStableDiffusion.from_pipe(sd)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(sd.scheduler.config, algorithm_type="sde-dpmsolver++",
                                                             solver_order=2)  # the documented difference
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(0)
    pipe.invert(image=test_image, source_prompt="a red square", num_inversion_steps=3, generator=generator)
    theirs = pipe(editing_prompt=["blue", "red"], reverse_editing_direction=[False, True], generator=generator,
                  use_intersect_mask=False, output_type="pil").images[0]
    assert np.array_equal(_pixels(ours.image), _pixels(theirs))
    assert ours.record.unet_calls > 0

    from instructedit.methods.ledits_pp import concepts

    assert concepts("red; -blue", None, "x") == (["red", "blue"], [False, True])
    with pytest.raises(InvalidRequestError) as excinfo:
        _edit(editor, "ledits++", "tiny-sd", test_image, source="a red square", target="a red square")
    assert excinfo.value.field == "target"
    with pytest.raises(InvalidRequestError) as excinfo:
        _edit(editor, "ledits++", "tiny-sd", test_image, target="a blue square", params={"editing_prompt": "red; -"})
    assert excinfo.value.field == "params.editing_prompt"


def test_pipeline_editors_load_by_folder_and_hub_id(kontext, image64, tmp_path, monkeypatch):
    folder = tmp_path / "kontext"
    kontext.save_pretrained(folder)
    editor = Editor(device="cpu")
    ours = _edit(editor, "kontext", str(folder), image64, instruction="make the square blue", params=KONTEXT_PARAMS)
    theirs = _direct(kontext, image=image64, prompt="make the square blue", num_inference_steps=2,
                     max_area=64 * 64, _auto_resize=False, max_sequence_length=48)
    assert np.array_equal(_pixels(ours.image), _pixels(theirs))
    revision = ours.record.model_revision
    assert revision.startswith("local:") and len(revision) == len("local:") + 16
    again = _edit(editor, "kontext", str(folder), image64, instruction="make it green", params=KONTEXT_PARAMS)
    assert again.record.model_revision == revision  # loaded once, same weights

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as excinfo:  # the default hub id, offline: how to fetch it
        Editor(device="cpu").edit(EditRequest(image=image64, instruction="x", method="kontext"))
    assert "black-forest-labs/FLUX.1-Kontext-dev" in str(excinfo.value) and "--local-dir" in str(excinfo.value)
    with pytest.raises(ModelNotFoundError):
        _edit(Editor(device="cpu"), "kontext", str(tmp_path / "missing"), image64, instruction="x")


def test_a_model_of_another_family_is_refused_naming_the_method_that_runs_it(kontext, image64, tmp_path):
    folder = tmp_path / "kontext"
    kontext.save_pretrained(folder)
    with pytest.raises(InvalidModelError) as excinfo:
        _edit(Editor(device="cpu"), "qwen-edit", str(folder), image64, instruction="x")
    assert excinfo.value.field == "model" and excinfo.value.suggest == {"method": "kontext"}
    with pytest.raises(InvalidModelError) as excinfo:  # our InstructPix2Pix composes SD-1 components
        _edit(Editor(device="cpu"), "ip2p", str(folder), image64, instruction="x")
    assert "kontext" in str(excinfo.value) and excinfo.value.field == "model"


def test_memory_options_are_checked_and_cpu_offload_is_refused(kontext, image64, tmp_path):
    from instructedit.engine.pipelines import MemoryOptions

    with pytest.raises(InvalidModelError) as excinfo:
        MemoryOptions(offload="disk")
    assert excinfo.value.field == "offload"
    with pytest.raises(InvalidModelError):
        MemoryOptions(quantization="bnb-4bit", gguf_file="x.gguf")
    folder = tmp_path / "kontext"
    kontext.save_pretrained(folder)
    with pytest.raises(InvalidModelError) as excinfo:
        _edit(Editor(device="cpu", memory=MemoryOptions(offload="model")), "kontext", str(folder), image64,
              instruction="x", params=KONTEXT_PARAMS)
    assert excinfo.value.field == "offload" and excinfo.value.suggest == {"offload": "none"}
    import importlib.util

    for quantization, package in (("bnb-4bit", "bitsandbytes"), ("torchao-int8", "torchao")):
        if importlib.util.find_spec(package) is None:  # the CPU test machines have neither: the error says so
            with pytest.raises(InvalidModelError) as excinfo:
                _edit(Editor(device="cpu", memory=MemoryOptions(quantization=quantization)), "kontext",
                      str(folder), image64, instruction="x", params=KONTEXT_PARAMS)
            assert excinfo.value.field == "quantization" and f"pip install {package}" in str(excinfo.value)

    # VAE tiling and slicing are applied (the pipeline's VAE says so); tiles blend at their seams, so outputs move
    # within diffusers' own tolerance for tiling (0.2 of the range at most), not more
    plain = _edit(Editor(device="cpu"), "kontext", str(folder), image64, instruction="x", params=KONTEXT_PARAMS)
    editor = Editor(device="cpu", memory=MemoryOptions(vae_tiling=True, vae_slicing=True))
    tiled = _edit(editor, "kontext", str(folder), image64, instruction="x", params=KONTEXT_PARAMS)
    assert tiled.record.memory["vae_tiling"] is True
    loaded = editor.load_pipeline(get_method("kontext"), str(folder))
    assert loaded.pipe.vae.use_tiling and loaded.pipe.vae.use_slicing
    difference = np.abs(_pixels(plain.image) - _pixels(tiled.image))
    print("tiling difference: max", difference.max(), "mean", difference.mean())
    assert 0 < difference.max() <= 0.2 * 255 and difference.mean() < 4


def test_pipeline_methods_declare_what_interfaces_need():
    for name in ("kontext", "qwen-edit", "flux2", "longcat-edit", "ledits++", "ip2p-xl"):
        method = get_method(name)
        described = method.describe()
        assert method.runs_pipeline and described["pipelines"] and described["params"]
    assert get_method("qwen-edit").defaults["negative_prompt"] == " "  # true CFG stays on (see the module)
    assert get_method("kontext").defaults["num_inference_steps"] == 28
    assert not get_method("ip2p").runs_pipeline
    assert get_method("sdxl-ip2p").name == "ip2p-xl" and get_method("flux-kontext").name == "kontext"


def test_qwen_image_edit_equals_the_pipeline(image64):
    # the pipeline works on a ~1-megapixel copy of the input whatever the output size: the slowest test here
    pipe = tiny_editors.tiny_qwen_edit()
    editor = Editor(device="cpu")
    editor.add_pipeline(pipe, "tiny-qwen-edit")
    params = {"num_inference_steps": 1, "max_sequence_length": 16, "height": 32, "width": 32}
    ours = _edit(editor, "qwen-edit", "tiny-qwen-edit", image64, instruction="make it blue", params=params)
    theirs = _direct(pipe, image=image64, prompt="make it blue", negative_prompt=" ", num_inference_steps=1,
                     max_sequence_length=16, height=32, width=32)
    assert np.array_equal(_pixels(ours.image), _pixels(theirs.resize(image64.size, Image.Resampling.LANCZOS)))
    assert ours.record.unet_calls == 2  # true CFG on (the negative prompt " "): two transformer calls per step


def test_longcat_image_edit_equals_the_pipeline(image64):
    pipe = tiny_editors.tiny_longcat_edit()
    editor = Editor(device="cpu")
    editor.add_pipeline(pipe, "tiny-longcat")
    ours = _edit(editor, "longcat-edit", "tiny-longcat", image64, instruction="make it blue",
                 params={"num_inference_steps": 1})
    theirs = _direct(pipe, image=image64, prompt="make it blue", num_inference_steps=1)
    assert theirs.size == (1024, 1024)  # the pipeline's own working size; the editor answers at the input's
    assert np.array_equal(_pixels(ours.image), _pixels(theirs.resize(image64.size, Image.Resampling.LANCZOS)))
    assert ours.image.size == image64.size and ours.record.unet_calls == 2  # CFG 4.5: two calls per step
