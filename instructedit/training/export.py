"""Turning trained pipelines into compact folders to commit.

A frozen pretrained text encoder that ships in a pip package need not be committed with every model:
:func:`export_pipeline` can leave its weights out and record where they come from (package, file, SHA-256) in
``text_encoder/external.json``; :func:`instructedit.models.external.materialize_text_encoder` puts the identical
file back before the folder is loaded.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file

from ..errors import InvalidModelError
from ..models import external
from .pipelines import SAVE_DTYPES, folder_size_mb


@dataclass
class ExportReport:
    """Where an export went and how large its weights are."""

    folder: Path
    weights_mb: float
    external_text_encoder: str | None


def export_pipeline(
    source: str | Path, dest: str | Path, save_dtype: str = "fp16", external_text_encoder: str | None = None
) -> ExportReport:
    """Re-save the pipeline folder ``source`` into ``dest`` with weights in ``save_dtype``.

    With ``external_text_encoder`` (a pip package name from KNOWN_PACKAGES) the text encoder's weights are left
    out and referenced instead; they must be exactly that package's weights (a frozen encoder), else
    InvalidModelError.
    """
    # in float32 whatever the stored dtype (without the pipeline-level dtype keyword, which diffusers renamed)
    pipe = DiffusionPipeline.from_pretrained(str(source)).to(torch.float32)
    reference = None
    if external_text_encoder is not None:
        weights = external.package_weights(external_text_encoder)
        original = load_file(weights)
        trained = pipe.text_encoder.state_dict()  # the package file may also hold buffers (position ids)
        if any(k not in original or not torch.equal(v, original[k].to(v.dtype)) for k, v in trained.items()):
            raise InvalidModelError(
                f"the text encoder of '{source}' differs from the '{external_text_encoder}' weights (was it trained?):"
                " export it with its weights instead."
            )
        reference = {"package": external_text_encoder, "file": weights.name, "sha256": external.sha256_of(weights)}
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
        (dest / "text_encoder" / external.EXTERNAL_FILE).write_text(json.dumps(reference, indent=2))
    return ExportReport(dest, folder_size_mb(dest), external_text_encoder)
