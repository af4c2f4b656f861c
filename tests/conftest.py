"""Shared fixtures: tiny random Stable-Diffusion components, built offline once per session."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    """Folders of tiny random pipelines: ``tiny_pipeline_dir(kind, prediction_type)`` -> path (cached)."""
    from instructedit.models.tiny import save_tiny_pipeline

    cache: dict[tuple[str, str], str] = {}
    root = tmp_path_factory.mktemp("tiny-models")

    def get(kind: str = "t2i", prediction_type: str = "epsilon") -> str:
        if (kind, prediction_type) not in cache:
            cache[(kind, prediction_type)] = str(
                save_tiny_pipeline(root / f"{kind}-{prediction_type}", kind=kind, prediction_type=prediction_type)
            )
        return cache[(kind, prediction_type)]

    return get


@pytest.fixture(scope="session")
def test_image() -> Image.Image:
    """A 32x32 RGB image with structure (gradients and a square), deterministic."""
    y, x = np.mgrid[0:32, 0:32]
    array = np.stack([x * 8, y * 8, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    array[8:20, 10:22] = [250, 30, 30]
    return Image.fromarray(array)
