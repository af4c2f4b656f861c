"""Training the built-in models (and fine-tuning real Stable Diffusion) on diffusers, transformers and accelerate.

    from instructedit.training import TrainingConfig, train, VAETask, VAESettings
    train(VAETask(VAESettings(data_dir="data/train/t2i")), TrainingConfig(output_dir="runs/vae"))

Command line: ``instructedit train vae|text2image|ip2p|all|probe-text-encoders`` (:mod:`.cli`). Names are
imported lazily so that ``import instructedit.training`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainingConfig": "loop",
    "TrainingResult": "loop",
    "TrainingTask": "loop",
    "train": "loop",
    "VAESettings": "vae_trainer",
    "VAETask": "vae_trainer",
    "Text2ImageSettings": "diffusion_task",
    "Text2ImageTask": "diffusion_task",
    "InstructPix2PixSettings": "diffusion_task",
    "InstructPix2PixTask": "diffusion_task",
    "RecipeSettings": "recipe",
    "run_recipe": "recipe",
    "ImageCaptionDataset": "data",
    "EditTripletDataset": "data",
    "load_trainable_components": "pipelines",
    "save_pipeline": "pipelines",
    "export_pipeline": "export",
    "materialize_text_encoder": "export",
    "compare_text_encoders": "text_encoder_probe",
    "write_toy_datasets": "toy_data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
