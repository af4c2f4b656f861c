"""Tests for instructedit.inputs and the engine's padding: bad input gets a typed one-line error, good input loads."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instructedit.engine.geometry import crop_to, pad_to_multiple
from instructedit.errors import InvalidImageError, InvalidMaskError, InvalidRequestError
from instructedit.inputs import files as input_files
from instructedit.inputs import (
    load_image,
    load_mask,
    read_metadata,
    save_image,
    validate_text,
)

# ----------------------------------------------------------------------------------------------------------
# helpers


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height (1-bit grey) but holds almost no pixel data: a cheap 'bomb'."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _raises(exc_type: type[Exception], *fragments: str):
    """Context manager: the call raises exc_type with a one-line message containing every fragment."""

    class _Check:
        def __enter__(self):
            self._ctx = pytest.raises(exc_type)
            self.info = self._ctx.__enter__()
            return self.info

        def __exit__(self, *exc_info):
            suppressed = self._ctx.__exit__(*exc_info)
            message = str(self.info.value)
            assert "\n" not in message, message
            for fragment in fragments:
                assert fragment in message, f"{fragment!r} not in {message!r}"
            return suppressed

    return _Check()


def _rgb(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)


# ----------------------------------------------------------------------------------------------------------
# load_image: files that cannot be read


def test_missing_path_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with _raises(InvalidImageError, "nope.png", "does not exist", "check the path"):
        load_image(path)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with _raises(InvalidImageError, str(tmp_path), "is a folder"):
        load_image(str(tmp_path))


def test_url_is_refused_with_a_hint() -> None:
    with _raises(InvalidImageError, "https://example.com/cat.png", "URL", "download it first"):
        load_image("https://example.com/cat.png")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with _raises(InvalidImageError, "empty.png", "is empty (0 bytes)"):
        load_image(path)


def test_empty_bytes() -> None:
    with _raises(InvalidImageError, "(0 bytes)", "is empty"):
        load_image(b"")


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with _raises(InvalidImageError, "notes.png", "not an image", "text file", "PNG, JPEG or WebP"):
        load_image(path)


def test_html_page_saved_as_jpg(tmp_path: Path) -> None:
    path = tmp_path / "download.jpg"
    path.write_text("<!DOCTYPE html><html><body>404</body></html>")
    with _raises(InvalidImageError, "download.jpg", "HTML page"):
        load_image(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_fails_on_load_not_later(tmp_path: Path, fmt: str) -> None:
    data = _encode(_noise(64, 64), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with Image.open(path) as lazy:  # PIL itself opens it happily: only a full decode notices
        assert lazy.size == (64, 64)
    with _raises(InvalidImageError, "cut.", "truncated", "again"):
        load_image(path)


def test_unsupported_source_type() -> None:
    with _raises(InvalidImageError, "int", "file path"):
        load_image(42)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------------
# load_image: size limit (decompression bombs)


def test_decompression_bomb_beyond_pils_own_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(20000, 20000))
    with _raises(
        InvalidImageError, "bomb.png", "400,000,000 pixels", "16,777,216", "max_pixels", "downscale"
    ):
        load_image(path)


def test_image_over_our_limit_is_refused_before_decoding() -> None:
    # 25 Mpx is under PIL's warning threshold (89 Mpx), over ours (16.8 Mpx); the file has no real pixel
    # data, so reaching the decoder would give "truncated" instead.
    with _raises(InvalidImageError, "5000x5000 = 25,000,000 pixels", "16,777,216", "max_pixels=25000000"):
        load_image(_png_header_only(5000, 5000))


def test_raising_max_pixels_lets_the_file_through() -> None:
    with _raises(InvalidImageError, "truncated"):  # got past the size check, into the decoder
        load_image(_png_header_only(5000, 5000), max_pixels=25_000_000)


def test_our_limit_overrides_pils_global_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = _encode(_noise(100, 100), "PNG")  # 10,000 px: PIL alone would raise DecompressionBombError
    assert load_image(data).size == (100, 100)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored
    with _raises(InvalidImageError, "100x100 = 10,000 pixels", "limit of 5,000"):
        load_image(data, max_pixels=5000)


def test_limit_applies_to_pil_input_too() -> None:
    with _raises(InvalidImageError, "PIL RGB image", "30x30 = 900 pixels", "limit of 899"):
        load_image(Image.new("RGB", (30, 30)), max_pixels=899)


def test_bad_max_pixels_value() -> None:
    with _raises(InvalidRequestError, "max_pixels", "-1"):
        load_image(Image.new("RGB", (8, 8)), max_pixels=-1)


# ----------------------------------------------------------------------------------------------------------
# load_image: modes


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    out = _rgb(load_image(path))
    assert np.abs(out - np.array([255, 0, 0])).max() <= 6


def test_16bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 128, 129, 257, 32767, 32768, 65280, 65535]], dtype=np.uint16)
    path = tmp_path / "depth.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as raw:
        assert raw.mode in ("I;16", "I")
        assert np.asarray(raw.convert("L"))[0, 3] == 255  # PIL's own conversion clips 257 to white
    out = _rgb(load_image(path))
    expected = [0, 0, 1, 1, 127, 128, 254, 255]  # round(v * 255 / 65535), computed by hand
    assert out[0, :, 0].tolist() == expected
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_mode_i_in_16bit_range_and_out_of_range() -> None:
    in_range = Image.fromarray(np.array([[0, 257 * 100, 65535]], dtype=np.int32))
    assert in_range.mode == "I"
    assert _rgb(load_image(in_range))[0, :, 0].tolist() == [0, 100, 255]
    wide = Image.fromarray(np.array([[-100, 0, 300]], dtype=np.int32))  # stretched min..max
    assert _rgb(load_image(wide))[0, :, 0].tolist() == [0, 64, 255]  # 100 * 255 / 400 = 63.75


def test_mode_f() -> None:
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert _rgb(load_image(unit))[0, :, 0].tolist() == [0, 128, 255]
    byte_range = Image.fromarray(np.array([[0.0, 100.4, 255.0]], dtype=np.float32))
    assert _rgb(load_image(byte_range))[0, :, 0].tolist() == [0, 100, 255]
    with _raises(InvalidImageError, "NaN or infinite"):
        load_image(Image.fromarray(np.array([[0.0, np.nan]], dtype=np.float32)))


def test_rgba_transparency_is_composited_on_white(tmp_path: Path) -> None:
    pixels = np.array([[[10, 20, 30, 255], [10, 20, 30, 0], [0, 0, 0, 128], [200, 0, 0, 0]]], dtype=np.uint8)
    path = tmp_path / "cutout.png"
    Image.fromarray(pixels).save(path)
    out = _rgb(load_image(path))
    assert out[0, 0].tolist() == [10, 20, 30]  # opaque: unchanged
    assert out[0, 1].tolist() == [255, 255, 255]  # transparent: white, not its hidden colour
    assert out[0, 3].tolist() == [255, 255, 255]
    half = 255 * (1 - 128 / 255)  # black at alpha 128 over white
    assert np.abs(out[0, 2] - half).max() <= 1


def test_la_transparency_on_white() -> None:
    la = Image.merge("LA", (Image.new("L", (2, 1), 50), Image.fromarray(np.array([[255, 0]], np.uint8))))
    out = _rgb(load_image(la))
    assert out[0].tolist() == [[50, 50, 50], [255, 255, 255]]


def test_palette_with_transparency(tmp_path: Path) -> None:
    palette = Image.new("P", (3, 1))
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    palette.putdata([0, 1, 2])
    path = tmp_path / "sprite.png"
    palette.save(path, transparency=0)
    out = _rgb(load_image(path))
    assert out[0].tolist() == [[255, 255, 255], [255, 0, 0], [0, 0, 255]]


def test_palette_without_transparency_and_gray_and_bilevel() -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 200, 0, 10, 20, 30] + [0] * (256 * 3 - 6))
    palette.putdata([1, 0])
    assert _rgb(load_image(palette))[0].tolist() == [[10, 20, 30], [0, 200, 0]]
    gray = Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8))
    assert _rgb(load_image(gray))[0].tolist() == [[0, 0, 0], [77, 77, 77], [255, 255, 255]]
    bilevel = Image.new("1", (2, 1))
    bilevel.putpixel((1, 0), 1)
    assert _rgb(load_image(bilevel))[0].tolist() == [[0, 0, 0], [255, 255, 255]]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue, as stored in the file
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    out = _rgb(load_image(path))
    assert out.shape == (40, 20, 3)  # width and height swapped
    assert np.abs(out[5, 10] - [255, 0, 0]).max() < 30  # stored left is displayed on top
    assert np.abs(out[35, 10] - [0, 0, 255]).max() < 30


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as raw:
        assert raw.n_frames == 3
    assert _rgb(load_image(path))[4, 4].tolist() == [255, 0, 0]


def test_pil_input_is_not_modified_and_bytes_input_works() -> None:
    source = Image.fromarray(np.array([[[1, 2, 3, 0]]], dtype=np.uint8))
    before = source.tobytes()
    out = load_image(source)
    assert out is not source and source.mode == "RGBA" and source.tobytes() == before
    assert out.tobytes() == bytes([255, 255, 255])
    original = _noise(5, 4)
    assert load_image(_encode(original, "PNG")).tobytes() == original.tobytes()


# ----------------------------------------------------------------------------------------------------------
# load_mask


def _l(values: list[list[int]]) -> Image.Image:
    return Image.fromarray(np.array(values, dtype=np.uint8))


def test_mask_threshold_at_half() -> None:
    mask = load_mask(_l([[0, 127, 128, 255]]))
    assert mask.mode == "L"
    assert np.asarray(mask).tolist() == [[0, 0, 255, 255]]


def test_mask_rgb_uses_the_brightest_channel() -> None:
    rgb = Image.fromarray(np.array([[[255, 0, 0], [0, 0, 100], [0, 0, 0]]], dtype=np.uint8))
    assert rgb.convert("L").getpixel((0, 0)) < 128  # a grayscale conversion would drop the red stroke
    assert np.asarray(load_mask(rgb)).tolist() == [[255, 0, 0]]


def test_mask_rgba_stroke_on_transparent_layer_and_opaque_mask() -> None:
    layer = np.zeros((1, 3, 4), dtype=np.uint8)
    layer[0, 0] = [255, 255, 255, 255]  # opaque white stroke
    layer[0, 1] = [255, 255, 255, 0]  # transparent (its colour is ignored)
    layer[0, 2] = [255, 255, 255, 100]  # faint: 100/255 < 50 %
    assert np.asarray(load_mask(Image.fromarray(layer))).tolist() == [[255, 0, 0]]
    opaque = np.array([[[0, 0, 0, 255], [255, 255, 255, 255]]], dtype=np.uint8)
    assert np.asarray(load_mask(Image.fromarray(opaque))).tolist() == [[0, 255]]


def test_mask_16bit_and_bilevel(tmp_path: Path) -> None:
    path = tmp_path / "mask16.png"
    Image.fromarray(np.array([[0, 32767, 32768, 65535]], dtype=np.uint16)).save(path)
    assert np.asarray(load_mask(path)).tolist() == [[0, 0, 255, 255]]
    bilevel = Image.new("1", (2, 1))
    bilevel.putpixel((0, 0), 1)
    assert np.asarray(load_mask(bilevel)).tolist() == [[255, 0]]


def test_mask_of_wrong_size(tmp_path: Path) -> None:
    path = tmp_path / "mask.png"
    Image.new("L", (64, 32), 255).save(path)
    with _raises(InvalidMaskError, "mask.png", "64x32", "67x45", "resize the mask to 67x45"):
        load_mask(path, size=(67, 45))
    assert load_mask(path, size=(64, 32)).size == (64, 32)


def test_empty_mask() -> None:
    with _raises(InvalidMaskError, "mask", "empty", "nothing would be edited", "white"):
        load_mask(_l([[0, 10], [127, 0]]))


def test_mask_file_problems_are_mask_errors(tmp_path: Path) -> None:
    with _raises(InvalidMaskError, "mask", "missing.png", "does not exist"):
        load_mask(tmp_path / "missing.png")
    with _raises(InvalidRequestError, "size", "(width, height)"):
        load_mask(_l([[255]]), size=(0, 5))


# ----------------------------------------------------------------------------------------------------------
# validate_text


@pytest.mark.parametrize("text", ["", "   ", "\t\n ", "\x00\x01"])
def test_empty_instruction(text: str) -> None:
    with _raises(InvalidRequestError, "instruction is empty", "make the sky red"):
        validate_text(text)


def test_missing_and_optional_text() -> None:
    with _raises(InvalidRequestError, "instruction is missing"):
        validate_text(None)
    assert validate_text(None, required=False) is None
    assert validate_text("  ", what="source caption", required=False) is None
    with _raises(InvalidRequestError, "source caption is empty", "describe the input image"):
        validate_text(" ", what="source caption")


def test_overlong_instruction() -> None:
    with _raises(InvalidRequestError, "10,000 characters", "limit of 1,000", "77 tokens", "shorten"):
        validate_text("a" * 10_000)
    assert validate_text("b" * 1000) == "b" * 1000


def test_control_characters_removed_and_whitespace_collapsed() -> None:
    assert validate_text("  make\x00 the\x1b[31m sky\n\tred \x7f ") == "make the[31m sky red"
    assert validate_text("café ☀ 猫") == "café ☀ 猫"


def test_undecodable_text_and_wrong_type() -> None:
    with _raises(InvalidRequestError, "not valid UTF-8"):
        validate_text("make it \udcff red")
    with _raises(InvalidRequestError, "must be text", "int"):
        validate_text(5)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------------
# save_image / read_metadata


def test_png_metadata_round_trip_and_parents_created(tmp_path: Path) -> None:
    image = _noise(9, 7)
    metadata = {"instructedit": '{"method": "ip2p", "seed": 3}', "instruction": "make it ☀ sunny, café"}
    path = save_image(image, tmp_path / "a" / "b" / "out.png", metadata=metadata)
    assert path == tmp_path / "a" / "b" / "out.png" and path.is_file()
    assert read_metadata(path) == metadata
    with Image.open(path) as back:
        assert back.tobytes() == image.tobytes()


@pytest.mark.parametrize("suffix", [".jpg", ".JPEG", ".webp"])
def test_lossy_formats_store_metadata_in_exif(tmp_path: Path, suffix: str) -> None:
    metadata = {"instructedit": '{"seed": 1}', "note": "ünïcode ok"}
    path = save_image(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), tmp_path / f"out{suffix}", metadata=metadata)
    assert read_metadata(path) == metadata
    assert np.abs(_rgb(load_image(path)) - 255).max() <= 2  # transparent flattened on white


def test_no_metadata_reads_back_empty(tmp_path: Path) -> None:
    for name in ("plain.png", "plain.jpg"):
        assert read_metadata(save_image(_noise(4, 4), tmp_path / name)) == {}
    with _raises(InvalidImageError, "ghost.png", "does not exist"):
        read_metadata(tmp_path / "ghost.png")


def test_unsupported_suffix_and_bad_metadata(tmp_path: Path) -> None:
    with _raises(InvalidRequestError, "out.bmp", "'.bmp' is not supported", ".png"):
        save_image(_noise(4, 4), tmp_path / "out.bmp")
    with _raises(InvalidRequestError, "'seed'", "must be str"):
        save_image(_noise(4, 4), tmp_path / "x.png", metadata={"seed": 3})  # type: ignore[dict-item]
    with _raises(InvalidRequestError, "not a valid PNG keyword"):
        save_image(_noise(4, 4), tmp_path / "x.png", metadata={" lead": "x"})
    assert not (tmp_path / "x.png").exists()


def test_unwritable_destination(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with _raises(InvalidRequestError, "cannot write", "out.png", "writable folder"):
        save_image(_noise(4, 4), blocker / "out.png")


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "result.png"
    old = _noise(6, 6, seed=1)
    save_image(old, target, metadata={"v": "1"})
    good_bytes = target.read_bytes()

    def crash(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        fp.write(b"\x89PNG half a file")  # type: ignore[union-attr]
        raise KeyboardInterrupt  # the process dies mid-write

    monkeypatch.setattr(Image.Image, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_image(_noise(6, 6, seed=2), target, metadata={"v": "2"})
    monkeypatch.undo()
    assert target.read_bytes() == good_bytes  # old content intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.png"]  # no temporary file left
    assert read_metadata(target) == {"v": "1"}

    new = _noise(6, 6, seed=3)
    save_image(new, target)
    assert load_image(target).tobytes() == new.tobytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.png"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~input_files._UMASK


# ----------------------------------------------------------------------------------------------------------
# pad_to_multiple / crop_to


def _reference_pad(image: Image.Image, width: int, height: int) -> np.ndarray:
    array = np.asarray(image)
    pads = [(0, height - image.height), (0, width - image.width)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pads, mode="symmetric")


def test_pad_67x45_to_72x48_and_crop_back() -> None:
    image = _noise(67, 45)
    padded, size = pad_to_multiple(image, 8)
    assert size == (67, 45) and padded.size == (72, 48) and padded.mode == "RGB"
    assert np.array_equal(np.asarray(padded), _reference_pad(image, 72, 48))
    restored = crop_to(padded, size)
    assert restored.size == (67, 45) and restored.tobytes() == image.tobytes()


def test_pad_masks_stay_binary_and_aligned() -> None:
    mask = load_mask(_l([[255 if (x + y) % 3 == 0 else 0 for x in range(67)] for y in range(45)]))
    padded, size = pad_to_multiple(mask, 8)
    assert padded.mode == "L" and padded.size == (72, 48)
    assert set(np.unique(np.asarray(padded)).tolist()) == {0, 255}
    assert np.array_equal(np.asarray(padded), _reference_pad(mask, 72, 48))
    assert crop_to(padded, size).tobytes() == mask.tobytes()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "1", "I;16", "P"])
def test_pad_tiny_images_many_times_their_size(mode: str) -> None:
    rng = np.random.default_rng(1)
    base = (
        Image.fromarray(rng.integers(0, 256, (2, 3, 4), dtype=np.uint8), "RGBA") if mode == "RGBA" else None
    )
    image = base or _noise(3, 2, seed=5).convert("L" if mode == "I;16" else mode)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    padded, size = pad_to_multiple(image, 16)
    assert padded.size == (16, 16) and padded.mode == image.mode and size == (3, 2)
    assert np.array_equal(np.asarray(padded), _reference_pad(image, 16, 16))
    if mode == "P":
        assert padded.getpalette() == image.getpalette()
    assert crop_to(padded, size).tobytes() == image.tobytes()


def test_pad_already_a_multiple_is_an_equal_copy() -> None:
    image = _noise(16, 8)
    padded, size = pad_to_multiple(image)
    assert padded is not image and size == (16, 8) and padded.tobytes() == image.tobytes()


def test_pad_and_crop_bad_arguments() -> None:
    with _raises(InvalidRequestError, "multiple", "0"):
        pad_to_multiple(_noise(4, 4), 0)
    with _raises(InvalidImageError, "4x4", "larger 5x4"):
        crop_to(_noise(4, 4), (5, 4))
    with _raises(InvalidRequestError, "(width, height)"):
        crop_to(_noise(4, 4), (4,))  # type: ignore[arg-type]
