"""Image, mask and text input/output shared by every entry point (library, CLI, benchmark runner, service).

Everything a person hands to instructedit passes through here first, so that bad input fails early with a
one-line typed error naming the file, the problem and the fix, instead of a traceback from deep inside PIL
or torch:

* :func:`load_image` -> RGB, 8 bits per channel, EXIF orientation applied, alpha flattened on white.
* :func:`load_mask` -> mode ``"L"`` with values {0, 255}; white = edit.
* :func:`validate_text` -> a cleaned instruction or caption.
* :func:`save_image` / :func:`read_metadata` -> atomic writes with the edit record embedded in the file.
* :func:`pad_to_multiple` / :func:`crop_to` -> sizes the VAE can encode, restored exactly afterwards.
"""

from __future__ import annotations

import io
import json
import math
import numbers
import os
import re
import tempfile
import threading
import unicodedata
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TypeAlias

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from instructedit.errors import (
    InstructEditError,
    InvalidImageError,
    InvalidMaskError,
    InvalidRequestError,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageSource",
    "crop_to",
    "load_image",
    "load_mask",
    "pad_to_multiple",
    "read_metadata",
    "save_image",
    "validate_text",
]

ImageSource: TypeAlias = str | os.PathLike[str] | Image.Image | bytes
"""What :func:`load_image` and :func:`load_mask` accept: a path, a PIL image or the encoded file's bytes."""

DEFAULT_MAX_PIXELS = 4096 * 4096
"""Largest image (width x height) loaded by default: 16.8 megapixels, far above what diffusion models edit."""

MASK_THRESHOLD = 128
"""Mask values (0-255) at or above this (50 %) mean "edit"; values below mean "keep"."""

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WHITE = (255, 255, 255, 255)
_BLACK = (0, 0, 0, 255)

# Output formats by suffix, with the encoder options used (JPEG 4:4:4 so colour edges survive).
_SAVE_FORMATS: dict[str, tuple[str, dict[str, object]]] = {
    ".png": ("PNG", {}),
    ".jpg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".jpeg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".webp": ("WEBP", {"quality": 95}),
}
_EXIF_IFD = 0x8769
_EXIF_USER_COMMENT = 0x9286
_USER_COMMENT_ASCII = b"ASCII\x00\x00\x00"  # the EXIF character-code prefix of an ASCII UserComment
_MAX_EXIF_BYTES = 60_000  # a JPEG APP1 segment holds at most 64 KiB, EXIF headers included

_PIL_LIMIT_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------


