"""Bad input through the public API: every case is a typed, one-line error naming the problem and the fix;
unusual but valid images (CMYK, 16-bit, alpha, palette, EXIF-rotated, odd sizes) are converted and edited.

The file-level details (exact conversions, every message fragment of ``load_image``/``load_mask``/
``validate_text``) are unit-tested in ``test_io.py``; here each case goes through ``Editor.edit`` end to end,
so a check that the editor skips, or runs too late, fails here.
"""

from __future__ import annotations

import io
import math
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from instructedit import Editor, EditRequest
from instructedit.errors import (
    InstructEditError,
    InvalidImageError,
    InvalidMaskError,
    InvalidModelError,
    InvalidRequestError,
    ModelNotFoundError,
    NumericalError,
    UnknownMethodError,
)
from instructedit.methods import available_methods, get_method

FAST = {"num_inference_steps": 2}  # sdedit's default strength 0.8 -> one denoising step
FAST_DIFFEDIT = {"num_inference_steps": 2, "num_maps_per_mask": 2}

# ----------------------------------------------------------------------------------------------------------
# Bad files, shared with test_cli.py


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height with almost no pixel data: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(
        b"IEND", b""
    )


BAD_FILES: dict[str, tuple[Callable[[], bytes], tuple[str, ...]]] = {
    # name: (file content, fragments the one-line error must contain besides the file name)
    "zero_byte": (lambda: b"", ("empty (0 bytes)", "write it again")),
    "truncated": (lambda: _png_bytes(_noise(32, 32))[:300], ("truncated", "again")),
    "unreadable": (lambda: b"this is a text file, not a picture\n", ("not an image", "PNG, JPEG or WebP")),
    "bomb": (lambda: _png_header_only(20_000, 20_000), ("400,000,000 pixels", "decompression-bomb", "max_pixels")),
}


def write_bad_file(folder: Path, kind: str) -> tuple[Path, tuple[str, ...]]:
    """Write the bad file ``kind`` (a key of BAD_FILES) into ``folder``; return its path and message fragments."""
    content, fragments = BAD_FILES[kind]
    path = folder / f"{kind}.png"
    path.write_bytes(content())
    return path, fragments


# ----------------------------------------------------------------------------------------------------------
# helpers


def assert_one_line_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> str:
    """The raised error's message is one non-empty line containing every fragment; return it."""
    message = str(excinfo.value)
    assert message.strip(), "empty error message"
    assert "\n" not in message, message
    assert isinstance(excinfo.value, InstructEditError)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


@pytest.fixture(scope="module")
def editor() -> Editor:
    return Editor(device="cpu")


@pytest.fixture(scope="module")
def t2i(tiny_pipeline_dir) -> str:
    return tiny_pipeline_dir("t2i")


@pytest.fixture(scope="module")
def ip2p(tiny_pipeline_dir) -> str:
    return tiny_pipeline_dir("ip2p")


def _sdedit(model: str, image, **overrides) -> EditRequest:
    fields = {"image": image, "target": "a red square", "method": "sdedit", "model": model, "params": dict(FAST)}
    fields.update(overrides)
    return EditRequest(**fields)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


# ----------------------------------------------------------------------------------------------------------
# Files that cannot be edited


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_image_file(editor, t2i, tmp_path, kind):
    path, fragments = write_bad_file(tmp_path, kind)
    with pytest.raises(InvalidImageError) as excinfo:
        editor.edit(_sdedit(t2i, str(path)))
    assert_one_line_error(excinfo, f"{kind}.png", *fragments)


def test_missing_image_file(editor, t2i, tmp_path):
    with pytest.raises(InvalidImageError) as excinfo:
        editor.edit(_sdedit(t2i, str(tmp_path / "holiday.jpg")))
    assert_one_line_error(excinfo, "holiday.jpg", "does not exist", "check the path")


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_mask_file_is_a_mask_error(editor, t2i, test_image, tmp_path, kind):
    path, fragments = write_bad_file(tmp_path, kind)
    with pytest.raises(InvalidMaskError) as excinfo:
        editor.edit(_sdedit(t2i, test_image, mask=str(path)))
    message = assert_one_line_error(excinfo, f"{kind}.png", *fragments)
    assert message.startswith("mask"), message


