"""Loading pretrained weights from a hub id or a local folder, with errors that say how to fix them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .errors import ModelNotFoundError

T = TypeVar("T")


def looks_like_local_path(name: str) -> bool:
    """True when ``name`` is meant as a filesystem path rather than a hub id ``owner/name``."""
    # Hub ids have exactly one slash ("owner/name"); anything else with a slash, or starting like a path, is one.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).expanduser().exists()


def load_pretrained(name: str, loader: Callable[[str], T], *, what: str = "model") -> T:
    """Call ``loader(name)`` (a ``from_pretrained``), turning "not found"/"offline" failures into one clear error.

    ``name`` is a hub id (``openai/clip-vit-large-patch14``) or a local folder. A local path that does not exist
    fails before anything is attempted; a hub id that cannot be fetched (no network, no cache) says so and how
    to fix it.
    """
    path = Path(name).expanduser()
    if looks_like_local_path(name) and not path.exists():
        raise ModelNotFoundError(
            f"{what} path '{name}' does not exist: pass an existing local folder in diffusers/transformers "
            "layout, or a hub id such as 'owner/name'."
        )
    try:
        return loader(str(path) if path.exists() else name)
    except (OSError, ValueError) as exc:  # transformers/diffusers raise OSError/EnvironmentError when not found
        offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
        hint = (
            "download it on a machine with internet (`huggingface-cli download "
            f"{name} --local-dir DIR`) and pass DIR instead"
        )
        if path.exists():
            hint = "check that the folder holds complete weights and config files in diffusers/transformers layout"
        reason = " (offline mode is on)" if offline else ""
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(
            f"cannot load {what} '{name}'{reason}: {first_line[:200]} -- {hint}."
        ) from exc


def load_processor_and_model(name: str, processor_cls, model_cls, device, *, what: str = "model") -> tuple:
    """A transformers processor and model of ``name`` (both by :func:`load_pretrained`), the model on ``device``
    in eval mode: how every transformers-backed grounder and captioner loads."""
    processor = load_pretrained(name, processor_cls.from_pretrained, what=what)
    model = load_pretrained(name, model_cls.from_pretrained, what=what)
    return processor, model.to(device).eval()
