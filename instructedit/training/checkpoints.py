"""Training checkpoints: ``OUTPUT/checkpoints/checkpoint-<step>/`` folders written by ``accelerator.save_state``
(model weights as safetensors, optimizer, learning-rate scheduler, EMA, RNG states) plus ``trainer_state.json``.

A checkpoint is written under a temporary name and renamed when complete, so an interruption while saving
never leaves a half-written "latest" checkpoint behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from accelerate import Accelerator

from ..errors import InvalidRequestError

STATE_FILE = "trainer_state.json"
PREFIX = "checkpoint-"


def checkpoint_root(output_dir: str | Path) -> Path:
    """Folder that holds the checkpoints of a run."""
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        suffix = path.name[len(PREFIX) :]
        if path.name.startswith(PREFIX) and suffix.isdigit() and (path / STATE_FILE).is_file():
            found.append((int(suffix), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The most recent complete checkpoint, or None."""
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def save_checkpoint(
    accelerator: Accelerator, output_dir: str | Path, global_step: int, state: dict, total_limit: int | None
) -> Path | None:
    """Save the accelerator state and ``state`` (JSON) as checkpoint ``global_step``; keep the newest
    ``total_limit`` checkpoints. Returns the checkpoint folder (None on non-main processes)."""
    root = checkpoint_root(output_dir)
    final = root / f"{PREFIX}{global_step}"
    partial = root / f".partial-{PREFIX}{global_step}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if partial.exists():
            shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    if not accelerator.is_main_process:
        return None
    (partial / STATE_FILE).write_text(json.dumps({**state, "global_step": global_step}, indent=2))
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    if total_limit is not None and total_limit > 0:
        for old in list_checkpoints(output_dir)[:-total_limit]:
            shutil.rmtree(old)
    return final


def load_checkpoint(accelerator: Accelerator, checkpoint: Path, task_name: str) -> dict:
    """Restore the accelerator state from ``checkpoint`` and return its trainer state."""
    state = json.loads((checkpoint / STATE_FILE).read_text())
    if state.get("task") not in (None, task_name):
        raise InvalidRequestError(
            f"checkpoint '{checkpoint}' belongs to a '{state.get('task')}' run, not '{task_name}': resume with the "
            "same command, or use another output_dir.",
            field="output_dir",
        )
    accelerator.load_state(str(checkpoint))
    return state
