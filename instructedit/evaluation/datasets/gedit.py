"""GEdit-Bench (Step1X-Edit, Liu et al. 2025): 606 real-world edit requests in English and Chinese over 11 task
types, scored by a vision-language judge (the ``judge`` metrics) rather than against ground truth.

Read from the Hugging Face dataset ``stepfun-ai/GEdit-Bench`` as downloaded (``huggingface-cli download
stepfun-ai/GEdit-Bench --repo-type dataset --local-dir DIR``): parquet files (``DIR/data/*.parquet`` or a single
file) with the columns ``task_type``, ``key``, ``instruction``, ``instruction_language`` (``en``/``cn``),
``input_image``, ``input_image_raw`` (images as ``{"bytes", "path"}``) and ``Intersection_exist``. Each row is
one sample with id ``<task_type>/<language>/<key>`` (GEdit's own results layout) and ``edit_type`` its task
type; the source is ``input_image``, the image GEdit's judge compares the edit with (``input_image_raw``, the
full-resolution original, stays in ``extra``). ``split`` picks the language: ``en`` (default), ``cn`` or
``all``. Needs pyarrow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import DatasetError
from ._parquet import ParquetCells
from .sample import EditDataset, EditSample

GEDIT_TASK_TYPES = ("background_change", "color_alter", "material_alter", "motion_change", "ps_human",
                    "style_change", "subject-add", "subject-remove", "subject-replace", "text_change",
                    "tone_transfer")
COLUMNS = ("task_type", "key", "instruction", "instruction_language", "input_image", "Intersection_exist")
LANGUAGES = ("en", "cn", "all")


def gedit_files(root: Path) -> list[Path]:
    """The parquet files of a GEdit-Bench download (a file, or a folder with ``data/*.parquet`` or ``*.parquet``)."""
    if root.is_file():
        return [root]
    return sorted(root.glob("data/*.parquet")) or sorted(root.glob("*.parquet"))


def is_gedit(path: Path) -> bool:
    """True when the parquet files at ``path`` have GEdit-Bench's columns."""
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - depends on the environment
        return False
    files = gedit_files(path)
    return bool(files) and {"task_type", "instruction_language"} <= set(pq.ParquetFile(files[0]).schema_arrow.names)


def read_gedit(root: str | Path, split: str = "en") -> EditDataset:
    """Read GEdit-Bench from its parquet files; ``split`` is the instruction language (``en``, ``cn``, ``all``)."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DatasetError("reading GEdit-Bench needs pyarrow: `pip install pyarrow`.") from exc
    root = Path(root).expanduser()
    if split not in LANGUAGES:
        raise DatasetError(f"GEdit-Bench split '{split}': choose the instruction language, one of {LANGUAGES}.")
    files = gedit_files(root)
    if not files:
        raise DatasetError(f"no GEdit-Bench parquet files under '{root}': download stepfun-ai/GEdit-Bench "
                           "(`huggingface-cli download stepfun-ai/GEdit-Bench --repo-type dataset --local-dir DIR`).")
    samples: list[EditSample] = []
    for path in files:
        handle = pq.ParquetFile(path)
        missing = set(COLUMNS) - set(handle.schema_arrow.names)
        if missing:
            raise DatasetError(f"GEdit-Bench parquet '{path}' lacks columns {sorted(missing)}; it is not "
                               "stepfun-ai/GEdit-Bench.")
        has_raw = "input_image_raw" in handle.schema_arrow.names
        cells = ParquetCells(["input_image", "input_image_raw"] if has_raw else ["input_image"])
        meta_columns = ["task_type", "key", "instruction", "instruction_language", "Intersection_exist"]
        for group in range(handle.num_row_groups):
            for row, meta in enumerate(handle.read_row_group(group, columns=meta_columns).to_pylist()):
                language = str(meta["instruction_language"] or "")
                if split != "all" and language != split:
                    continue
                sample_id = f"{meta['task_type']}/{language}/{meta['key']}"
                if not isinstance(meta["instruction"], str) or not meta["instruction"].strip():
                    raise DatasetError(f"sample '{sample_id}': GEdit-Bench row has no instruction.")
                where = (path, group, row)
                extra: dict[str, Any] = {"key": str(meta["key"]), "language": language,
                                         "intersection_exist": bool(meta["Intersection_exist"])}
                if has_raw:
                    extra["input_image_raw"] = cells.ref(where, "input_image_raw", sample_id)
                samples.append(EditSample(
                    id=sample_id, source=cells.ref(where, "input_image", sample_id),
                    instruction=meta["instruction"].strip(), edit_type=str(meta["task_type"]), extra=extra,
                ))
    return EditDataset(f"gedit-{split}", samples, kind="gedit", root=str(root))

