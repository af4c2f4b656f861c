"""Your own images and requests: a JSON-lines manifest, or a plain folder of images with sidecar files.

Manifest (``.jsonl``, one object per line, or a ``.json`` list of objects); paths are relative to
the manifest::

    {"id": "cat-1", "image": "cat.png", "instruction": "make the cat black",
     "source_caption": "a white cat", "target_caption": "a black cat",
     "target_image": "cat_black.png", "mask": "cat_mask.png", "edit_type": "color"}

Only ``image`` and one of ``instruction`` / ``target_caption`` are required; ``source`` and ``target``
are accepted as aliases of the captions, ``session``/``turn``/``num_turns`` describe multi-turn
sequences and any other key is kept in ``extra``. ``id`` defaults to ``line<N>``. Masks are white = edit.

Folder: every image ``NAME.png|jpg|jpeg|webp|bmp`` is a sample with id ``NAME``, described by a sidecar
``NAME.json`` (same keys as a manifest line, ``image`` optional) or ``NAME.txt`` (the instruction); optional
``NAME.mask.png`` and ``NAME.target.png`` give its mask and ground truth. A folder holding
``manifest.jsonl`` is read as that manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import DatasetError
from ._json import optional_text, read_json, read_jsonl
from .sample import EditDataset, EditSample, ImageRef

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_KNOWN = {
    "id", "image", "instruction", "source_caption", "source", "target_caption", "target", "target_image",
    "mask", "edit_type", "session", "turn", "num_turns",
}  # fmt: skip


def _path(base: Path, value: Any, key: str, sample_id: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"sample '{sample_id}': '{key}' must be a file path string; fix the manifest.")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise DatasetError(f"sample '{sample_id}': {key} file '{path}' does not exist; fix the path.")
    return path


def sample_from_record(record: Any, base: Path, default_id: str, *, image: Path | None = None) -> EditSample:
    """Build a sample from one manifest object (paths relative to ``base``)."""
    if not isinstance(record, dict):
        raise DatasetError(f"sample '{default_id}': each manifest entry must be a JSON object.")
    sample_id = record.get("id", default_id)
    if not isinstance(sample_id, str | int) or str(sample_id).strip() == "":
        raise DatasetError(f"sample '{default_id}': 'id' must be a non-empty string.")
    sample_id = str(sample_id)
    if image is None:
        if "image" not in record:
            raise DatasetError(f"sample '{sample_id}': no 'image' given; add the input image path.")
        image = _path(base, record["image"], "image", sample_id)
    instruction = optional_text(record, "instruction", sample_id)
    source_caption = optional_text(record, "source_caption", sample_id)
    source_caption = source_caption or optional_text(record, "source", sample_id)
    target_caption = optional_text(record, "target_caption", sample_id)
    target_caption = target_caption or optional_text(record, "target", sample_id)
    if instruction is None and target_caption is None:
        raise DatasetError(f"sample '{sample_id}': give an 'instruction' or a 'target_caption' saying what to edit.")
    turn, num_turns = record.get("turn", 1), record.get("num_turns", record.get("turn", 1))
    if not (isinstance(turn, int) and isinstance(num_turns, int) and 1 <= turn <= num_turns):
        raise DatasetError(
            f"sample '{sample_id}': 'turn' and 'num_turns' must be integers with 1 <= turn <= num_turns."
        )
    target = record.get("target_image")
    mask = record.get("mask")
    session = record.get("session")
    return EditSample(
        id=sample_id,
        source=ImageRef(image),
        instruction=instruction,
        source_caption=source_caption,
        target_caption=target_caption,
        target=ImageRef(_path(base, target, "target_image", sample_id)) if target is not None else None,
        mask=ImageRef(_path(base, mask, "mask", sample_id)) if mask is not None else None,
        edit_type=optional_text(record, "edit_type", sample_id),
        session_id=str(session) if session is not None else None,
        turn=turn,
        num_turns=num_turns,
        extra={k: v for k, v in record.items() if k not in _KNOWN},
    )


def read_manifest(path: str | Path) -> EditDataset:
    """Read a ``.jsonl`` manifest (one request per line) or a ``.json`` list of requests."""
    path = Path(path).expanduser()
    if path.suffix == ".json":
        data = read_json(path, "manifest")
        if not isinstance(data, list):
            raise DatasetError(f"manifest '{path}' must hold a JSON list of requests (or use .jsonl).")
        records = list(enumerate(data, start=1))
    else:
        records = read_jsonl(path, "manifest")
    samples = [sample_from_record(rec, path.parent, f"line{number}") for number, rec in records]
    if not samples:
        raise DatasetError(f"manifest '{path}' holds no requests; add at least one line.")
    return EditDataset(path.stem, samples, kind="manifest", root=str(path.parent))


def _is_sidecar_image(path: Path) -> bool:
    return path.stem.endswith((".mask", ".target"))


def read_folder(root: str | Path, *, instruction: str | None = None) -> EditDataset:
    """Read a folder of images with sidecar files (see module doc); ``instruction`` is the fallback."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"'{root}' is not a folder of images.")
    if (root / "manifest.jsonl").is_file():
        return read_manifest(root / "manifest.jsonl")
    images = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not _is_sidecar_image(p))
    if not images:
        raise DatasetError(f"folder '{root}' holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    samples = []
    for image in images:
        stem = image.stem
        record: dict[str, Any] = {}
        if (root / f"{stem}.json").is_file():
            record = read_json(root / f"{stem}.json", f"request of '{stem}'")
            if not isinstance(record, dict):
                raise DatasetError(f"sample '{stem}': '{stem}.json' must hold one JSON object.")
        elif (root / f"{stem}.txt").is_file():
            record = {"instruction": (root / f"{stem}.txt").read_text(encoding="utf-8").strip()}
        elif instruction is not None:
            record = {"instruction": instruction}
        else:
            raise DatasetError(
                f"sample '{stem}': no '{stem}.txt' or '{stem}.json' says what to edit; add one or pass an "
                "instruction for every image."
            )
        record = {"id": stem, **record}
        for key, suffix in (("mask", ".mask"), ("target_image", ".target")):
            for ext in IMAGE_SUFFIXES:
                if key not in record and (root / f"{stem}{suffix}{ext}").is_file():
                    record[key] = f"{stem}{suffix}{ext}"
        record.pop("image", None)
        samples.append(sample_from_record(record, root, stem, image=image))
    return EditDataset(root.name, samples, kind="folder", root=str(root))
