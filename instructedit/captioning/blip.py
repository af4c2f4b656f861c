"""BLIP captions through transformers (``Salesforce/blip-image-captioning-base`` or any BLIP captioning model).

Loaded by hub id or folder exactly as a user with internet does (``BlipProcessor`` + ``BlipForConditionalGeneration``
``from_pretrained``); offline and uncached it fails with :func:`instructedit.hub.load_pretrained`'s clear error.
Decoding is greedy (``num_beams=1``, no sampling) so a caption is a function of the image.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from ..hub import load_processor_and_model
from . import BLIP_BASE


class BlipCaptioner:
    """``model``: hub id or folder; ``prompt``: an optional start the caption continues ("a picture of");
    ``max_new_tokens``: the caption's length cap."""

    name = "blip"

    def __init__(self, model: str = BLIP_BASE, *, device: str | torch.device | None = None, prompt: str | None = None,
                 max_new_tokens: int = 30) -> None:
        self.model_id, self.prompt, self.max_new_tokens = str(model), prompt, int(max_new_tokens)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from transformers import BlipForConditionalGeneration, BlipProcessor

            self._loaded = load_processor_and_model(self.model_id, BlipProcessor, BlipForConditionalGeneration,
                                                    self.device, what="BLIP captioner")
        return self._loaded

    def caption(self, image: Image.Image) -> str:
        processor, model = self._load()
        inputs = processor(images=image.convert("RGB"), text=self.prompt, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            tokens = model.generate(**inputs, max_new_tokens=self.max_new_tokens, num_beams=1, do_sample=False)
        return processor.decode(tokens[0], skip_special_tokens=True).strip()


__all__ = ["BlipCaptioner"]
