"""Reading images safely: any path, bytes or PIL image -> a decoded, upright, 8-bit RGB image, or a one-line error.

Everything a person hands to instructedit passes through :mod:`instructedit.inputs` first, so that bad input fails
early with a typed error naming the file, the problem and the fix, instead of a traceback from deep inside PIL.
"""

from __future__ import annotations

import io
import numbers
import os
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeAlias

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from ..errors import InstructEditError, InvalidImageError, InvalidRequestError

ImageSource: TypeAlias = str | os.PathLike[str] | Image.Image | bytes
"""What :func:`load_image` and :func:`~instructedit.inputs.masks.load_mask` accept: a path, a PIL image or the
encoded file's bytes."""

DEFAULT_MAX_PIXELS = 4096 * 4096
"""Largest image (width x height) loaded by default: 16.8 megapixels, far above what diffusion models edit."""

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WHITE = (255, 255, 255, 255)

_PIL_LIMIT_LOCK = threading.Lock()


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
        pixels = _pixels_in(exc)
        raise error(_too_large_message(name, what, max_pixels, pixels), field="max_pixels",
                    suggest={"max_pixels": pixels} if pixels else None) from exc
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
        raise error(_too_large_message(name, what, max_pixels, w * h, f"{w}x{h} = "), field="max_pixels",
                    suggest={"max_pixels": w * h})


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



def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    """Any PIL mode -> RGB, with high-bit-depth scaling and transparency composited on white."""
    if image.mode in (*_SIXTEEN_BIT_MODES, "I", "F"):
        return _to_gray8(image, name, InvalidImageError, "image").convert("RGB")
    if _has_alpha(image):
        return _flatten(image, _WHITE, name, InvalidImageError, "image")
    if image.mode == "RGB":
        return image.copy()
    return _convert(image, "RGB", name, InvalidImageError, "image")



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



def check_size(size: object, what: str) -> tuple[int, int]:
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise InvalidRequestError(f"{what} must be (width, height) with two positive integers, got {size!r}")
    return int(size[0]), int(size[1])


def paste_outside(original: Image.Image, edited: Image.Image, mask: Image.Image, feather: float = 1.0) -> Image.Image:
    """``edited`` inside ``mask`` (0/255) and ``original`` outside it, the seam softened by a ``feather``-pixel
    blend that lies inside the mask: every pixel outside the mask is the input's exactly, not its trip through
    the VAE, so content the edits did not name cannot drift however many turns follow."""
    hard = np.asarray(mask.convert("L"), dtype=np.float32)
    soft = np.asarray(mask.convert("L").filter(ImageFilter.GaussianBlur(feather)), np.float32) if feather > 0 else hard
    weight = (np.where(hard > 0, soft, 0.0) / 255.0)[..., None]
    out = np.asarray(edited.convert("RGB"), np.float32) * weight + np.asarray(original.convert("RGB"), np.float32) * (
        1.0 - weight)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")