def test_mask_of_the_wrong_size(editor, t2i, tmp_path):
    image, mask = tmp_path / "photo.png", tmp_path / "mask.png"
    _noise(45, 67).save(image)
    Image.new("L", (64, 64), 255).save(mask)
    with pytest.raises(InvalidMaskError) as excinfo:
        editor.edit(_sdedit(t2i, str(image), mask=str(mask)))
    assert_one_line_error(excinfo, "mask.png", "64x64", "45x67", "resize the mask")


@pytest.mark.parametrize(
    ("mask", "fragments"),
    [
        (Image.new("L", (32, 32), 0), ("empty", "nothing would be edited", "white on black")),
        (Image.new("RGB", (32, 32), (100, 100, 100)), ("empty", "nothing would be edited")),  # all below 50 %
        (Image.fromarray(np.full((32, 32), np.nan, dtype=np.float32)), ("NaN", "finite")),
    ],
    ids=["all-black", "dim-grey-rgb", "float-nan"],
)
def test_mask_of_an_unusable_mode_or_content(editor, t2i, test_image, mask, fragments):
    with pytest.raises(InvalidMaskError) as excinfo:
        editor.edit(_sdedit(t2i, test_image, mask=mask))
    assert_one_line_error(excinfo, "mask", *fragments)


# ----------------------------------------------------------------------------------------------------------
# Unusual images that are valid: converted, then edited; the output has the upright input size


def _case_cmyk(folder: Path) -> tuple[Path, Image.Image]:
    path = folder / "print.jpg"
    cmyk = Image.new("CMYK", (32, 32), (0, 200, 200, 0))
    cmyk.paste((200, 0, 200, 0), (8, 8, 24, 24))
    cmyk.save(path, quality=95)
    with Image.open(path) as stored:
        assert stored.mode == "CMYK"
        return path, stored.convert("RGB")


def _case_16bit(folder: Path) -> tuple[Path, Image.Image]:
    grey = np.random.default_rng(1).integers(0, 256, (32, 32), dtype=np.uint16)
    path = folder / "depth.png"
    Image.fromarray(grey * 257).save(path)  # v * 257 is v in 16 bits: scales back to v exactly
    with Image.open(path) as stored:
        assert stored.mode in ("I;16", "I")
    return path, Image.fromarray(grey.astype(np.uint8)).convert("RGB")


def _case_alpha(folder: Path) -> tuple[Path, Image.Image]:
    rgb = np.asarray(_noise(32, 32, seed=2))
    alpha = np.where(np.arange(32)[None, :] < 16, 255, 0).repeat(32, axis=0).astype(np.uint8)  # right half clear
    path = folder / "cutout.png"
    Image.fromarray(np.dstack([rgb, alpha])).save(path)
    on_white = np.where(alpha[..., None] == 255, rgb, 255).astype(np.uint8)
    return path, Image.fromarray(on_white)


def _case_palette(folder: Path) -> tuple[Path, Image.Image]:
    palette = _noise(32, 32, seed=3).quantize(colors=16)
    path = folder / "gif-like.png"
    palette.save(path)
    return path, palette.convert("RGB")


def _case_exif_rotated(folder: Path) -> tuple[Path, Image.Image]:
    upright = _noise(40, 24, seed=4)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = folder / "phone.png"  # PNG (eXIf chunk) so the comparison is exact
    upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif.tobytes())
    with Image.open(path) as stored:
        assert stored.size == (24, 40)
    return path, upright


def _case_odd_size(folder: Path) -> tuple[Path, Image.Image]:
    image = _noise(45, 67, seed=5)
    path = folder / "odd.png"
    image.save(path)
    return path, image


CONVERTED = {
    "cmyk": _case_cmyk, "16-bit": _case_16bit, "alpha": _case_alpha, "palette": _case_palette,
    "exif-rotated": _case_exif_rotated, "not-multiple-of-8": _case_odd_size,
}


@pytest.mark.parametrize("case", list(CONVERTED))
def test_unusual_image_is_converted_and_edited(editor, t2i, tmp_path, case):
    path, upright_rgb = CONVERTED[case](tmp_path)
    from_file = editor.edit(_sdedit(t2i, str(path)))
    assert from_file.image.mode == "RGB"
    assert from_file.image.size == upright_rgb.size
    assert from_file.record.image_size == upright_rgb.size
    # The file is edited exactly as its RGB, upright, white-backed equivalent would be.
    reference = editor.edit(_sdedit(t2i, upright_rgb))
    np.testing.assert_array_equal(_pixels(from_file.image), _pixels(reference.image))