def load_image(source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load an image as RGB with 8 bits per channel, ready for a diffusion model.

    ``source`` is a path (``~`` is expanded), the bytes of an encoded image file, or a PIL image (never
    modified; used at its current frame). The file is decoded fully here, so a truncated or corrupt file fails
    now rather than halfway through an edit.

    Conversions, in order:

    * animated files (GIF, APNG, WebP): the first frame;
    * EXIF orientation applied (``ImageOps.exif_transpose``), so phone photos come out upright;
    * 16-bit grayscale (``I;16``) scaled to 8 bits as ``round(v / 257)``, so 65535 -> 255 and mid-grey stays
      mid-grey (PIL's own ``convert("L")`` clips every value above 255 to white). 32-bit integer (``I``)
      images whose values lie in 0..65535 are read the same way (that is what PNG and TIFF store there);
      outside that range they are stretched linearly from their minimum to their maximum. Float (``F``)
      images in [0, 1] are multiplied by 255, in [0, 255] taken as they are, otherwise stretched;
      NaN or infinite values are an error;
    * transparency (RGBA, LA, PA, palette or grayscale with a transparent colour) is composited **on white**.
      ``diffusers.utils.load_image`` calls ``convert("RGB")``, which drops the alpha channel and shows
      whatever colour the transparent pixels happen to hold (often black, sometimes garbage); a transparent
      background looks white in every viewer, so we make it white;
    * CMYK, palette, 1-bit, grayscale, YCbCr... -> RGB with PIL's conversion (embedded ICC colour profiles are
      not applied).

    Images with more than ``max_pixels`` pixels (width x height) are refused before decoding, which also
    guards against decompression bombs. This limit replaces PIL's global ``Image.MAX_IMAGE_PIXELS`` for this
    call in both directions; ``max_pixels=None`` removes it.

    Raises:
        InvalidImageError: the path does not exist or is a folder, the file is empty, not an image, truncated
            or corrupt, too large, or in a mode that cannot be converted. The one-line message names the
            file, the problem and the fix.
    """
    image, name = _open_decoded(source, max_pixels=max_pixels, error=InvalidImageError, what="image")
    return _to_rgb(image, name)


def load_mask(
    source: ImageSource,
    *,
    size: tuple[int, int] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Load an edit mask as mode ``"L"`` with values {0, 255}: white (255) = edit, black (0) = keep.

    ``source`` is read like :func:`load_image` (path, bytes or PIL image; first frame; EXIF orientation
    applied). Then every pixel gets an 8-bit strength:

    * ``L``: its value; ``1``: 0 or 255; 16-bit and ``I``/``F`` masks: scaled to 8 bits like images;
    * RGB (and palette, CMYK...): the **largest** of R, G and B, so a stroke in any bright colour counts,
      not only white (a grayscale conversion would turn pure red into 30 % grey and drop it);
    * with transparency (RGBA, LA, PA, palette with a transparent colour): the pixel is first laid on black,
      i.e. strength = max(R, G, B) x alpha / 255. Opaque black/white masks read as their colours; strokes
      painted on a transparent layer are edited and the transparent rest is kept. Masks in the opposite
      convention (transparent = edit, as OpenAI's edit API uses) must be inverted first, e.g.
      ``ImageOps.invert(mask.getchannel("A"))``.

    Strengths at or above 50 % (128 of 255) become 255, the rest 0: soft or anti-aliased masks are
    thresholded, never passed through half-way.

    Args:
        size: the ``(width, height)`` of the image being edited; a mask of another size is refused rather
            than silently resized.

    Raises:
        InvalidMaskError: unreadable like :func:`load_image`, size differs from ``size``, or the mask is empty
            (nothing at or above 50 %, so nothing would be edited).
    """
    expected = _check_size_arg(size, "size") if size is not None else None
    mask, name = _open_decoded(source, max_pixels=max_pixels, error=InvalidMaskError, what="mask")
    if expected is not None and mask.size != expected:
        w, h = mask.size
        ew, eh = expected
        raise InvalidMaskError(
            f"mask {name} is {w}x{h} but the image is {ew}x{eh}: resize the mask to {ew}x{eh} "
            "(nearest-neighbour keeps it sharp) or pass the mask made for this image"
        )
    strength = _mask_strength(mask, name)
    binary = np.where(strength >= MASK_THRESHOLD, 255, 0).astype(np.uint8)
    if not binary.any():
        raise InvalidMaskError(
            f"mask {name} is empty (no pixel is 50 % white or brighter): nothing would be edited; "
            "paint the region to edit in white on black"
        )
    return Image.fromarray(binary)


def _open_decoded(
    source: ImageSource, *, max_pixels: int | None, error: type[InstructEditError], what: str
) -> tuple[Image.Image, str]:
    """Open ``source``, check its size, decode it fully and apply EXIF orientation.

    Returns an image detached from any file, and the name to use in messages.
    """
    if max_pixels is not None and (
        isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1
    ):
        raise InvalidRequestError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    if isinstance(source, Image.Image):
        name, data = f"(PIL {source.mode} image)", b""
    else:
        data, name = _locate(source, error, what)
    try:
        with _pil_pixel_limit(max_pixels):
            if isinstance(source, Image.Image):
                _check_pixels(source.size, max_pixels, name, error, what)
                _decode(source, name, error, what)
                return _exif_upright(source), name
            with _open_lazy(data) as image:
                _check_pixels(image.size, max_pixels, name, error, what)
                if getattr(image, "n_frames", 1) > 1:
                    image.seek(0)
                _decode(image, name, error, what)
                return _exif_upright(image), name
    except InstructEditError:
        raise
    except UnidentifiedImageError as exc:
        raise error(
            f"{what} {name} is not an image PIL can read ({_sniff(data)}): pass a PNG, JPEG or WebP file"
        ) from exc
    except Image.DecompressionBombError as exc:
        raise error(_too_large_message(name, what, max_pixels, _pixels_in(exc))) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise error(_corrupt_message(name, what, exc)) from exc


def _locate(source: object, error: type[InstructEditError], what: str) -> tuple[Path | bytes, str]:
    """The existing, non-empty file (or the bytes) behind a path or bytes source, and its name for messages.

    Files are not read here: PIL reads the header first, so the size check runs before the bulk is read.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        name = f"({len(data)} bytes)"
        if not data:
            raise error(f"{what} {name} is empty: pass the bytes of a PNG, JPEG or WebP file")
        return data, name
    if not isinstance(source, str | os.PathLike):
        raise error(
            f"cannot read a {what} from a {type(source).__name__}: "
            "pass a file path, the file's bytes or a PIL image"
        )
    raw = os.fsdecode(source)
    path = Path(raw).expanduser()
    name = f"'{raw}'"
    if not path.exists():
        if re.match(r"^[a-z][a-z0-9+.-]*://", raw, re.IGNORECASE):
            raise error(f"{what} {name} is a URL, and instructedit reads local files only: download it first")
        raise error(
            f"{what} file {name} does not exist: check the path (relative paths start at {os.getcwd()})"
        )
    if path.is_dir():
        raise error(f"{what} {name} is a folder, not a file: pass the path of an image file inside it")
    try:
        with path.open("rb") as stream:
            empty = not stream.read(1)
    except OSError as exc:
        reason = exc.strerror or exc
        raise error(f"cannot read {what} {name}: {reason}: check the file's permissions") from exc
    if empty:
        raise error(f"{what} file {name} is empty (0 bytes): the download or export failed; write it again")
    return path, name


def _open_lazy(data: Path | bytes) -> Image.Image:
    """``Image.open`` on a file or on bytes (use as a context manager: it closes the file)."""
    return Image.open(data if isinstance(data, Path) else io.BytesIO(data))


@contextmanager
def _pil_pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Let ``max_pixels`` decide instead of PIL's global limit, and silence PIL's bomb warning.

    Only when our limit is looser than PIL's is the global raised, under a lock, for the duration of the open
    (PIL reads it in ``Image.open``); the images are still checked against ``max_pixels`` right after.
    """
    current = Image.MAX_IMAGE_PIXELS
    loosen = current is not None and (max_pixels is None or max_pixels > current)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if not loosen:
            yield
            return
        with _PIL_LIMIT_LOCK:
            saved = Image.MAX_IMAGE_PIXELS  # read under the lock: another call may have just restored it
            Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                yield
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def _check_pixels(
    size: tuple[int, int], max_pixels: int | None, name: str, error: type[InstructEditError], what: str
) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise error(f"{what} {name} is {w}x{h}, with no pixels: pass a non-empty image")
    if max_pixels is not None and w * h > max_pixels:
        raise error(_too_large_message(name, what, max_pixels, w * h, f"{w}x{h} = "))


def _too_large_message(
    name: str, what: str, max_pixels: int | None, pixels: int | None, dims: str = ""
) -> str:
    count = f"{dims}{pixels:,} pixels" if pixels is not None else "too many pixels"
    limit = f"{max_pixels:,}" if max_pixels is not None else "PIL's"
    raise_to = f"max_pixels={pixels}" if pixels is not None else "a larger max_pixels"
    return (
        f"{what} {name} has {count}, over the limit of {limit} pixels (decompression-bomb guard): "
        f"downscale it, or pass {raise_to} or more if you trust the file"
    )


def _pixels_in(exc: Exception) -> int | None:
    """The pixel count PIL puts in its DecompressionBombError message, if it is there."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return int(found.group(1)) if found else None


def _decode(image: Image.Image, name: str, error: type[InstructEditError], what: str) -> None:
    """Force PIL's lazy decoder to read every byte now."""
    try:
        image.load()
    except Image.DecompressionBombError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise error(_corrupt_message(name, what, exc)) from exc


def _corrupt_message(name: str, what: str, exc: BaseException) -> str:
    detail = " ".join(str(exc).split()) or type(exc).__name__
    if "truncated" in detail or isinstance(exc, EOFError):
        problem = "is truncated (the file ends early)"
    else:
        problem = "cannot be decoded: the file is corrupt"
    return f"{what} {name} {problem} (PIL: {detail}): download or export it again"


def _sniff(data: Path | bytes) -> str:
    """A short guess at what a non-image file is, for the error message."""
    if isinstance(data, Path):
        try:
            with data.open("rb") as stream:
                data = stream.read(512)
        except OSError:
            return "unreadable"
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "it is an HTML page"
    if head.startswith((b"{", b"[")):
        return "it looks like JSON"
    try:
        data[:512].decode("utf-8")
    except UnicodeDecodeError:
        return f"unknown format, starts with {data[:8].hex(' ')}"
    return "it is a text file"


def _exif_upright(image: Image.Image) -> Image.Image:
    """A new image with the EXIF orientation applied (a copy when there is none, or the EXIF is broken)."""
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not make a readable photo unreadable
        upright = None
    return upright if upright is not None else image.copy()


# --------------------------------------------------------------------------------------------------------
# Mode conversion
# --------------------------------------------------------------------------------------------------------


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    """Any PIL mode -> RGB, with high-bit-depth scaling and transparency composited on white."""
    if image.mode in (*_SIXTEEN_BIT_MODES, "I", "F"):
        return _to_gray8(image, name, InvalidImageError, "image").convert("RGB")
    if _has_alpha(image):
        return _flatten(image, _WHITE, name, InvalidImageError, "image")
    if image.mode == "RGB":
        return image.copy()
    return _convert(image, "RGB", name, InvalidImageError, "image")


def _mask_strength(mask: Image.Image, name: str) -> np.ndarray:
    """Per-pixel edit strength 0..255 (see :func:`load_mask` for the rules)."""
    if mask.mode in (*_SIXTEEN_BIT_MODES, "I", "F"):
        return np.asarray(_to_gray8(mask, name, InvalidMaskError, "mask"))
    if mask.mode == "L" and not _has_alpha(mask):
        return np.asarray(mask)
    if mask.mode == "1":
        return np.asarray(mask.convert("L"))
    if _has_alpha(mask):
        rgb = _flatten(mask, _BLACK, name, InvalidMaskError, "mask")
    else:
        rgb = _convert(mask, "RGB", name, InvalidMaskError, "mask")
    return np.asarray(rgb).max(axis=2)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or (image.mode in ("P", "L", "RGB") and "transparency" in image.info)


def _flatten(
    image: Image.Image,
    background: tuple[int, int, int, int],
    name: str,
    error: type[InstructEditError],
    what: str,
) -> Image.Image:
    """Composite an image with transparency over a solid background, giving RGB."""
    if image.mode == "La":  # premultiplied; PIL converts it only through LA
        image = _convert(image, "LA", name, error, what)
    rgba = _convert(image, "RGBA", name, error, what)
    canvas = Image.new("RGBA", rgba.size, background)
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def _convert(
    image: Image.Image, mode: str, name: str, error: type[InstructEditError], what: str
) -> Image.Image:
    try:
        return image.convert(mode)
    except (ValueError, OSError) as exc:
        raise error(
            f"{what} {name} is in PIL mode {image.mode!r}, which cannot be converted to {mode}: "
            "save it as an 8-bit RGB PNG or JPEG"
        ) from exc


def _to_gray8(image: Image.Image, name: str, error: type[InstructEditError], what: str) -> Image.Image:
    """16-bit, 32-bit integer or float grayscale -> 8-bit ``L``, scaled, never clipped (see load_image)."""
    values = np.asarray(image)
    if image.mode in _SIXTEEN_BIT_MODES:
        return Image.fromarray(((values.astype(np.uint32) + 128) // 257).astype(np.uint8))
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise error(f"{what} {name} contains NaN or infinite values: save it with finite pixel values")
    lo, hi = float(values.min()), float(values.max())
    if image.mode == "I" and lo >= 0 and hi <= 65535:
        scaled = values / 257.0
    elif image.mode == "F" and lo >= 0 and hi <= 1:
        scaled = values * 255.0
    elif image.mode == "F" and lo >= 0 and hi <= 255:
        scaled = values
    else:
        scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------------

_EMPTY_HINTS = {
    "instruction": "say what to change, e.g. 'make the sky red'",
    "source": "describe the input image, e.g. 'a photo of a cat'",
    "target": "describe the wanted result, e.g. 'a photo of a dog'",
}


def validate_text(
    text: str | None, *, what: str = "instruction", required: bool = True, max_chars: int = 1000
) -> str | None:
    """Clean and check an instruction or caption; ``what`` names it in messages ("instruction", "source
    caption", "target caption"...).

    Cleaning: control characters (NUL, escape codes, DEL, C1 controls) are removed rather than refused,
    since they carry no meaning for a text encoder and arrive by accident from terminals and copied PDFs;
    tabs, newlines and other whitespace runs become one space (CLIP's tokenizer does the same), and the ends
    are stripped.

    Returns the cleaned text, or ``None`` when ``required`` is false and the text is ``None`` or blank
    (an empty optional caption means "not given").

    Raises:
        InvalidRequestError: missing or blank while required; not a ``str``; holds undecodable bytes (lone
            surrogates, from a terminal with the wrong encoding); or longer than ``max_chars`` after cleaning.
    """
    hint = next((h for key, h in _EMPTY_HINTS.items() if key in what), f"give a non-empty {what}")
    if text is None:
        if required:
            raise InvalidRequestError(f"{what} is missing: {hint}")
        return None
    if not isinstance(text, str):
        raise InvalidRequestError(f"{what} must be text, got {type(text).__name__}: pass a string")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        raise InvalidRequestError(
            f"{what} holds bytes that are not valid UTF-8: set your terminal or file encoding to UTF-8"
        )
    kept = "".join(
        " " if ch.isspace() else ch for ch in text if ch.isspace() or unicodedata.category(ch) != "Cc"
    )
    cleaned = " ".join(kept.split())
    if not cleaned:
        if required:
            raise InvalidRequestError(f"{what} is empty: {hint}")
        return None
    if len(cleaned) > max_chars:
        raise InvalidRequestError(
            f"{what} is {len(cleaned):,} characters long, over the limit of {max_chars:,}: shorten it "
            "(CLIP text encoders read only 77 tokens, about 50 words; the rest is ignored)"
        )
    return cleaned


# --------------------------------------------------------------------------------------------------------
# Saving and metadata
# --------------------------------------------------------------------------------------------------------


def save_image(
    image: Image.Image, path: str | os.PathLike[str], *, metadata: dict[str, str] | None = None
) -> Path:
    """Write ``image`` to ``path`` atomically, with ``metadata`` embedded; return the path written.

    The format follows the suffix: ``.png`` (lossless; recommended), ``.jpg``/``.jpeg`` (quality 95, no chroma
    subsampling) or ``.webp`` (quality 95). Metadata goes into PNG text chunks, one per key (tEXt, or iTXt
    for text outside Latin-1), which any PNG tool can list; JPEG and WebP have no text chunks, so there the
    whole dictionary is stored as one JSON object in the EXIF UserComment tag. :func:`read_metadata` reads
    both back.

    Parent folders are created. The image is written to a temporary file beside the target, flushed to disk
    and then renamed over it (``os.replace``), so a crash or a full disk never leaves half a file: the target
    either keeps its old content or has the complete new one.

    Images with transparency are saved with it as PNG; JPEG has no alpha, so there they are flattened on
    white like :func:`load_image` does.

    Raises:
        InvalidRequestError: unsupported suffix, metadata that is not ``str`` -> ``str`` or has an invalid PNG
            keyword, metadata too large for JPEG's EXIF block, or the file cannot be written (the message
            gives the operating system's reason).
    """
    if not isinstance(image, Image.Image):
        raise InvalidRequestError(f"save_image needs a PIL image, got {type(image).__name__}")
    target = Path(os.fsdecode(path)).expanduser()
    suffix = target.suffix.lower()
    if suffix not in _SAVE_FORMATS:
        raise InvalidRequestError(
            f"cannot save '{target}': suffix '{target.suffix}' is not supported; "
            "use .png (lossless, keeps metadata), .jpg or .webp"
        )
    fmt, options = _SAVE_FORMATS[suffix]
    entries = _check_metadata(metadata or {})
    options = dict(options)
    if fmt == "PNG":
        if entries:
            info = PngImagePlugin.PngInfo()
            for key, value in entries.items():
                info.add_text(key, value)  # falls back to iTXt when the value is not Latin-1
            options["pnginfo"] = info
    else:
        if image.mode not in ("RGB", "L"):
            image = _to_rgb(image, "(output)")
        if entries:
            options["exif"] = _metadata_exif(entries, target)
    _atomic_write(target, lambda stream: image.save(stream, format=fmt, **options))
    return target


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata :func:`save_image` embedded in ``path``: PNG text chunks, or the JSON object in a JPEG or
    WebP EXIF UserComment. Returns ``{}`` when there is none.

    Raises:
        InvalidImageError: the file does not exist, is not an image, or is corrupt.
    """
    data, name = _locate(path, InvalidImageError, "image")
    try:
        with _pil_pixel_limit(DEFAULT_MAX_PIXELS), _open_lazy(data) as image:
            _check_pixels(image.size, DEFAULT_MAX_PIXELS, name, InvalidImageError, "image")
            if image.format == "PNG":  # .text also reads chunks after the pixel data
                return {str(key): str(value) for key, value in image.text.items()}
            comment = image.getexif().get_ifd(_EXIF_IFD).get(_EXIF_USER_COMMENT)
    except InstructEditError:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidImageError(f"image {name} is not an image PIL can read ({_sniff(data)})") from exc
    except Image.DecompressionBombError as exc:
        message = _too_large_message(name, "image", DEFAULT_MAX_PIXELS, _pixels_in(exc))
        raise InvalidImageError(message) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError(_corrupt_message(name, "image", exc)) from exc
    return _metadata_from_comment(comment)


def _check_metadata(metadata: dict[str, str]) -> dict[str, str]:
    if not isinstance(metadata, dict):
        raise InvalidRequestError(f"metadata must be a dict of str to str, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidRequestError(
                f"metadata entry {key!r} is {type(key).__name__} -> {type(value).__name__}: "
                "keys and values must be str (json.dumps other values)"
            )
        if not re.fullmatch(r"[\x21-\x7e\xa1-\xff]([\x20-\x7e\xa1-\xff]{0,77}[\x21-\x7e\xa1-\xff])?", key):
            raise InvalidRequestError(
                f"metadata key {key!r} is not a valid PNG keyword: use 1-79 printable Latin-1 characters "
                "without leading or trailing spaces"
            )
        if "\x00" in value:
            raise InvalidRequestError(f"metadata value of {key!r} contains a NUL character: remove it")
    return metadata


def _metadata_exif(entries: dict[str, str], target: Path) -> bytes:
    payload = json.dumps(entries, ensure_ascii=True, sort_keys=True).encode("ascii")
    if len(payload) > _MAX_EXIF_BYTES:
        raise InvalidRequestError(
            f"metadata for '{target}' is {len(payload):,} bytes, more than the {_MAX_EXIF_BYTES:,} an EXIF "
            "block holds: save as .png, whose text chunks have no such limit"
        )
    exif = Image.Exif()
    exif.get_ifd(_EXIF_IFD)[_EXIF_USER_COMMENT] = _USER_COMMENT_ASCII + payload
    return exif.tobytes()


def _metadata_from_comment(comment: object) -> dict[str, str]:
    """Our JSON object from an EXIF UserComment; ``{}`` for anything else (e.g. a camera's own comment)."""
    if not isinstance(comment, bytes) or not comment.startswith(_USER_COMMENT_ASCII):
        return {}
    try:
        parsed = json.loads(comment[len(_USER_COMMENT_ASCII) :].decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {str(key): str(value) for key, value in parsed.items()}


def _atomic_write(target: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Run ``write`` on a temporary file next to ``target``, then rename it over ``target``."""
    tmp_name: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            raise IsADirectoryError(21, "it is a folder")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp_name, _new_file_mode(target))
        os.replace(tmp_name, target)
        tmp_name = None
        _fsync_folder(target.parent)
    except OSError as exc:
        raise InvalidRequestError(
            f"cannot write '{target}': {exc.strerror or exc}: choose a writable folder with free space"
        ) from exc
    finally:
        if tmp_name is not None:
            with suppress(OSError):
                os.unlink(tmp_name)


def _new_file_mode(target: Path) -> int:
    """Keep an existing file's permissions; otherwise the usual ones for a new file (0666 minus umask)."""
    with suppress(OSError):
        return target.stat().st_mode & 0o7777
    return 0o666 & ~_UMASK


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask can only be read by setting it


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    if os.name != "posix":
        return
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------------------------------------
# Padding to the VAE's multiple
# --------------------------------------------------------------------------------------------------------


def pad_to_multiple(image: Image.Image, multiple: int = 8) -> tuple[Image.Image, tuple[int, int]]:
    """Pad ``image`` on the right and bottom to the next multiple of ``multiple``; return it and the original
    ``(width, height)`` for :func:`crop_to`.

    Latent diffusion VAEs downsample by 8, so Stable Diffusion needs sides divisible by 8 (pass 16, 32 or 64
    for models that need more). Resizing a 67x45 photo to 72x48 would resample every pixel and blur the parts
    that should stay untouched; padding leaves them bit-identical, and cropping the output restores the exact
    original size. The padding mirrors the border (numpy's ``"symmetric"`` mode: the edge pixel is repeated
    once, then the image continues mirrored), which looks like the image to the model, unlike a black or
    constant band. Works for any mode, masks included (a binary mask stays binary); a size that is already a
    multiple gives an unchanged copy.
    """
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise InvalidRequestError(f"multiple must be a positive integer, got {multiple!r}")
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImageError(f"cannot pad a {width}x{height} image: it has no pixels")
    padded = _mirror_extend(image, math.ceil(width / multiple) * multiple, horizontal=True)
    padded = _mirror_extend(padded, math.ceil(height / multiple) * multiple, horizontal=False)
    return padded, (width, height)


def crop_to(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Undo :func:`pad_to_multiple`: keep the top-left ``size`` = ``(width, height)`` of ``image``."""
    width, height = _check_size_arg(size, "size")
    if width > image.width or height > image.height:
        raise InvalidImageError(
            f"cannot crop a {image.width}x{image.height} image to the larger {width}x{height}: "
            "pass the size pad_to_multiple returned for this image"
        )
    return image.crop((0, 0, width, height))


def _mirror_extend(image: Image.Image, target: int, *, horizontal: bool) -> Image.Image:
    """Extend one axis to ``target`` by mirroring the trailing edge, repeatedly when the image is short."""
    current = image.copy()
    length = current.width if horizontal else current.height
    while length < target:
        step = min(target - length, length)
        if horizontal:
            strip = current.crop((length - step, 0, length, current.height))
            strip = strip.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            grown = current.crop((0, 0, length + step, current.height))  # keeps mode, palette and info
            grown.paste(strip, (length, 0))
        else:
            strip = current.crop((0, length - step, current.width, length))
            strip = strip.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
            grown = current.crop((0, 0, current.width, length + step))
            grown.paste(strip, (0, length))
        current, length = grown, length + step
    return current


def _check_size_arg(size: object, what: str) -> tuple[int, int]:
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise InvalidRequestError(f"{what} must be (width, height) with two positive integers, got {size!r}")
    return int(size[0]), int(size[1])
