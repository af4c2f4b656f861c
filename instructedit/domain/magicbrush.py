"""The MagicBrush test-set folder layout (OSU-NLP-Group/MagicBrush), written and read.

    <root>/images/<img_id>/<img_id>-input.png       source image of turn 1
    <root>/images/<img_id>/<img_id>-output<k>.png   ground truth after turn k (k = 1, 2, ...)
    <root>/images/<img_id>/<img_id>-mask<k>.png     edit mask of turn k
    <root>/edit_sessions.json        {img_id: [{"input", "output", "mask", "instruction"}, ...]} per turn
    <root>/global_descriptions.json  {img_id: {file name: caption of that whole image}}
    <root>/local_descriptions.json   {img_id: {output file name: description of the edited region}}

An ``img_id`` never contains "-" (MagicBrush tools split file names on it). Our masks are single-channel
PNGs with 255 = editable, 0 = keep; MagicBrush's own mask files may encode the region differently, so a
reader of public data should threshold whatever it finds. Every sample of the reference domain is a
one-turn session.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instructedit.errors import DatasetError

EDIT_SESSIONS = "edit_sessions.json"
GLOBAL_DESCRIPTIONS = "global_descriptions.json"
LOCAL_DESCRIPTIONS = "local_descriptions.json"


@dataclass(frozen=True)
class MagicBrushTurn:
    """One turn of a MagicBrush session, with absolute paths; descriptions are None when absent."""

    img_id: str
    turn_index: int  # 1-based, as in the MagicBrush dataset card
    instruction: str
    source_path: Path
    target_path: Path
    mask_path: Path | None
    source_caption: str | None = None
    target_caption: str | None = None
    local_description: str | None = None


def turn_file_names(img_id: str, turn: int = 1) -> tuple[str, str, str]:
    """(input, output, mask) file names of turn ``turn``."""
    source = f"{img_id}-input.png" if turn == 1 else f"{img_id}-output{turn - 1}.png"
    return source, f"{img_id}-output{turn}.png", f"{img_id}-mask{turn}.png"


def write_index_files(root: Path, turns: Iterable[dict[str, Any]]) -> None:
    """Write the three JSON index files for one-turn sessions. Each item: img_id, instruction,
    source_caption, target_caption, local_description (images are written by the caller)."""
    sessions: dict[str, list[dict[str, str]]] = {}
    global_desc: dict[str, dict[str, str]] = {}
    local_desc: dict[str, dict[str, str]] = {}
    for t in turns:
        img_id = t["img_id"]
        if "-" in img_id:
            raise DatasetError(f"img_id {img_id!r} contains '-', which MagicBrush file names reserve")
        source, target, mask = turn_file_names(img_id)
        sessions[img_id] = [{"input": source, "output": target, "mask": mask, "instruction": t["instruction"]}]
        global_desc[img_id] = {source: t["source_caption"], target: t["target_caption"]}
        local_desc[img_id] = {target: t["local_description"]}
    for name, data in ((EDIT_SESSIONS, sessions), (GLOBAL_DESCRIPTIONS, global_desc), (LOCAL_DESCRIPTIONS, local_desc)):
        (root / name).write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")


def _read_json(path: Path, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise DatasetError(f"{path} not found; a MagicBrush folder holds {EDIT_SESSIONS} next to images/")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path} must hold a JSON object keyed by img_id")
    return data


def read_magicbrush(root: str | Path) -> list[MagicBrushTurn]:
    """Every turn of a MagicBrush-layout folder, sessions in sorted img_id order, turns in order."""
    root = Path(root)
    sessions = _read_json(root / EDIT_SESSIONS, required=True)
    global_desc = _read_json(root / GLOBAL_DESCRIPTIONS, required=False)
    local_desc = _read_json(root / LOCAL_DESCRIPTIONS, required=False)
    turns = []
    for img_id in sorted(sessions):
        folder = root / "images" / img_id
        if not isinstance(sessions[img_id], list):
            raise DatasetError(f"session {img_id} in {EDIT_SESSIONS} must be a list of turns")
        for k, turn in enumerate(sessions[img_id], start=1):
            try:
                source, target, instruction = turn["input"], turn["output"], turn["instruction"]
            except (KeyError, TypeError) as exc:
                raise DatasetError(f"session {img_id} turn {k}: missing field {exc}") from exc
            mask = turn.get("mask")
            for name in (source, target, mask):
                if name is not None and not (folder / name).is_file():
                    raise DatasetError(f"session {img_id} turn {k}: image {folder / name} not found")
            gd = global_desc.get(img_id, {})
            turns.append(
                MagicBrushTurn(
                    img_id=img_id,
                    turn_index=k,
                    instruction=str(instruction),
                    source_path=folder / source,
                    target_path=folder / target,
                    mask_path=folder / mask if mask else None,
                    source_caption=gd.get(source),
                    target_caption=gd.get(target),
                    local_description=local_desc.get(img_id, {}).get(target),
                )
            )
    return turns
