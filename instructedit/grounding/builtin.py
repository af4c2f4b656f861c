"""The built-in grounder: a small phrase-conditioned segmenter trained on the reference domain's exact masks.

``DomainGrounder().ground(image, phrase)`` resizes the image to the model's side (64 px), predicts a soft mask of
what the phrase names ("the red circle", "the star at the top left", "the small blue one", "the background"),
thresholds it and resizes it back to the image's size. Phrases are read as a bag of words over the domain's
vocabulary (colours, shapes, sizes, grid places, "background"); other words are ignored, and a phrase with no
known word gives an empty mask with score 0. The score is the mean probability inside the mask (0 when the mask
is empty): near 1 when the model is sure of every pixel it marks.

The model ships in ``instructedit/assets/models/grounder/`` (``config.json``, ``model.safetensors``,
``instructedit.json``: how it was trained and what it measured); ``python -m instructedit.training.grounder``
trains one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import InvalidModelError, InvalidRequestError
from .base import Grounding, binary_mask, check_phrase

SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "models" / "grounder"


class DomainGrounder:
    """``model``: a folder saved by :class:`instructedit.models.segmenter.PhraseSegmenter` (default: the shipped
    one); ``device``: where it runs (default CPU); ``threshold``: probability at which a pixel is in the mask."""

    name = "builtin"

    def __init__(self, model: str | Path | None = None, device: str | torch.device | None = None,
                 threshold: float = 0.5) -> None:
        if not 0.0 < float(threshold) < 1.0:
            raise InvalidRequestError(f"threshold must be in (0, 1), got {threshold!r}", field="threshold")
        self.model_path = Path(model) if model is not None else SHIPPED
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.threshold = float(threshold)
        self._model = None

    @property
    def model(self):
        """The segmenter, loaded on first use."""
        if self._model is None:
            from ..models.segmenter import PhraseSegmenter

            if not (self.model_path / "config.json").is_file():
                raise InvalidModelError(f"no built-in grounder in '{self.model_path}' (config.json missing): "
                                        "train one with python -m instructedit.training.grounder")
            try:
                self._model = PhraseSegmenter.from_pretrained(self.model_path).to(self.device)
            except Exception as error:  # any unreadable file (safetensors raises its own error type)
                raise InvalidModelError(f"the grounder in '{self.model_path}' could not be read ({error}): "
                                        "use a folder saved by PhraseSegmenter.save_pretrained") from error
        return self._model

    def probabilities(self, image: Image.Image, phrase: str) -> np.ndarray:
        """The soft mask (model side x model side, float in [0, 1]) of ``phrase`` in ``image``."""
        model = self.model
        side = model.size
        if not model.known(phrase):
            return np.zeros((side, side), dtype=np.float32)
        with torch.inference_mode():
            logits = model(self.pixels(image), model.tokenize([phrase]).to(self.device))
        return logits.sigmoid()[0, 0].float().cpu().numpy()

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """``image`` as the model reads it: RGB at the model's side, (1, 3, side, side) in [-1, 1]."""
        side = self.model.size
        rgb = image.convert("RGB")
        if rgb.size != (side, side):
            rgb = rgb.resize((side, side), Image.Resampling.BOX if min(rgb.size) > side else
                             Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
        return pixels.to(self.device)

    def ground(self, image: Image.Image, phrase: str) -> Grounding:
        phrase = check_phrase(phrase)
        prob = self.probabilities(image, phrase)
        inside = prob >= self.threshold
        score = float(prob[inside].mean()) if inside.any() else 0.0
        mask = binary_mask(prob, image.size, self.threshold)
        if not np.asarray(mask).any():
            score = 0.0
        return Grounding(phrase, mask, score, self.name,
                         {"threshold": self.threshold, "model": self.model_path.name,
                          "known_words": self.model.known(phrase)})


__all__ = ["SHIPPED", "DomainGrounder"]
