"""A detector for the reference domain, used as the text-to-image oracle and inside the edit oracle.

1. Background: a plane fitted per channel to the image border (robust to gradients), or a named hint.
2. Foreground: pixels farther than ``threshold`` (RGB, 0-255) from the background; 8-connected components
   (scipy.ndimage.label); each component is then re-cut at half-way between the background and its own
   core colour, which approximates "coverage > 0.5" whatever the contrast.
3. Colour: the nearest named object colour to the mean of the component's core pixels.
4. Shape: each shape's silhouette is drawn into the component's bounding box; the best intersection over
   union wins (all shapes are upright and fill their box, so this is a fair geometric comparison).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from instructedit.errors import InvalidRequestError

from .arrays import ImageLike, to_rgb255
from .palette import (
    BACKGROUND_COLOURS,
    SHAPES,
    SIZES,
    nearest_background_colour,
    nearest_object_colour,
    position_word,
)
from .render import draw_shape
from .scene import Scene

DEFAULT_THRESHOLD = 40.0
_TEMPLATE_SUPERSAMPLE = 4
_PADS = (0.0, 0.25, 0.5, 0.75)
_SIZE_SPLIT = SIZES["small"] + SIZES["large"]  # box side / image side between small and large (sum of halves)


@dataclass(frozen=True)
class DetectedObject:
    """An object found in an image. ``bbox`` (x0, y0, x1, y1) in pixels, end-exclusive; ``centroid`` (x, y)
    in pixels with pixel i spanning [i, i + 1); ``shape_score`` the IoU with the chosen shape's silhouette."""

    colour: str
    shape: str
    bbox: tuple[int, int, int, int]
    area: int
    centroid: tuple[float, float]
    shape_score: float
    image_size: tuple[int, int]  # (width, height)

    @property
    def position(self) -> str:
        """Grid word of the bounding-box centre (the scene's (x, y) is the box centre too)."""
        x0, y0, x1, y1 = self.bbox
        w, h = self.image_size
        return position_word((x0 + x1) / 2 / w, (y0 + y1) / 2 / h)

    @property
    def size(self) -> str:
        """ "small" or "large", from the bounding-box side relative to the image side."""
        x0, y0, x1, y1 = self.bbox
        side = max((x1 - x0) / self.image_size[0], (y1 - y0) / self.image_size[1])
        return "large" if side > _SIZE_SPLIT else "small"


