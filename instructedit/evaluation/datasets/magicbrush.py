"""MagicBrush (Zhang et al., NeurIPS'23 D&B): manually annotated instruction edits, single- and multi-turn.

Two layouts are read:

* the test zip (and the same layout for dev), one folder per split::

      test/edit_sessions.json        {img_id: [{"input", "mask", "output", "instruction"}, ...]} (per turn)
      test/global_descriptions.json  {img_id: {image file name: caption}}            (optional)
      test/local_descriptions.json   {img_id: {output file name: local caption}}     (optional)
      test/images/<img_id>/<img_id>-input.png, <img_id>-output1.png, <img_id>-mask1.png, ...

* the Hugging Face parquet files of ``osunlp/MagicBrush`` (train/dev), columns ``img_id``,
  ``turn_index``, ``source_img``, ``mask_img``, ``instruction``, ``target_img`` (images as
  ``{"bytes", "path"}``); needs pyarrow.

Each turn is one sample with id ``<img_id>_<turn>``. The source of turn k > 1 is the ground-truth output of
turn k - 1 (the "independent"/all-turn setting of the paper); the runner's iterative mode feeds a method's own
previous output instead. MagicBrush masks are RGBA copies of the input whose transparent pixels mark the edit
region, sometimes at another resolution: they are turned into white-is-edit masks and resized (nearest) to
the image. MagicBrush has no edit categories: ``edit_type`` is ``None``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ...errors import DatasetError
from ._json import optional_text, read_json
from ._parquet import ParquetCells
from .sample import EditDataset, EditSample, ImageRef, binary_mask_from_transparency


def _split_folder(root: Path, split: str) -> Path:
    if (root / "edit_sessions.json").is_file():
        return root
    if (root / split / "edit_sessions.json").is_file():
        return root / split
    raise DatasetError(
        f"'{root}' is not a MagicBrush folder: expected '{root}/edit_sessions.json' or "
        f"'{root}/{split}/edit_sessions.json' (unzip the MagicBrush {split} archive there)."
    )


def _captions(folder: Path, name: str) -> dict[str, dict[str, str]]:
    path = folder / name
    if not path.is_file():
        return {}
    data = read_json(path, f"MagicBrush {name}")
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DatasetError(
            f"MagicBrush '{path}' must map each img_id to {{image file name: caption}}; re-download the file."
        )
    return data


def read_magicbrush(root: str | Path, split: str = "test") -> EditDataset:
    """Read MagicBrush from an unzipped split folder, its parent, a parquet file or a parquet folder."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"MagicBrush path '{root}' does not exist: pass the unzipped folder or parquet files.")
    parquet = root.is_dir() and not _has_sessions(root, split) and _parquet_files(root)
    if root.suffix == ".parquet" or parquet:
        return _read_parquet(root, split)
    folder = _split_folder(root, split)
    sessions = read_json(folder / "edit_sessions.json", "MagicBrush edit_sessions.json")
    if not isinstance(sessions, dict):
        raise DatasetError(
            f"MagicBrush '{folder / 'edit_sessions.json'}' must map img_id to a list of turns; re-download it."
        )
    global_desc = _captions(folder, "global_descriptions.json")
    local_desc = _captions(folder, "local_descriptions.json")
    samples: list[EditSample] = []
    for img_id, turns in sessions.items():
        if not isinstance(turns, list) or not turns:
            raise DatasetError(
                f"sample '{img_id}': MagicBrush session must be a non-empty list of turns; fix edit_sessions.json."
            )
        for index, turn in enumerate(turns, start=1):
            samples.append(_zip_turn(folder, str(img_id), index, len(turns), turn, global_desc, local_desc, split))
    return EditDataset(f"magicbrush-{split}", samples, kind="magicbrush", root=str(folder))


def _has_sessions(root: Path, split: str) -> bool:
    return (root / "edit_sessions.json").is_file() or (root / split / "edit_sessions.json").is_file()


