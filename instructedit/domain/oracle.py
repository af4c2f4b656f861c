"""Exact-ground-truth oracles for edits on the reference domain.

``edit_applied(output, sample)`` is True when, inside the ground-truth edit mask, the output is closer (mean
absolute difference) to the ground-truth target than to the input, AND the edited content is right:

  change_colour      the dominant (median) colour of the object's interior is the target colour name
  remove             >= 75 % of the removed object's interior pixels are closer to the target (background)
                     than to the input (object)
  add / replace      the detector finds an object of the target colour and shape whose box centre lies in
                     the target object's box (1 px tolerance)
  change_size        as add, and the detected size word is the target size
  move               as add at the new place, and the old place is vacated (as for remove)
  change_background  the dominant colour of the pure-background pixels names the target background

``preservation(output, input, mask)`` measures how well the region outside the mask is kept.
Outputs of another size than the sample are resized (bicubic) to the sample size first.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .arrays import ImageLike, MaskLike, to_bool_mask, to_rgb255
from .detect import detect_objects
from .edits import edited_objects
from .palette import nearest_background_colour, nearest_object_colour
from .render import dilate, interior, silhouette
from .samples import DomainSample
from .scene import SceneObject

VACATED_FRACTION = 0.75  # share of an emptied region that must look like the target (background)


def preservation(output: ImageLike, input: ImageLike, mask: MaskLike) -> dict[str, float | None]:
    """PSNR (data range 1.0) and L1 (mean absolute difference) between ``output`` and ``input`` on [0, 1]
    RGB values, over the pixels OUTSIDE ``mask`` (mask True / white = edit region, excluded).

    Identical regions give ``psnr = inf`` and ``l1 = 0.0``. When the mask covers the whole image there is
    nothing to measure and both values are ``None`` (not NaN, so results stay valid JSON).
    ``output`` is resized (bicubic) to the input's size if it differs; ``mask`` must match the input."""
    inp = to_rgb255(input) / 255.0
    h, w = inp.shape[:2]
    out = to_rgb255(output, size=(w, h)) / 255.0
    keep = ~to_bool_mask(mask, shape=(h, w))
    if not keep.any():
        return {"psnr": None, "l1": None}
    diff = out[keep] - inp[keep]
    mse = float(np.mean(diff**2))
    return {"psnr": math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse), "l1": float(np.mean(np.abs(diff)))}


def _median_rgb(img: np.ndarray, region: np.ndarray) -> np.ndarray:
    return np.median(img[region], axis=0)


def _vacated(out: np.ndarray, src: np.ndarray, tgt: np.ndarray, region: np.ndarray) -> tuple[bool, float]:
    if not region.any():
        return True, 1.0
    closer = np.abs(out - tgt).sum(axis=2) < np.abs(out - src).sum(axis=2)
    share = float(closer[region].mean())
    return share >= VACATED_FRACTION, share


def _found(out: np.ndarray, obj: SceneObject, size: int, check_size: bool) -> tuple[bool, str]:
    x0, y0, x1, y1 = (v * size for v in obj.bbox())
    for d in detect_objects(out / 255.0):
        cx, cy = (d.bbox[0] + d.bbox[2]) / 2, (d.bbox[1] + d.bbox[3]) / 2
        if not (x0 - 1 <= cx <= x1 + 1 and y0 - 1 <= cy <= y1 + 1):
            continue
        if d.colour == obj.colour and d.shape == obj.shape and (not check_size or d.size == obj.size):
            return True, f"found {d.size} {d.colour} {d.shape}"
        return False, f"found {d.size} {d.colour} {d.shape} where a {obj.size} {obj.colour} {obj.shape} should be"
    return False, f"no object where the {obj.colour} {obj.shape} should be"


def _semantic(out: np.ndarray, src: np.ndarray, tgt: np.ndarray, sample: DomainSample) -> tuple[bool, str]:
    size = sample.size
    before, after = edited_objects(sample.source_scene, sample.edit)
    kind = sample.edit_type
    if kind == "change_colour":
        assert after is not None
        name = nearest_object_colour(_median_rgb(out, interior(after, size)))
        return name == after.colour, f"object colour {name}, expected {after.colour}"
    if kind == "remove":
        assert before is not None
        ok, share = _vacated(out, src, tgt, interior(before, size))
        return ok, f"{share:.0%} of the removed object's pixels look like background"
    if kind == "change_background":
        occupied = np.zeros((size, size), dtype=bool)
        for obj in sample.target_scene.objects:
            occupied |= silhouette(obj, size)
        name = nearest_background_colour(_median_rgb(out, ~dilate(occupied, 1)))
        expected = sample.target_scene.background.colour
        return name == expected, f"background {name}, expected {expected}"
    assert after is not None
    ok, why = _found(out, after, size, check_size=kind == "change_size")
    if ok and kind == "move":
        assert before is not None
        old = interior(before, size) & ~dilate(silhouette(after, size), 1)
        ok, share = _vacated(out, src, tgt, old)
        why += f"; {share:.0%} of the old place vacated"
    return ok, why


def edit_report(output: ImageLike, sample: DomainSample) -> dict[str, Any]:
    """The oracle's verdict with its parts: applied, closer_to_target, semantic_ok, d_target and d_input
    (mean absolute difference in the mask, [0, 1] scale) and a one-line reason."""
    size = sample.size
    src = to_rgb255(sample.source_image())
    tgt = to_rgb255(sample.target_image())
    out = to_rgb255(output, size=(size, size))
    mask = sample.mask_array()
    d_target = float(np.abs(out - tgt)[mask].mean() / 255.0)
    d_input = float(np.abs(out - src)[mask].mean() / 255.0)
    closer = d_target < d_input
    semantic_ok, reason = _semantic(out, src, tgt, sample)
    return {
        "applied": bool(closer and semantic_ok),
        "closer_to_target": bool(closer),
        "semantic_ok": bool(semantic_ok),
        "d_target": d_target,
        "d_input": d_input,
        "reason": reason,
    }


def edit_applied(output: ImageLike, sample: DomainSample) -> bool:
    """Whether ``output`` shows the edit of ``sample`` (see the module docstring for the exact rule)."""
    return edit_report(output, sample)["applied"]
