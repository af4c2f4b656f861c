"""People on real photos, offline: MediaPipe's selfie segmentation for "the person", "the man", "her" ...

The model (244 KB, Apache-2.0) ships in ``instructedit/assets/models/person/`` with its provenance; MediaPipe
1.x's ``ImageSegmenter`` runs it (``pip install "instructedit[person]"``). It separates people from everything
else, so it grounds phrases that name a person (or the people, the subject, the foreground) and "the
background" (the complement); any other phrase is refused with the backends that can find it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InvalidRequestError, ModelNotFoundError
from .base import Grounding, binary_mask

SELFIE_MODEL = Path(__file__).resolve().parent.parent / "assets" / "models" / "person" / "selfie_segmentation.tflite"

PERSON_WORDS = frozenset("""
person people man men woman women boy boys girl girls child children kid kids baby lady ladies guy guys gentleman
he him his she her hers they them someone somebody human humans individual subject foreground figure player
bride groom mother father mom mum dad son daughter wife husband friend student teacher worker rider skier
surfer runner dancer singer model portrait selfie face
""".split())
"""Words that make a phrase name a person (or the foreground a selfie model separates)."""

_BACKGROUND = frozenset({"background", "backdrop", "surroundings", "scenery"})


def names_person(phrase: str | None) -> bool:
    """Whether ``phrase`` names a person ("the man on the left", "her", "the people") — what this backend finds."""
    return bool(phrase) and any(w in PERSON_WORDS for w in re.findall(r"[a-z]+", str(phrase).lower()))


class PersonGrounder:
    """Selfie segmentation as a grounder: the confidence map thresholded at ``threshold`` is the person mask
    (its complement for "the background"); the score is the mean confidence inside the mask (0 when empty).
    ``model`` may point at another MediaPipe segmentation ``.tflite`` whose first confidence mask is the
    person (the landscape variant, for instance)."""

    name = "person"

    def __init__(self, model: str | Path = SELFIE_MODEL, *, threshold: float = 0.5) -> None:
        if not 0.0 < float(threshold) < 1.0:
            raise InvalidRequestError(f"threshold must be in (0, 1), got {threshold!r}", field="threshold")
        self.model_path, self.threshold = Path(model), float(threshold)
        self._loaded: tuple[Any, Any] | None = None

    def _options(self) -> Any:
        if self._loaded is None:
            if not self.model_path.is_file():
                raise ModelNotFoundError(f"no person segmentation model at {self.model_path}: reinstall "
                                         "instructedit (it ships one) or pass model= a MediaPipe .tflite file")
            try:
                from mediapipe.tasks.python import BaseOptions, vision
            except ImportError as exc:
                raise ModelNotFoundError("the person grounding backend runs on MediaPipe: "
                                         "`pip install \"instructedit[person]\"` (or `pip install mediapipe`)") from exc
            self._loaded = vision.ImageSegmenter, vision.ImageSegmenterOptions(
                base_options=BaseOptions(model_asset_buffer=self.model_path.read_bytes()),
                output_confidence_masks=True, output_category_mask=False)
        return self._loaded

    def confidence(self, image: Image.Image) -> np.ndarray:
        """The model's person confidence in [0, 1] for every pixel of ``image`` (h x w, float32)."""
        import mediapipe as mp

        segmenter_class, options = self._options()
        pixels = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
        # A graph per call (a few ms): MediaPipe's graphs cannot be closed once the interpreter starts exiting,
        # so none is left open between calls.
        with segmenter_class.create_from_options(options) as segmenter:
            result = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=pixels))
            values = np.array(result.confidence_masks[0].numpy_view(), dtype=np.float32)
        return np.clip(values.reshape(values.shape[0], values.shape[1]), 0.0, 1.0)

    def ground(self, image: Image.Image, phrase: str) -> Grounding:
        words = set(re.findall(r"[a-z]+", phrase.lower()))
        background = bool(words & _BACKGROUND)
        if not background and not names_person(phrase):
            raise InvalidRequestError(
                f"the person backend finds people and the background only, not '{phrase}': choose another "
                "grounding backend (builtin, clipseg, grounded-sam, attention) for other things", field="ground")
        prob = self.confidence(image)
        if background:
            prob = 1.0 - prob
        mask = binary_mask(prob, image.size, self.threshold)
        inside = prob >= self.threshold
        score = float(prob[inside].mean()) if inside.any() else 0.0
        return Grounding(phrase, mask, score, self.name, {"threshold": self.threshold, "background": background})