def test_mask_on_an_odd_size_image_comes_back_at_that_size(editor, t2i):
    image = _noise(45, 67, seed=6)
    mask = np.zeros((67, 45), dtype=np.uint8)
    mask[10:40, 5:30] = 255
    result = editor.edit(_sdedit(t2i, image, mask=Image.fromarray(mask)))
    assert result.image.size == (45, 67)
    assert result.mask is not None and result.mask.size == (45, 67)
    assert result.record.mask_source == "user"


def test_diffedit_produced_mask_on_an_odd_size_image(editor, t2i):
    result = editor.edit(EditRequest(
        image=_noise(45, 67, seed=7), source="a noisy picture", target="a red square", method="diffedit",
        model=t2i, params=dict(FAST_DIFFEDIT),
    ))
    assert result.image.size == (45, 67) and result.mask.size == (45, 67)
    assert set(np.unique(np.asarray(result.mask))) <= {0, 255}
    assert result.record.mask_source == "produced"


# ----------------------------------------------------------------------------------------------------------
# Texts


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_instruction(editor, ip2p, test_image, text):
    with pytest.raises(InvalidRequestError) as excinfo:
        editor.edit(EditRequest(image=test_image, instruction=text, method="ip2p", model=ip2p, params=dict(FAST)))
    assert_one_line_error(excinfo, "instruction is empty", "e.g.")


def test_missing_instruction(editor, ip2p, test_image):
    with pytest.raises(InvalidRequestError) as excinfo:
        editor.edit(EditRequest(image=test_image, method="ip2p", model=ip2p, params=dict(FAST)))
    assert_one_line_error(excinfo, "ip2p needs", "instruction")


def test_ten_thousand_character_instruction(editor, ip2p, test_image):
    with pytest.raises(InvalidRequestError) as excinfo:
        editor.edit(EditRequest(image=test_image, instruction="make it red " * 834, method="ip2p", model=ip2p))
    assert_one_line_error(excinfo, "instruction", "10,00", "characters", "shorten")


def test_ten_thousand_character_caption(editor, t2i, test_image):
    with pytest.raises(InvalidRequestError) as excinfo:
        editor.edit(_sdedit(t2i, test_image, target="x" * 10_000))
    assert_one_line_error(excinfo, "target caption", "10,000 characters", "shorten")


@pytest.mark.parametrize("method", ["sdedit", "encode-decode", "diffedit"])
def test_caption_method_given_only_an_instruction(editor, t2i, test_image, method):
    with pytest.raises(InvalidRequestError) as excinfo:
        editor.edit(EditRequest(image=test_image, instruction="make the square blue", method=method, model=t2i,
                                plan=False))
    assert_one_line_error(excinfo, f"{method} needs a target caption", "method='ip2p'", "(target)")
    # library errors name the request field, not a CLI flag; each interface spells the field its own way
    assert excinfo.value.field == "target" and excinfo.value.suggest == {"method": "ip2p"}
    assert "--" not in str(excinfo.value)


def test_caption_method_given_nothing(editor, t2i, test_image):
    with pytest.raises(InvalidRequestError) as excinfo:
        editor.edit(EditRequest(image=test_image, method="sdedit", model=t2i))
    assert_one_line_error(excinfo, "needs a target caption", "(target)")
    assert excinfo.value.field == "target"


# ----------------------------------------------------------------------------------------------------------
# Methods and parameters


def test_unknown_method_lists_the_choices(editor, t2i, test_image):
    with pytest.raises(UnknownMethodError) as excinfo:
        editor.edit(_sdedit(t2i, test_image, method="photoshop"))
    assert_one_line_error(excinfo, "photoshop", *(m.name for m in available_methods()))
    assert isinstance(excinfo.value, InvalidRequestError)  # callers catching request errors catch it too


def test_method_aliases_resolve():
    assert get_method("img2img").name == "sdedit"
    assert get_method(" Instruct_Pix2Pix ").name == "ip2p"
    assert get_method("ddim").name == "encode-decode"


def test_unknown_parameter_lists_the_valid_ones(editor, t2i, test_image):
    with pytest.raises(InvalidRequestError) as excinfo:
        editor.edit(_sdedit(t2i, test_image, params={**FAST, "image_guidance_scale": 1.5}))
    assert_one_line_error(excinfo, "image_guidance_scale", "strength", "num_inference_steps", "guidance_scale")


