"""Training datasets read from a folder with a ``metadata.jsonl`` (the Hugging Face imagefolder convention).

Two layouts, both general (not tied to the built-in domain):

* image–caption (VAE and text-to-image): one JSON object per line, ``{"file_name": "a.png", "text": "a caption"}``;
* edit triplets (InstructPix2Pix): ``{"input_image": "a.png", "edit_prompt": "make it red",
  "edited_image": "b.png"}`` with an optional ``"mask": "m.png"`` carried through for mask supervision.

Every problem (unreadable line, missing key, missing file, wrong image size) is found when the dataset is opened
and raised as one :class:`~instructedit.errors.DatasetError` naming the file, the line and how to fix it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..engine.latents import image_to_tensor
from ..errors import DatasetError

METADATA_FILE = "metadata.jsonl"


@dataclass(frozen=True)
class ImageCaptionColumns:
    """Names of the JSON keys of an image–caption dataset (diffusers' ``--image_column/--caption_column``)."""

    image: str = "file_name"
    caption: str | None = "text"  # None: captions are not needed (VAE training)


@dataclass(frozen=True)
class EditTripletColumns:
    """Names of the JSON keys of an edit-triplet dataset (diffusers' train_instruct_pix2pix column names)."""

    input_image: str = "input_image"
    edit_prompt: str = "edit_prompt"
    edited_image: str = "edited_image"
    mask: str = "mask"


def read_metadata(
    root: str | Path, required: Sequence[str], optional: Sequence[str] = (), text_keys: Sequence[str] = ()
) -> list[dict[str, str]]:
    """Read ``root/metadata.jsonl`` and check that every line is a JSON object with string values for the keys.

    Returns one dict per non-empty line holding the ``required`` keys, those ``optional`` keys present, and
    ``"_line"`` (the line number). Keys in ``text_keys`` may be empty strings (an empty caption is the
    unconditional prompt); all other values must be non-empty (they name files). Raises DatasetError for a
    missing folder/file, a bad JSON line, a missing key or a bad value.
    """
    root = Path(root)
    path = root / METADATA_FILE
    if not root.is_dir():
        raise DatasetError(f"dataset folder '{root}' does not exist: pass a folder that holds {METADATA_FILE}.")
    if not path.is_file():
        raise DatasetError(
            f"'{path}' is missing: a dataset folder needs a {METADATA_FILE} with one JSON object per line, "
            f"e.g. {json.dumps({k: '...' for k in required})}."
        )
    rows: list[dict[str, str]] = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {line_no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{where} is not valid JSON ({exc.msg}): write one JSON object per line.") from exc
            if not isinstance(obj, dict):
                raise DatasetError(f"{where} holds a {type(obj).__name__}, not a JSON object: write {{...}} per line.")
            missing = [key for key in required if key not in obj]
            if missing:
                raise DatasetError(
                    f"{where} lacks key(s) {missing} (has {sorted(obj)}): add them, or name the right keys with "
                    "the column options."
                )
            row: dict[str, str] = {}
            for key in [*required, *(k for k in optional if k in obj)]:
                value = obj[key]
                if not isinstance(value, str) or (not value.strip() and key not in text_keys):
                    raise DatasetError(f"{where}: '{key}' must be a non-empty string, got {value!r}.")
                row[key] = value
            row["_line"] = str(line_no)
            rows.append(row)
    if not rows:
        raise DatasetError(f"'{path}' holds no samples: add one JSON object per line.")
    return rows


def check_image_file(root: Path, rel: str, resolution: int | None, where: str) -> Path:
    """Check that ``root/rel`` exists, is an image and (if given) is resolution×resolution."""
    path = (root / rel).resolve()
    if not path.is_file():
        raise DatasetError(f"{where}: image file '{rel}' not found under '{root}': fix the path or add the file.")
    try:
        with Image.open(path) as img:
            size = img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"{where}: '{rel}' is not a readable image ({type(exc).__name__}): replace it.") from exc
    if resolution is not None and size != (resolution, resolution):
        raise DatasetError(
            f"{where}: '{rel}' is {size[0]}x{size[1]} but training runs at {resolution}x{resolution}: resize the "
            "images, pass the matching resolution, or allow resizing (resize=True).",
            field="resize",
            suggest={"resize": True},
        )
    return path


def load_image(path: Path, resolution: int | None, resize: bool) -> torch.Tensor:
    """Load an RGB image as a float tensor (3, H, W) in [-1, 1] (the editor's VAE input,
    :func:`instructedit.engine.latents.image_to_tensor`), resized and centre-cropped when ``resize``."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        if resize and resolution is not None and img.size != (resolution, resolution):
            img = _resize_center_crop(img, resolution)
        return image_to_tensor(img)[0]


def load_mask(path: Path, resolution: int | None, resize: bool) -> torch.Tensor:
    """Load a mask as a float tensor (1, H, W) in [0, 1] (white = edited region)."""
    with Image.open(path) as img:
        img = img.convert("L")
        if resize and resolution is not None and img.size != (resolution, resolution):
            img = _resize_center_crop(img, resolution, resample=Image.Resampling.NEAREST)
        array = np.asarray(img, dtype=np.float32)
    return torch.from_numpy(array)[None] / 255.0


def _resize_center_crop(
    img: Image.Image, resolution: int, resample: Image.Resampling = Image.Resampling.BICUBIC
) -> Image.Image:
    scale = resolution / min(img.size)
    new_size = (max(resolution, round(img.width * scale)), max(resolution, round(img.height * scale)))
    img = img.resize(new_size, resample=resample)
    left, top = (img.width - resolution) // 2, (img.height - resolution) // 2
    return img.crop((left, top, left + resolution, top + resolution))


class _MetadataDataset(Dataset):
    """What both datasets share: the folder, the image size checks and loading, the metadata rows."""

    def __init__(self, root: str | Path, resolution: int | None, columns: object, resize: bool) -> None:
        self.root = Path(root)
        self.resolution = resolution
        self.resize = resize
        self.columns = columns

    def _rows(
        self, required: Sequence[str], optional: Sequence[str] = (), text_keys: Sequence[str] = ()
    ) -> Iterator[tuple[dict[str, str], str]]:
        """Each metadata row (see :func:`read_metadata`) with its location for error messages."""
        for row in read_metadata(self.root, required, optional, text_keys):
            yield row, f"{self.root / METADATA_FILE}, line {row['_line']}"

    def _image_file(self, rel: str, where: str) -> Path:
        """The checked path of the image ``rel`` (its size too, unless images are resized)."""
        return check_image_file(self.root, rel, None if self.resize else self.resolution, where)

    def _pixels(self, path: Path) -> torch.Tensor:
        return load_image(path, self.resolution, self.resize)


class ImageCaptionDataset(_MetadataDataset):
    """Image–caption pairs from ``root/metadata.jsonl``; items are ``{"pixel_values": (3,H,W) in [-1,1], "text"}``.

    ``resolution``: every image must be this size (checked when opening) unless ``resize`` is set, in which case
    images are resized and centre-cropped to it. ``None`` accepts any size (all images must then share one size
    to be batched).
    """

    def __init__(
        self,
        root: str | Path,
        resolution: int | None = 64,
        columns: ImageCaptionColumns = ImageCaptionColumns(),
        resize: bool = False,
    ) -> None:
        super().__init__(root, resolution, columns, resize)
        text_keys = [columns.caption] if columns.caption is not None else []
        self.paths: list[Path] = []
        self.captions: list[str] = []
        for row, where in self._rows([columns.image, *text_keys], text_keys=text_keys):
            self.paths.append(self._image_file(row[columns.image], where))
            self.captions.append(row[columns.caption] if columns.caption is not None else "")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def texts(self) -> list[str]:
        """The captions, in sample order."""
        return self.captions

    def __getitem__(self, index: int) -> dict:
        return {"pixel_values": self._pixels(self.paths[index]), "text": self.captions[index], "index": index}


class EditTripletDataset(_MetadataDataset):
    """(input image, edit instruction, edited image[, mask]) triplets from ``root/metadata.jsonl``.

    Items are ``{"original_pixel_values", "edited_pixel_values": (3,H,W) in [-1,1], "text": instruction}``
    plus ``"mask": (1,H,W) in [0,1]`` when the line names one.
    """

    def __init__(
        self,
        root: str | Path,
        resolution: int | None = 64,
        columns: EditTripletColumns = EditTripletColumns(),
        resize: bool = False,
    ) -> None:
        super().__init__(root, resolution, columns, resize)
        self.inputs: list[Path] = []
        self.edited: list[Path] = []
        self.masks: list[Path | None] = []
        self.instructions: list[str] = []
        required = [columns.input_image, columns.edit_prompt, columns.edited_image]
        for row, where in self._rows(required, optional=[columns.mask], text_keys=[columns.edit_prompt]):
            self.inputs.append(self._image_file(row[columns.input_image], where))
            self.edited.append(self._image_file(row[columns.edited_image], where))
            mask = row.get(columns.mask)
            self.masks.append(None if mask is None else self._image_file(mask, where))
            self.instructions.append(row[columns.edit_prompt])

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def texts(self) -> list[str]:
        """The edit instructions, in sample order."""
        return self.instructions

    def __getitem__(self, index: int) -> dict:
        item = {
            "original_pixel_values": self._pixels(self.inputs[index]),
            "edited_pixel_values": self._pixels(self.edited[index]),
            "text": self.instructions[index],
            "index": index,
        }
        mask = self.masks[index]
        if mask is not None:
            item["mask"] = load_mask(mask, self.resolution, self.resize)
        return item


class PromptView(Dataset):
    """The prompts of a dataset without its images (``{"text", "index"}`` items), for training on cached latents."""

    def __init__(self, dataset: ImageCaptionDataset | EditTripletDataset) -> None:
        self.source_texts = dataset.texts

    def __len__(self) -> int:
        return len(self.source_texts)

    def __getitem__(self, index: int) -> dict:
        return {"text": self.source_texts[index], "index": index}


def collate(samples: list[dict]) -> dict:
    """Stack tensors, list strings; a key missing from some samples (an optional mask) is dropped."""
    keys = set(samples[0]).intersection(*samples[1:])
    batch: dict = {}
    for key in keys:
        values = [s[key] for s in samples]
        if isinstance(values[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise DatasetError(
                    f"samples in one batch have different '{key}' sizes {sorted(shapes)}: give all images one size "
                    "or pass a resolution with resizing."
                )
            batch[key] = torch.stack(values)
        elif isinstance(values[0], int):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch
