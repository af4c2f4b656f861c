"""Open-vocabulary grounding through transformers: CLIPSeg, and GroundingDINO boxes refined by SAM.

Both load by hub id or folder exactly as a user with internet does (``from_pretrained``), through
:func:`instructedit.hub.load_pretrained`, so offline and uncached they fail with its clear error. No weights for
them ship with instructedit; the tests build tiny random models of the same architectures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import InvalidRequestError
from ..hub import load_processor_and_model
from .base import Grounding, binary_mask

CLIPSEG = "CIDAS/clipseg-rd64-refined"
GROUNDING_DINO = "IDEA-Research/grounding-dino-tiny"
SAM = "facebook/sam-vit-base"


def _device(device: str | torch.device | None) -> torch.device:
    return torch.device(device) if device is not None else torch.device("cpu")


def _check_threshold(value: float, name: str = "threshold") -> float:
    if not 0.0 < float(value) < 1.0:
        raise InvalidRequestError(f"{name} must be in (0, 1), got {value!r}", field=name)
    return float(value)


def _score(prob: np.ndarray, threshold: float) -> float:
    inside = prob >= threshold
    return float(prob[inside].mean()) if inside.any() else 0.0


class CLIPSegGrounder:
    """CLIPSeg's text-conditioned segmentation: ``threshold`` on its sigmoid map gives the mask; the score is the
    mean probability inside it (0 when empty)."""

    name = "clipseg"

    def __init__(self, model: str = CLIPSEG, *, device: str | torch.device | None = None,
                 threshold: float = 0.4) -> None:
        self.model_id, self.device = str(model), _device(device)
        self.threshold = _check_threshold(threshold)
        self._loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

            self._loaded = load_processor_and_model(self.model_id, CLIPSegProcessor, CLIPSegForImageSegmentation,
                                                    self.device, what="CLIPSeg model")
        return self._loaded

    def probabilities(self, image: Image.Image, phrase: str) -> np.ndarray:
        """CLIPSeg's soft map of ``phrase`` (its own resolution, values in [0, 1])."""
        processor, model = self._load()
        inputs = processor(text=[phrase], images=[image.convert("RGB")], padding=True, return_tensors="pt")
        with torch.inference_mode():
            logits = model(**inputs.to(self.device)).logits
        return logits.reshape(logits.shape[-2:]).sigmoid().float().cpu().numpy()

    def ground(self, image: Image.Image, phrase: str) -> Grounding:
        prob = self.probabilities(image, phrase)
        mask = binary_mask(prob, image.size, self.threshold)
        score = _score(prob, self.threshold) if np.asarray(mask).any() else 0.0
        return Grounding(phrase, mask, score, self.name, {"threshold": self.threshold, "model": self.model_id})


class GroundedSAMGrounder:
    """GroundingDINO finds boxes for the phrase (``box_threshold`` on box confidence, ``text_threshold`` on the
    phrase's tokens); SAM turns each box into a mask; the union is the mask and the best box's confidence its
    score. No box above the threshold: an empty mask, score 0."""

    name = "grounded-sam"

    def __init__(self, detector: str = GROUNDING_DINO, segmenter: str = SAM, *,
                 device: str | torch.device | None = None, box_threshold: float = 0.35,
                 text_threshold: float = 0.25) -> None:
        self.detector_id, self.segmenter_id, self.device = str(detector), str(segmenter), _device(device)
        self.box_threshold = _check_threshold(box_threshold, "box_threshold")
        self.text_threshold = _check_threshold(text_threshold, "text_threshold")
        self._detector: tuple[Any, Any] | None = None
        self._segmenter: tuple[Any, Any] | None = None

    def _load_detector(self) -> tuple[Any, Any]:
        if self._detector is None:
            from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

            self._detector = load_processor_and_model(self.detector_id, AutoProcessor,
                                                      AutoModelForZeroShotObjectDetection, self.device,
                                                      what="GroundingDINO model")
        return self._detector

    def _load_segmenter(self) -> tuple[Any, Any]:
        if self._segmenter is None:
            from transformers import SamModel, SamProcessor

            self._segmenter = load_processor_and_model(self.segmenter_id, SamProcessor, SamModel, self.device,
                                                       what="SAM model")
        return self._segmenter

    def boxes(self, image: Image.Image, phrase: str) -> tuple[list[list[float]], list[float]]:
        """GroundingDINO's boxes (x0, y0, x1, y1 in pixels) and confidences for ``phrase``."""
        processor, model = self._load_detector()
        text = phrase.lower().rstrip(".") + "."  # GroundingDINO reads lower-case phrases ending in a period
        inputs = processor(images=image, text=text, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = model(**inputs)
        found = processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=self.box_threshold, text_threshold=self.text_threshold,
            target_sizes=[image.size[::-1]])[0]
        return found["boxes"].tolist(), found["scores"].tolist()

    def ground(self, image: Image.Image, phrase: str) -> Grounding:
        image = image.convert("RGB")
        boxes, scores = self.boxes(image, phrase)
        details = {"boxes": [round(v, 1) for box in boxes for v in box], "detector": self.detector_id,
                   "segmenter": self.segmenter_id}
        if not boxes:
            return Grounding(phrase, Image.new("L", image.size, 0), 0.0, self.name, details)
        processor, model = self._load_segmenter()
        inputs = processor(images=image, input_boxes=[boxes], return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = model(**inputs, multimask_output=False)
        masks = processor.image_processor.post_process_masks(
            outputs.pred_masks.cpu(), inputs["original_sizes"].cpu(), inputs["reshaped_input_sizes"].cpu())[0]
        union = masks.reshape(-1, *masks.shape[-2:]).any(dim=0).numpy()
        mask = Image.fromarray(np.where(union, 255, 0).astype(np.uint8), "L")
        return Grounding(phrase, mask, float(max(scores)), self.name, details)


__all__ = ["CLIPSEG", "GROUNDING_DINO", "SAM", "CLIPSegGrounder", "GroundedSAMGrounder"]
