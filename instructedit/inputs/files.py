"""Writing outputs: atomic image files with the edit record embedded, and reading the record back."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from ..errors import InstructEditError, InvalidImageError, InvalidRequestError
from .images import (
    DEFAULT_MAX_PIXELS,
    _check_pixels,
    _corrupt_message,
    _locate,
    _open_lazy,
    _pil_pixel_limit,
    _pixels_in,
    _sniff,
    _to_rgb,
    _too_large_message,
)

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
            options["pnginfo"] = _png_info(entries)
    else:
        if image.mode not in ("RGB", "L"):
            image = _to_rgb(image, "(output)")
        if entries:
            options["exif"] = _metadata_exif(entries, target)
    _atomic_write(target, lambda stream: image.save(stream, format=fmt, **options))
    return target


def encode_png(image: Image.Image, metadata: dict[str, str] | None = None) -> bytes:
    """``image`` as PNG bytes with ``metadata`` in its text chunks, exactly as :func:`save_image` writes a .png."""
    import io

    entries = _check_metadata(metadata or {})
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **({"pnginfo": _png_info(entries)} if entries else {}))
    return buffer.getvalue()


def _png_info(entries: dict[str, str]) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    for key, value in entries.items():
        info.add_text(key, value)  # falls back to iTXt when the value is not Latin-1
    return info


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