@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        ({"strength": 1.5}, ("strength=1.5", "out of range", "[0.0, 1.0]")),
        ({"strength": -0.1}, ("strength=-0.1", "out of range")),
        ({"num_inference_steps": 0}, ("num_inference_steps=0", "out of range")),
        ({"num_inference_steps": 2.5}, ("num_inference_steps=2.5", "not a valid int")),
        ({"guidance_scale": "high"}, ("guidance_scale='high'", "not a valid float")),
        ({"scheduler": "lms"}, ("scheduler='lms'", "must be one of", "ddim")),
        ({"num_inference_steps": 2, "strength": 0.1}, ("no denoising step", "raise strength")),
    ],
    ids=["strength-1.5", "strength-negative", "zero-steps", "fractional-steps", "text-guidance", "scheduler",
         "no-step-left"],
)
def test_bad_parameter_value(editor, t2i, test_image, params, fragments):
    with pytest.raises(InvalidRequestError) as excinfo:
        editor.edit(_sdedit(t2i, test_image, params=params))
    assert_one_line_error(excinfo, *fragments)


def test_nan_parameter_is_a_typed_error(editor, t2i, test_image):
    with pytest.raises(InvalidRequestError) as excinfo:
        editor.edit(_sdedit(t2i, test_image, params={**FAST, "strength": math.nan}))
    assert_one_line_error(excinfo, "strength")


def test_seed_out_of_range_is_a_typed_error(editor, t2i, test_image):
    with pytest.raises(InvalidRequestError) as excinfo:
        editor.edit(_sdedit(t2i, test_image, seed=2**70))
    assert_one_line_error(excinfo, "seed")


# ----------------------------------------------------------------------------------------------------------
# Models


def test_model_path_that_does_not_exist(editor, test_image, tmp_path):
    missing = str(tmp_path / "models" / "my-sd")
    with pytest.raises(ModelNotFoundError) as excinfo:
        editor.edit(_sdedit(missing, test_image))
    assert_one_line_error(excinfo, missing, "does not exist", "hub id")


def test_hub_id_that_cannot_be_fetched_offline(editor, test_image):
    with pytest.raises(ModelNotFoundError) as excinfo:
        editor.edit(_sdedit("nobody-here/no-such-model", test_image))
    assert_one_line_error(excinfo, "nobody-here/no-such-model", "huggingface-cli download")


def _empty_folder(folder: Path, model: str) -> Path:
    folder.mkdir()
    return folder


def _without_vae(folder: Path, model: str) -> Path:
    shutil.copytree(model, folder)
    shutil.rmtree(folder / "vae")
    return folder


def _corrupt_weights(folder: Path, model: str) -> Path:
    shutil.copytree(model, folder)
    for weights in (folder / "unet").glob("*.safetensors"):
        weights.write_bytes(b"not safetensors")
    return folder


def _an_image_file(folder: Path, model: str) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    path = folder.with_suffix(".png")
    _noise(8, 8).save(path)
    return path


@pytest.mark.parametrize("make", [_empty_folder, _without_vae, _corrupt_weights, _an_image_file],
                         ids=["empty-folder", "no-vae", "corrupt-weights", "image-file"])
def test_path_that_exists_but_is_not_a_model(editor, t2i, test_image, tmp_path, make):
    path = str(make(tmp_path / "not-a-model", t2i))
    with pytest.raises((ModelNotFoundError, InvalidModelError)) as excinfo:
        editor.edit(_sdedit(path, test_image))
    assert_one_line_error(excinfo, path, "diffusers")


def test_text_to_image_model_given_to_ip2p(editor, t2i, test_image):
    with pytest.raises(InvalidModelError) as excinfo:
        editor.edit(EditRequest(image=test_image, instruction="make it red", method="ip2p", model=t2i,
                                params=dict(FAST)))
    assert_one_line_error(excinfo, t2i, "InstructPix2Pix", "8 input channels", "has 4", "model='")
    assert excinfo.value.field == "model"


@pytest.mark.parametrize("method", ["sdedit", "encode-decode", "diffedit"])
def test_ip2p_model_given_to_a_text_to_image_method(editor, ip2p, test_image, method):
    with pytest.raises(InvalidModelError) as excinfo:
        editor.edit(EditRequest(image=test_image, target="a red square", method=method, model=ip2p,
                                params=dict(FAST)))
    assert_one_line_error(excinfo, method, ip2p, "text-to-image", "model='")
    assert excinfo.value.field == "model"