def _zip_turn(
    folder: Path,
    img_id: str,
    turn: int,
    num_turns: int,
    record: Any,
    global_desc: dict[str, dict[str, str]],
    local_desc: dict[str, dict[str, str]],
    split: str,
) -> EditSample:
    sample_id = f"{img_id}_{turn}"
    if not isinstance(record, dict):
        raise DatasetError(f"sample '{sample_id}': MagicBrush turn must be an object; fix edit_sessions.json.")
    for key in ("input", "output", "instruction"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise DatasetError(f"sample '{sample_id}': MagicBrush turn lacks a '{key}' string; fix edit_sessions.json.")
    images = folder / "images" / img_id

    def ref(name: str, what: str, **kwargs: Any) -> ImageRef:
        path = images / name
        if not path.is_file():
            raise DatasetError(
                f"sample '{sample_id}': {what} file '{path}' is missing; restore the MagicBrush {split} images."
            )
        return ImageRef(path, **kwargs)

    mask_name = record.get("mask")
    if mask_name is not None and not isinstance(mask_name, str):
        raise DatasetError(f"sample '{sample_id}': MagicBrush 'mask' must be a file name; fix edit_sessions.json.")
    captions = global_desc.get(img_id, {})
    extra: dict[str, Any] = {"input_file": record["input"], "output_file": record["output"]}
    local = local_desc.get(img_id, {}).get(record["output"])
    if local:
        extra["local_description"] = local
    return EditSample(
        id=sample_id,
        source=ref(record["input"], "source image"),
        instruction=optional_text(record, "instruction", sample_id),
        source_caption=captions.get(record["input"]) or None,
        target_caption=captions.get(record["output"]) or None,
        target=ref(record["output"], "target image"),
        mask=ref(mask_name, "mask", convert=binary_mask_from_transparency) if mask_name else None,
        session_id=img_id,
        turn=turn,
        num_turns=num_turns,
        resize_mask=True,
        extra=extra,
    )


# --------------------------------------------------------------------------------------------------- parquet
def _parquet_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(root.glob("*.parquet")) + sorted(root.glob("data/*.parquet"))


def _read_parquet(root: Path, split: str) -> EditDataset:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DatasetError(
            "reading MagicBrush parquet files needs pyarrow: `pip install pyarrow`, or use the unzipped layout."
        ) from exc
    files = _parquet_files(root)
    if root.is_dir():
        files = [f for f in files if f.name.startswith(split)] or files
    if not files:
        raise DatasetError(f"no parquet files for split '{split}' under '{root}'.")
    reader = ParquetCells(["source_img", "target_img", "mask_img"])
    rows: list[dict[str, Any]] = []
    needed = {"img_id", "turn_index", "instruction", "source_img", "target_img", "mask_img"}
    for path in files:
        handle = pq.ParquetFile(path)
        missing = needed - set(handle.schema_arrow.names)
        if missing:
            raise DatasetError(
                f"MagicBrush parquet '{path}' lacks columns {sorted(missing)}; it is not osunlp/MagicBrush."
            )
        for group in range(handle.num_row_groups):
            meta = handle.read_row_group(group, columns=["img_id", "turn_index", "instruction"]).to_pylist()
            for row_index, row in enumerate(meta):
                rows.append({**row, "_where": (path, group, row_index)})
    turns: dict[str, int] = defaultdict(int)
    for row in rows:
        turns[str(row["img_id"])] = max(turns[str(row["img_id"])], int(row["turn_index"] or 0))
    samples = []
    for row in rows:
        img_id, turn = str(row["img_id"]), row["turn_index"]
        sample_id = f"{img_id}_{turn}"
        if not isinstance(turn, int) or turn < 1:
            raise DatasetError(f"sample '{sample_id}': MagicBrush turn_index must be an integer >= 1.")
        where = row["_where"]
        samples.append(
            EditSample(
                id=sample_id,
                source=reader.ref(where, "source_img", sample_id),
                instruction=optional_text(row, "instruction", sample_id),
                target=reader.ref(where, "target_img", sample_id),
                mask=reader.ref(where, "mask_img", sample_id, convert=binary_mask_from_transparency),
                session_id=img_id,
                turn=turn,
                num_turns=turns[img_id],
                resize_mask=True,
            )
        )
    return EditDataset(f"magicbrush-{split}", samples, kind="magicbrush", root=str(root))
