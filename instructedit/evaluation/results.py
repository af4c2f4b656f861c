"""Benchmark results on disk: one JSON object per line, appended and fsynced row by row, so a crash or Ctrl-C
loses nothing that was finished, and a rerun can skip what is done.

Files in a results folder::

    results.jsonl                       the rows (a single process writes here directly)
    results.shard-<i>-of-<n>.jsonl      one per process when sharded (``accelerate launch``); merged by
                                        :func:`merge_results` into ``results.jsonl``
    results.parquet                     optional flat copy (needs pyarrow)

A row's ``key`` identifies its job; when a key appears twice the later row wins (a retried error).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import DatasetError

RESULTS = "results.jsonl"
PARQUET = "results.parquet"
_SHARD = re.compile(r"results\.shard-(\d+)-of-(\d+)\.jsonl")


class ResultsFileError(DatasetError):
    """A results file is damaged somewhere other than its last line; the message names the file and line."""


def shard_name(index: int, count: int) -> str:
    """The file process ``index`` of ``count`` writes."""
    return f"results.shard-{index:03d}-of-{count:03d}.jsonl"


def result_files(folder: str | Path) -> list[Path]:
    """``results.jsonl`` (if present) and every shard file of ``folder``, merged file first."""
    folder = Path(folder)
    files = [folder / RESULTS] if (folder / RESULTS).is_file() else []
    return files + sorted(p for p in folder.glob("results.shard-*.jsonl") if _SHARD.fullmatch(p.name))


def clean_value(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become ``None`` (JSON has no such numbers), tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_value(v) for v in value]
    return value


def iter_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """The rows of one JSONL file. A truncated last line (a crash mid-write) is skipped; a bad line elsewhere
    raises :class:`ResultsFileError`."""
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    complete = lines[:-1]  # text after the last newline is an unfinished write (or empty)
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ResultsFileError(
                f"results file '{path}' line {number} is not valid JSON ({exc.msg}); delete that line and rerun."
            ) from exc
        if not isinstance(row, dict) or "key" not in row:
            raise ResultsFileError(f"results file '{path}' line {number} is not a result row; delete that line.")
        yield row
    tail = lines[-1].strip()
    if tail:
        try:  # a last row written completely but without its newline is still a row
            row = json.loads(tail)
        except json.JSONDecodeError:
            return
        if isinstance(row, dict) and "key" in row:
            yield row


def read_rows(paths: str | Path | Iterable[str | Path]) -> list[dict[str, Any]]:
    """Rows of the given files or results folders, one per key (the last written wins), in first-seen order."""
    if isinstance(paths, str | Path):
        paths = [paths]
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = result_files(path)
            if not found:
                raise DatasetError(f"'{path}' holds no {RESULTS}: run `instructedit bench` with --out {path} first.")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DatasetError(f"results '{path}' does not exist: pass a results folder or a .jsonl file.")
    rows: dict[str, dict[str, Any]] = {}
    for file in files:
        for row in iter_rows(file):
            rows.pop(row["key"], None)  # re-insert so a retried row moves to its final place
            rows[row["key"]] = row
    return list(rows.values())


class ResultsWriter:
    """Appends rows to a JSONL file, flushing and fsyncing each one.

    Opening first cuts off an unfinished last line left by a crash, so the next row starts on a line of its own.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_partial_line(self.path)
        self._handle: IO[str] | None = open(self.path, "a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        """Append ``row`` (made JSON-safe) durably."""
        if self._handle is None:
            raise ValueError(f"results writer for '{self.path}' is closed")
        self._handle.write(json.dumps(clean_value(row), sort_keys=True, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop_partial_line(path: Path) -> None:
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        try:  # a complete row missing only its newline is kept
            complete = isinstance(json.loads(tail.decode("utf-8")), dict)
        except (UnicodeDecodeError, json.JSONDecodeError):
            complete = False
        if complete:
            handle.write(b"\n")
        else:
            handle.truncate(cut)
        handle.flush()
        os.fsync(handle.fileno())


def merge_results(folder: str | Path, *, remove_shards: bool = True) -> Path:
    """Merge ``results.jsonl`` and the shard files of ``folder`` into ``results.jsonl`` (one row per key).

    The merged file is written next to the old one and renamed over it, so a crash never loses rows; the
    shard files are deleted afterwards unless ``remove_shards=False``.
    """
    folder = Path(folder)
    files = result_files(folder)
    rows = read_rows(files) if files else []
    target = folder / RESULTS
    tmp = folder / f".{RESULTS}.merging"
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(clean_value(row), sort_keys=True, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    if remove_shards:
        for file in files:
            if file != target:
                file.unlink(missing_ok=True)
    return target


def flatten_row(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted columns (``params.strength``, ``metrics.l1_input``); lists become JSON text."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_row(value, f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def write_parquet(rows: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Write ``rows`` flattened to a Parquet file; returns ``None`` (and writes nothing) without pyarrow.

    A column whose values mix numbers and other types is stored as JSON text; integer and float columns
    are stored as floats.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    flat = [flatten_row(r) for r in rows]
    columns = sorted({k for r in flat for k in r})
    data: dict[str, list[Any]] = {}
    for column in columns:
        values = [r.get(column) for r in flat]
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {int, float} and float in kinds:
            values = [None if v is None else float(v) for v in values]
        elif len(kinds) > 1:
            values = [None if v is None else (v if isinstance(v, str) else json.dumps(v)) for v in values]
        data[column] = values
    path = Path(path)
    pq.write_table(pa.table(data), path)
    return path
