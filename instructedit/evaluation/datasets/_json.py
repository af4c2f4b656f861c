"""Reading JSON/JSONL annotation files with errors that name the file and the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import DatasetError


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file; a missing or malformed file raises :class:`DatasetError`."""
    if not path.is_file():
        raise DatasetError(f"{what} '{path}' does not exist: check the dataset folder.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{what} '{path}' is not valid JSON ({exc}); re-download or fix the file.") from exc


def read_jsonl(path: Path, what: str) -> list[tuple[int, Any]]:
    """Parse a JSON-lines file into ``(line_number, value)`` pairs, skipping blank lines."""
    if not path.is_file():
        raise DatasetError(f"{what} '{path}' does not exist: check the path.")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{what} '{path}' line {number} is not valid JSON ({exc}); fix that line.") from exc
    return records


def optional_text(record: dict[str, Any], key: str, sample_id: str) -> str | None:
    """``record[key]`` stripped, ``None`` when absent or empty; a non-string raises DatasetError."""
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DatasetError(
            f"sample '{sample_id}': field '{key}' must be a string, got {type(value).__name__}; fix the annotation."
        )
    value = value.strip()
    return value or None
