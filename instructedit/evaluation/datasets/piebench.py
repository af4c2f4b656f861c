"""PIE-Bench (Ju et al., ICLR'24, cure-lab/PnPInversion): 700 images, 10 edit types, prompts and masks.

Layout::

    data/mapping_file.json           {id: {image_path, original_prompt, editing_prompt, editing_instruction,
                                           editing_type_id, blended_word, mask}}
    data/annotation_images/<image_path>

Prompts mark the changed words with brackets ("a [rusty] bicycle"); they are removed for the captions
and the raw prompts are kept in ``extra``. ``mask`` is a run-length encoding over the row-major flattened
512x512 image: ``[start_0, length_0, start_1, length_1, ...]``, 0-based starts, runs of ones (the edited
region). Like PIE-Bench's own evaluation (``mask_decode`` in its ``evaluation/evaluate.py``), decoding
clips runs at the image end and sets the one-pixel border to 1 "to avoid annotation errors in
boundary"; pass ``border=False`` for the plain decoding. PIE-Bench has no ground-truth edited images:
``target`` is ``None``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import DatasetError
from ._json import optional_text, read_json
from .sample import EditDataset, EditSample, ImageRef

#: PIE-Bench's ten edit types, by ``editing_type_id`` (its README; folder names ``0_random_140`` ...).
PIE_EDIT_TYPES: dict[str, str] = {
    "0": "random",
    "1": "change object",
    "2": "add object",
    "3": "delete object",
    "4": "change content",
    "5": "change pose",
    "6": "change color",
    "7": "change material",
    "8": "change background",
    "9": "change style",
}

PIE_MASK_SHAPE = (512, 512)


def validate_pie_rle(encoded: Any, shape: tuple[int, int] = PIE_MASK_SHAPE) -> list[int]:
    """Check a PIE-Bench RLE (even-length list of non-negative integer start/length pairs) and return it.

    Raises ``ValueError`` saying what is wrong.
    """
    if not isinstance(encoded, list):
        raise ValueError(f"the mask must be a list of integers, got {type(encoded).__name__}")
    if len(encoded) % 2:
        raise ValueError(f"the mask RLE has an odd number of values ({len(encoded)}); it must hold start/length pairs")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in encoded):
        raise ValueError("the mask RLE must hold only integers")
    if any(v < 0 for v in encoded):
        raise ValueError("the mask RLE holds a negative value")
    total = shape[0] * shape[1]
    starts = encoded[0::2]
    if starts and max(starts) >= total:
        raise ValueError(f"a mask run starts at {max(starts)}, beyond the {shape[0]}x{shape[1]} image")
    return encoded


def decode_pie_mask(encoded: list[int], shape: tuple[int, int] = PIE_MASK_SHAPE, *, border: bool = True) -> np.ndarray:
    """Decode a PIE-Bench RLE mask into a ``uint8`` array of 0/1 of ``shape`` (rows, columns).

    Same result as PIE-Bench's ``mask_decode``: runs of ones at 0-based ``start`` of ``length`` over the
    row-major flattened image, clipped at its end; ``border=True`` also sets the outermost rows and
    columns to 1.
    """
    validate_pie_rle(encoded, shape)
    flat = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for start, length in zip(encoded[0::2], encoded[1::2], strict=True):
        flat[start : start + length] = 1
    mask = flat.reshape(shape)
    if border:
        mask[0, :] = mask[-1, :] = 1
        mask[:, 0] = mask[:, -1] = 1
    return mask


def encode_pie_mask(mask: np.ndarray) -> list[int]:
    """Encode a 2-D 0/1 or boolean array as a PIE-Bench RLE (inverse of ``decode_pie_mask(border=False)``)."""
    flat = np.asarray(mask).astype(bool).reshape(-1)
    padded = np.concatenate([[False], flat, [False]])
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = changes[0::2], changes[1::2]
    out: list[int] = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        out += [start, end - start]
    return out


def _strip_brackets(text: str | None) -> str | None:
    return text.replace("[", "").replace("]", "").strip() if text else text


def _mask_ref(encoded: list[int], border: bool, sample_id: str) -> ImageRef:
    def load() -> Image.Image:
        return Image.fromarray(decode_pie_mask(encoded, border=border) * 255, mode="L")

    return ImageRef(load, description=f"mapping_file.json[{sample_id}].mask")


def read_piebench(root: str | Path, *, border: bool = True, images: str | Path | None = None) -> EditDataset:
    """Read PIE-Bench from its ``data`` folder (or the ``mapping_file.json`` path).

    Images are looked up under ``images`` (default: ``annotation_images`` next to the mapping file).
    """
    root = Path(root).expanduser()
    mapping = root if root.is_file() else root / "mapping_file.json"
    if not mapping.is_file():
        raise DatasetError(
            f"'{root}' is not a PIE-Bench folder: expected '{mapping}' (download PIE-Bench and pass its data folder)."
        )
    image_root = Path(images).expanduser() if images is not None else mapping.parent / "annotation_images"
    data = read_json(mapping, "PIE-Bench mapping file")
    if not isinstance(data, dict):
        raise DatasetError(f"PIE-Bench '{mapping}' must map sample ids to annotations; re-download it.")
    samples = [_sample(str(key), item, image_root, border) for key, item in data.items()]
    return EditDataset("pie-bench", samples, kind="piebench", root=str(mapping.parent))


def _sample(sample_id: str, item: Any, image_root: Path, border: bool) -> EditSample:
    if not isinstance(item, dict):
        raise DatasetError(f"sample '{sample_id}': annotation must be an object; fix mapping_file.json.")
    image_path = item.get("image_path")
    if not isinstance(image_path, str) or not image_path:
        raise DatasetError(f"sample '{sample_id}': 'image_path' is missing; fix mapping_file.json.")
    path = image_root / image_path
    if not path.is_file():
        raise DatasetError(f"sample '{sample_id}': image '{path}' is missing; restore PIE-Bench annotation_images.")
    type_id = item.get("editing_type_id", sample_id[:1])
    type_id = str(type_id)
    if type_id not in PIE_EDIT_TYPES:
        raise DatasetError(
            f"sample '{sample_id}': editing_type_id '{type_id}' is not one of 0-9; fix mapping_file.json."
        )
    original = optional_text(item, "original_prompt", sample_id)
    editing = optional_text(item, "editing_prompt", sample_id)
    instruction = optional_text(item, "editing_instruction", sample_id)
    if editing is None and instruction is None:
        raise DatasetError(
            f"sample '{sample_id}': neither 'editing_prompt' nor 'editing_instruction' is given; fix the annotation."
        )
    mask = None
    if item.get("mask") is not None:
        try:
            encoded = validate_pie_rle(item["mask"])
        except ValueError as exc:
            raise DatasetError(f"sample '{sample_id}': {exc}; fix mapping_file.json.") from exc
        mask = _mask_ref(encoded, border, sample_id)
    blended = item.get("blended_word") or ""
    return EditSample(
        id=sample_id,
        source=ImageRef(path),
        instruction=instruction,
        source_caption=_strip_brackets(original),
        target_caption=_strip_brackets(editing),
        mask=mask,
        edit_type=PIE_EDIT_TYPES[type_id],
        extra={
            "editing_type_id": type_id,
            "original_prompt": original,
            "editing_prompt": editing,
            "blended_word": blended.split() if isinstance(blended, str) else blended,
            "image_path": image_path,
        },
    )
