"""The built-in models that ship inside the package (trained by instructedit on its reference domain)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "models"


def builtin_model(kind: str) -> str | None:
    """Path of the shipped model of ``kind`` ("t2i" or "ip2p") when it is installed, else ``None``."""
    path = ASSETS / kind
    return str(path) if (path / "model_index.json").exists() else None
