"""Batch editing: one edit per line of a JSONL manifest, resumable, one bad line never stops the rest.

A line is a JSON object: ``image`` (a path, relative to the manifest's folder unless absolute), the texts
(``instruction`` and/or ``source``/``target``), and optionally ``method``, ``params``, ``seed``, ``model``,
``mask`` (a path), ``plan``, ``ground`` and ``id`` (a name for the line; default: a hash of the line). Outputs go to
``OUT/images/<key>.png`` with their records, and one row per line to ``OUT/results.jsonl``, written with the
benchmark runner's durable writer (each row flushed and fsynced, a torn last line cut off on reopen). Rerunning
the same command skips every line already done; lines that failed are tried again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InstructEditError, InvalidRequestError

FIELDS = {"image", "instruction", "source", "target", "method", "params", "seed", "model", "mask", "plan", "ground",
          "ground_options", "id"}


@dataclass
class BatchSummary:
    """What a batch run did: lines ``done`` now, ``already_done`` before, ``failed`` (bad line or edit)."""

    results: Path
    lines: int
    done: int
    already_done: int
    failed: int


def manifest_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, the parsed object or ``None``, the problem) for each non-empty line."""
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, None, f"line {number} is not JSON ({exc.msg} at column {exc.colno})"
                continue
            if not isinstance(line, dict):
                yield number, None, f"line {number} must be a JSON object, got {type(line).__name__}"
                continue
            unknown = sorted(set(line) - FIELDS)
            if unknown:
                yield number, line, (f"line {number} has unknown field(s) {', '.join(unknown)}: "
                                     f"use {', '.join(sorted(FIELDS))}")
                continue
            if not isinstance(line.get("image"), str) or not line["image"].strip():
                yield number, line, f"line {number} needs \"image\": the path of the image to edit"
                continue
            yield number, line, None


def line_key(line: dict[str, Any] | None, number: int) -> str:
    """A line's identity across runs: its ``id``, else a hash of its content (else of its number)."""
    if line is not None and isinstance(line.get("id"), str | int) and str(line["id"]).strip():
        return _safe(str(line["id"]))
    payload = json.dumps(line, sort_keys=True, default=str) if line is not None else f"line-{number}"
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _safe(text: str) -> str:
    kept = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80].strip(".")
    return kept or hashlib.sha256(text.encode()).hexdigest()[:16]


def run_batch(manifest: str | Path, out_dir: str | Path, *, editor=None,
              progress: Callable[[int], Any] | None = None) -> BatchSummary:
    """Run every line of ``manifest`` not yet done in ``out_dir``; see the module docstring."""
    from ..editor import Editor
    from ..evaluation.results import ResultsWriter, read_rows
    from ..inputs import save_image
    from ..types import EditRequest

    manifest, out_dir = Path(manifest), Path(out_dir)
    if not manifest.is_file():
        raise InvalidRequestError(f"no manifest at {manifest}: give a JSONL file, one edit per line",
                                  field="manifest")
    results = out_dir / "results.jsonl"
    done_keys = {r["key"] for r in read_rows(results) if r.get("status") == "ok"} if results.exists() else set()
    editor = editor or Editor()
    lines = list(manifest_lines(manifest))
    bar = progress(len(lines)) if progress else None
    summary = BatchSummary(results=results, lines=len(lines), done=0, already_done=0, failed=0)
    with ResultsWriter(results) as writer:
        for number, line, problem in lines:
            key = line_key(line, number)
            row: dict[str, Any] = {"key": key, "line": number, "id": (line or {}).get("id")}
            if key in done_keys:
                summary.already_done += 1
            elif problem is not None:
                writer.write({**row, "status": "error", "error": problem, "field": None})
                summary.failed += 1
            else:
                try:
                    fields = {k: v for k, v in line.items() if k not in ("id", "image", "mask")}
                    image = _path(manifest, line["image"])
                    mask = _path(manifest, line["mask"]) if line.get("mask") else None
                    result = editor.edit(EditRequest(image=image, mask=mask, **fields))
                    output = save_image(result.image, out_dir / "images" / f"{key}.png",
                                        metadata={"instructedit": result.record.to_json()})
                    writer.write({**row, "status": "ok", "output_image": str(output.relative_to(out_dir)),
                                  "record": result.record.to_dict()})
                    done_keys.add(key)
                    summary.done += 1
                except (InstructEditError, TypeError) as exc:
                    field = getattr(exc, "field", None)
                    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    writer.write({**row, "status": "error", "error": f"line {number}: {message}", "field": field})
                    summary.failed += 1
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return summary


def _path(manifest: Path, value: str) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else manifest.parent / path)