def _border(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = arr.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    frame = np.zeros((h, w), dtype=bool)
    frame[0, :] = frame[-1, :] = frame[:, 0] = frame[:, -1] = True
    return arr[frame], xs[frame].astype(np.float64), ys[frame].astype(np.float64)


def estimate_background(image: ImageLike) -> np.ndarray:
    """Per-pixel background estimate, float64 (H, W, 3) in 0-255: a plane per channel fitted (least squares)
    to the border pixels that are close to the border median."""
    arr = to_rgb255(image)
    return _background_model(arr)


def _background_model(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    values, xs, ys = _border(arr)
    median = np.median(values, axis=0)
    keep = np.linalg.norm(values - median, axis=1) < DEFAULT_THRESHOLD
    if keep.sum() < 8:
        return np.broadcast_to(median, arr.shape).copy()
    design = np.stack([np.ones(keep.sum()), xs[keep], ys[keep]], axis=1)
    coef, *_ = np.linalg.lstsq(design, values[keep], rcond=None)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float64)
    return coef[0][None, None, :] + gx[:, :, None] * coef[1][None, None, :] + gy[:, :, None] * coef[2][None, None, :]


def detect_background(image: ImageLike) -> str:
    """Name of the background colour (nearest named background colour to the border median)."""
    values, _, _ = _border(to_rgb255(image))
    return nearest_background_colour(np.median(values, axis=0))


def _label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    try:
        from scipy import ndimage
    except ImportError as exc:  # pragma: no cover - scipy is a declared dependency of the domain
        raise ImportError("instructedit.domain.detect needs scipy: pip install scipy") from exc
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
    return labels, int(count)


@lru_cache(maxsize=4096)
def _template(shape: str, w: int, h: int, pad: float) -> np.ndarray:
    """Coverage (h, w) of ``shape`` filling the box inset by 1 px in a (w, h) crop, grown by ``pad`` px."""
    ss = _TEMPLATE_SUPERSAMPLE
    canvas = Image.new("L", (w * ss, h * ss), 0)
    box = ((1.0 - pad) * ss, (1.0 - pad) * ss, (w - 1.0 + pad) * ss, (h - 1.0 + pad) * ss)
    draw_shape(ImageDraw.Draw(canvas), shape, box)
    cov = np.asarray(canvas, dtype=np.float64).reshape(h, ss, w, ss).mean(axis=(1, 3)) / 255.0
    cov.flags.writeable = False
    return cov


def classify_shape(coverage: np.ndarray) -> tuple[str, float]:
    """(shape, soft IoU) for an estimated coverage map (values in [0, 1]) cropped to the object's box of
    pixels with coverage > 0.5 plus a 1-pixel frame. That box is up to a pixel tighter than the true box,
    so each shape is tried grown by 0 - 0.75 px and scored by its best fit."""
    h, w = coverage.shape
    best, best_iou = SHAPES[0], -1.0
    for shape in SHAPES:
        for pad in _PADS:
            t = _template(shape, w, h, pad)
            iou = float(np.minimum(t, coverage).sum() / max(1e-9, np.maximum(t, coverage).sum()))
            if iou > best_iou:
                best, best_iou = shape, iou
    return best, best_iou


def _background_of(arr: np.ndarray, hint: str | tuple[float, float, float] | None) -> np.ndarray:
    if hint is None:
        return _background_model(arr)
    if isinstance(hint, str):
        if hint not in BACKGROUND_COLOURS:
            raise InvalidRequestError(
                f"unknown background colour {hint!r}; choose one of {', '.join(BACKGROUND_COLOURS)}"
            )
        rgb = np.asarray(BACKGROUND_COLOURS[hint], dtype=np.float64)
    else:
        rgb = np.asarray(hint, dtype=np.float64)
        if rgb.shape != (3,):
            raise InvalidRequestError(f"background_hint must be a colour name or an (r, g, b) triple, got {hint!r}")
    return np.broadcast_to(rgb, arr.shape)


def detect_objects(
    image: ImageLike,
    background_hint: str | tuple[float, float, float] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    min_area: int | None = None,
) -> list[DetectedObject]:
    """Objects in ``image``, in reading order (top to bottom, then left to right).

    ``background_hint``: a background colour name or (r, g, b) 0-255; default: estimated from the border.
    ``threshold``: RGB distance (0-255) from the background above which a pixel is foreground.
    ``min_area``: smallest object in pixels (default 0.3 % of the image, at least 6)."""
    arr = to_rgb255(image)
    h, w = arr.shape[:2]
    bg = _background_of(arr, background_hint)
    diff = arr - bg
    dist = np.linalg.norm(diff, axis=2)
    labels, count = _label(dist > threshold)
    min_area = max(6, round(0.003 * h * w)) if min_area is None else int(min_area)
    found = []
    for k in range(1, count + 1):
        comp = labels == k
        if comp.sum() < min_area:
            continue
        cd = dist[comp]
        core_sel = comp & (dist >= np.percentile(cd, 60))
        core = arr[core_sel].mean(axis=0)
        direction = core - bg[core_sel].mean(axis=0)
        norm2 = float(direction @ direction)
        if norm2 <= 0:
            continue
        t = (diff @ direction) / norm2
        obj = comp & (t > 0.5)
        area = int(obj.sum())
        if area < min_area:
            continue
        ys, xs = np.nonzero(obj)
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
        near = np.zeros_like(comp)
        near[max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1] = True
        soft = np.where(near & (labels == k) | near & (labels == 0), np.clip(t, 0.0, 1.0), 0.0)
        crop = np.pad(soft, 1)[y0 : y1 + 2, x0 : x1 + 2]  # the box plus a 1-px frame (zero outside the image)
        shape, score = classify_shape(crop)
        solid = obj & (t > 0.85)
        colour_px = arr[solid] if solid.sum() >= 3 else arr[obj]
        found.append(
            DetectedObject(
                colour=nearest_object_colour(colour_px.mean(axis=0)),
                shape=shape,
                bbox=(x0, y0, x1, y1),
                area=area,
                centroid=(float(xs.mean() + 0.5), float(ys.mean() + 0.5)),
                shape_score=score,
                image_size=(w, h),
            )
        )
    found.sort(key=lambda d: ((d.bbox[1] + d.bbox[3]) / 2, (d.bbox[0] + d.bbox[2]) / 2))
    return found


def caption_report(
    image: ImageLike,
    scene: Scene,
    detections: list[DetectedObject] | None = None,
) -> dict:
    """Per-object check of ``image`` against ``scene``: for each scene object (scene order), whether a
    detection with its colour and shape exists, and whether that detection's position and size words
    match. Also whether the background colour matches, and how many objects were detected."""
    dets = detect_objects(image) if detections is None else detections
    unused = list(range(len(dets)))
    rows = []
    for obj in scene.objects:
        match = next((i for i in unused if dets[i].colour == obj.colour and dets[i].shape == obj.shape), None)
        if match is not None:
            unused.remove(match)
        d = dets[match] if match is not None else None
        rows.append(
            {
                "object": obj.to_dict(),
                "found": d is not None,
                "position_ok": d is not None and d.position == obj.position,
                "size_ok": d is not None and d.size == obj.size,
            }
        )
    return {
        "objects": rows,
        "background_ok": detect_background(image) == scene.background.colour,
        "num_detected": len(dets),
        "num_expected": len(scene.objects),
    }


def caption_satisfied(
    image: ImageLike,
    scene: Scene,
    check_position: bool = False,
    check_size: bool = False,
    check_background: bool = False,
    exact_count: bool = False,
) -> bool:
    """Whether every object of ``scene`` (what its caption names) is found in ``image`` with the right
    colour and shape, each by a different detection; optionally also the right grid position, size word,
    background colour, and no extra objects."""
    return report_satisfied(caption_report(image, scene), check_position, check_size, check_background, exact_count)


def report_satisfied(
    report: dict,
    check_position: bool = False,
    check_size: bool = False,
    check_background: bool = False,
    exact_count: bool = False,
) -> bool:
    """:func:`caption_satisfied` on a :func:`caption_report` already made (so one detection serves several figures)."""
    for row in report["objects"]:
        if not row["found"] or (check_position and not row["position_ok"]) or (check_size and not row["size_ok"]):
            return False
    if check_background and not report["background_ok"]:
        return False
    return not (exact_count and report["num_detected"] != report["num_expected"])
