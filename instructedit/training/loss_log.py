"""The per-step loss log: ``OUTPUT/loss_log.jsonl``, one JSON object per optimizer step."""

from __future__ import annotations

import json
from pathlib import Path

LOG_FILE = "loss_log.jsonl"


class LossLog:
    """Appends ``{"step", "loss", "lr", "seconds"}`` rows. Opening with ``keep_until=N`` drops rows after step N
    (rows a resumed run is about to redo), so a resumed log reads like one uninterrupted run."""

    def __init__(self, output_dir: str | Path, keep_until: int = 0, enabled: bool = True) -> None:
        self.path = Path(output_dir) / LOG_FILE
        self.enabled = enabled
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [row for row in read_loss_log(self.path) if row["step"] <= keep_until] if keep_until else []
        with self.path.open("w", encoding="utf-8") as handle:
            for row in kept:
                handle.write(json.dumps(row) + "\n")

    def write(self, **row: float | int) -> None:
        """Append one row."""
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")


def read_loss_log(path: str | Path) -> list[dict]:
    """Rows of a loss log (an empty list when the file does not exist); a torn last line is ignored."""
    path = Path(path)
    if path.is_dir():
        path = path / LOG_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
