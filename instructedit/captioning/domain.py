"""The reference domain's captioner, derived from the trained built-in grounder (not from the scene).

Every object colour the domain has is grounded in one batch ("the red object", "the blue object", ...); each
connected part of a mask that is confident (mean probability inside it at least ``min_score``) and large enough
is an object, whose shape is the domain shape its soft mask fits best (:func:`instructedit.domain.detect.
classify_shape`: the grounder finds the object, geometry names its outline), and whose size and grid place are
read off the mask (bounding-box side against the domain's small/large split, centroid in the 3x3 grid). The
background colour is the palette colour nearest the median of the pixels the grounder calls "the background".
The caption has the domain's own form: "a large red circle at the top left and a small blue star on the right on a white
background".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..domain.captions import caption
from ..domain.detect import _SIZE_SPLIT, classify_shape
from ..domain.palette import OBJECT_COLOURS, nearest_background_colour
from ..domain.scene import Background, Scene, SceneObject
from ..grounding.builtin import DomainGrounder


class DomainCaptioner:
    """``grounder``: the :class:`~instructedit.grounding.builtin.DomainGrounder` to read (default: the shipped
    model); ``min_score``: how confident a name's mask must be to count as an object."""

    name = "builtin"

    def __init__(self, grounder: DomainGrounder | str | Path | None = None, min_score: float = 0.75,
                 min_area: float = 0.004) -> None:
        self.grounder = grounder if isinstance(grounder, DomainGrounder) else DomainGrounder(grounder)
        self.min_score, self.min_area = float(min_score), float(min_area)

    def objects(self, image: Image.Image) -> list[dict]:
        """The objects found: colour, shape, size, centre (x, y in [0, 1]) and score."""
        from scipy import ndimage

        colours = list(OBJECT_COLOURS)
        model = self.grounder.model
        pixels = self.grounder.pixels(image)
        with torch.inference_mode():
            tokens = model.tokenize([f"the {c} object" for c in colours]).to(pixels.device)
            probs = model(pixels.expand(len(colours), -1, -1, -1), tokens).sigmoid()[:, 0].float().cpu().numpy()
        side = probs.shape[-1]
        found = []
        for colour, prob in zip(colours, probs, strict=True):
            labels, count = ndimage.label(prob >= self.grounder.threshold, structure=np.ones((3, 3), dtype=int))
            for index in range(1, count + 1):
                inside = labels == index
                score = float(prob[inside].mean())
                if inside.mean() < self.min_area or score < self.min_score:
                    continue
                ys, xs = np.nonzero(inside)
                y0, y1, x0, x1 = max(0, ys.min() - 1), min(side, ys.max() + 2), max(0, xs.min() - 1), \
                    min(side, xs.max() + 2)
                shape, _ = classify_shape(np.where(labels[y0:y1, x0:x1] == index, prob[y0:y1, x0:x1], 0.0))
                box = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) / side
                found.append({"colour": colour, "shape": shape, "score": score,
                              "size": "large" if box > _SIZE_SPLIT else "small",
                              "x": (xs.mean() + 0.5) / side, "y": (ys.mean() + 0.5) / side})
        return found

    def background(self, image: Image.Image) -> str:
        """The background's colour name."""
        prob = self.grounder.probabilities(image, "the background")
        rgb = np.asarray(image.convert("RGB").resize(prob.shape[::-1], Image.Resampling.BOX), dtype=np.float64)
        inside = prob >= self.grounder.threshold
        pixels = rgb[inside] if inside.any() else rgb.reshape(-1, 3)
        return nearest_background_colour(np.median(pixels, axis=0))

    def scene(self, image: Image.Image) -> Scene:
        """The scene the grounder sees in ``image``."""
        objects = tuple(SceneObject(o["shape"], o["colour"], o["size"], float(o["x"]), float(o["y"]))
                        for o in self.objects(image))
        return Scene(Background(self.background(image)), objects)

    def caption(self, image: Image.Image) -> str:
        return caption(self.scene(image))


__all__ = ["DomainCaptioner"]