# ----------------------------------------------------------------------------------------------------------
# Numerical failure


@pytest.mark.parametrize("where", ["unet", "vae-decoder"])
def test_nan_output_is_a_numerical_error_and_the_editor_recovers(editor, t2i, test_image, where):
    components = editor.load(t2i)
    module = components.unet if where == "unet" else components.vae.decoder

    def poison(mod, args, output):
        if isinstance(output, tuple):
            return (torch.full_like(output[0], math.nan), *output[1:])
        if hasattr(output, "sample"):
            output.sample = torch.full_like(output.sample, math.nan)
            return output
        return torch.full_like(output, math.nan)

    handle = module.register_forward_hook(poison)
    try:
        with pytest.raises(NumericalError) as excinfo:
            editor.edit(_sdedit(t2i, test_image))
    finally:
        handle.remove()
    assert_one_line_error(excinfo, "NaN", "float32")
    # The lock and the UNet counter were released: the next edit runs normally.
    assert editor.edit(_sdedit(t2i, test_image)).image.size == test_image.size


# ----------------------------------------------------------------------------------------------------------
# Determinism and the record


def test_same_seed_same_image_different_seed_different_image(editor, t2i, test_image):
    first = editor.edit(_sdedit(t2i, test_image, seed=11))
    again = editor.edit(_sdedit(t2i, test_image, seed=11))
    other = editor.edit(_sdedit(t2i, test_image, seed=12))
    np.testing.assert_array_equal(_pixels(first.image), _pixels(again.image))
    assert np.abs(_pixels(first.image) - _pixels(other.image)).max() > 0


def test_no_seed_draws_one_and_records_it(editor, t2i, test_image):
    drawn = editor.edit(_sdedit(t2i, test_image, seed=None))
    assert isinstance(drawn.record.seed, int)
    replay = editor.edit(_sdedit(t2i, test_image, seed=drawn.record.seed))
    np.testing.assert_array_equal(_pixels(drawn.image), _pixels(replay.image))


def test_record_holds_every_resolved_parameter(editor, t2i, test_image):
    result = editor.edit(_sdedit(t2i, test_image, source="a noisy picture", seed=5,
                                 params={"num_inference_steps": 4, "strength": 0.5}))
    record = result.record
    sdedit = get_method("sdedit")
    assert record.params == {**sdedit.defaults, "num_inference_steps": 4, "strength": 0.5}
    assert (record.method, record.model, record.seed) == ("sdedit", t2i, 5)
    assert (record.source, record.target, record.instruction) == ("a noisy picture", "a red square", None)
    assert record.image_size == (32, 32)
    # int(4 * 0.5) = 2 denoising steps, each one UNet call on [unconditional, text] (guidance 7.5 > 1).
    assert (record.unet_calls, record.unet_evals) == (2, 4)
    assert record.mask_source is None and record.wall_time_s > 0
    assert (record.device, record.dtype) == ("cpu", "float32")
    # The record is enough to reproduce the output exactly.
    replay = editor.edit(EditRequest(
        image=test_image, source=record.source, target=record.target, method=record.method,
        model=record.model, params=record.params, seed=record.seed,
    ))
    np.testing.assert_array_equal(_pixels(result.image), _pixels(replay.image))


def test_record_of_ip2p_and_diffedit(editor, t2i, ip2p, test_image):
    pix = editor.edit(EditRequest(image=test_image, instruction="make it red", method="instruct-pix2pix",
                                  model=ip2p, params=dict(FAST)))
    assert pix.record.method == "ip2p" and pix.record.instruction == "make it red"
    assert set(pix.record.params) == set(get_method("ip2p").defaults)
    # Two Euler-ancestral steps, each one call on [text+image, image, unconditional].
    assert (pix.record.unet_calls, pix.record.unet_evals) == (2, 6)
    diff = editor.edit(EditRequest(image=test_image, source="a square", target="a red square", method="diffedit",
                                   model=t2i, params=dict(FAST_DIFFEDIT)))
    assert set(diff.record.params) == set(get_method("diffedit").defaults)
    assert diff.record.params["num_maps_per_mask"] == 2 and diff.record.unet_calls > 0
