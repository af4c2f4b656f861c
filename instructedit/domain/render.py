"""Anti-aliased rendering of scenes: supersample each object's silhouette, box-downsample to coverage,
composite over the background. Pixels an object does not touch keep the exact background value, so two
scenes that differ in one object render identically outside that object's silhouettes."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from instructedit.errors import InvalidRequestError

from .palette import BACKGROUND_COLOURS, OBJECT_COLOURS
from .scene import Background, Scene, SceneObject

SUPERSAMPLE = 4
GRADIENT_AMPLITUDE = 12.0  # +- levels (0-255) across the image for gradient backgrounds
STRIPE_AMPLITUDE = 6.0  # +- levels for striped backgrounds
STRIPE_COUNT = 8  # diagonal stripe pairs across the image
MIN_SIZE, MAX_SIZE = 32, 1024


def _star(points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return list(zip((radii * np.cos(angles)).tolist(), (radii * np.sin(angles)).tolist(), strict=True))


def _cross(arm: float = 0.34) -> list[tuple[float, float]]:
    a = arm
    return [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)]


def _fill_box(points: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """Stretch a polygon so it touches all four sides of [-1, 1]^2."""
    p = np.asarray(points, dtype=np.float64)
    lo, hi = p.min(axis=0), p.max(axis=0)
    p = (p - lo) / (hi - lo) * 2.0 - 1.0
    return tuple((float(x), float(y)) for x, y in p)


#: Unit polygons in [-1, 1]^2 (x right, y down); "circle" is drawn as an ellipse instead.
SHAPE_POLYGONS: dict[str, tuple[tuple[float, float], ...]] = {
    "square": ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)),
    "triangle": ((0.0, -1.0), (1.0, 1.0), (-1.0, 1.0)),
    "diamond": ((0.0, -1.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)),
    "star": _fill_box(_star()),
    "cross": _fill_box(_cross()),
}


def check_size(size: int) -> int:
    """Validate an image side length in pixels."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise InvalidRequestError(f"image size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}",
                                  field="size")
    return int(size)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float], fill: int = 255) -> None:
    """Draw ``shape`` filling the pixel box (x0, y0, x1, y1) (continuous coordinates, pixel i spans [i, i+1))."""
    x0, y0, x1, y1 = box
    # PIL puts pixel i's centre at coordinate i; shift by half a pixel so pixel i spans [i, i+1)
    if shape == "circle":
        draw.ellipse((x0 - 0.5, y0 - 0.5, x1 - 0.5, y1 - 0.5), fill=fill)
        return
    cx, cy, hx, hy = (x0 + x1) / 2 - 0.5, (y0 + y1) / 2 - 0.5, (x1 - x0) / 2, (y1 - y0) / 2
    draw.polygon([(cx + px * hx, cy + py * hy) for px, py in SHAPE_POLYGONS[shape]], fill=fill)


@lru_cache(maxsize=512)
def _coverage(shape: str, x: float, y: float, half: float, size: int, ss: int) -> np.ndarray:
    big = size * ss
    canvas = Image.new("L", (big, big), 0)
    box = ((x - half) * big, (y - half) * big, (x + half) * big, (y + half) * big)
    draw_shape(ImageDraw.Draw(canvas), shape, box)
    counts = np.asarray(canvas, dtype=np.int64).reshape(size, ss, size, ss).sum(axis=(1, 3))
    cov = counts / float(255 * ss * ss)
    cov.flags.writeable = False
    return cov


def object_coverage(obj: SceneObject, size: int = 64, supersample: int = SUPERSAMPLE) -> np.ndarray:
    """Fraction (0-1, float64, shape (size, size)) of each pixel covered by ``obj``; read-only, cached."""
    return _coverage(obj.shape, obj.x, obj.y, obj.half, check_size(size), int(supersample))


def silhouette(obj: SceneObject, size: int = 64) -> np.ndarray:
    """Boolean mask of every pixel the object touches, anti-aliased edge included."""
    return object_coverage(obj, size) > 0.0


def interior(obj: SceneObject, size: int = 64) -> np.ndarray:
    """Boolean mask of the pixels the object covers completely (their colour is the object's colour)."""
    return object_coverage(obj, size) >= 1.0


def background_array(background: Background, size: int = 64) -> np.ndarray:
    """The background alone, float64 (size, size, 3) in 0-255."""
    size = check_size(size)
    base = np.asarray(BACKGROUND_COLOURS[background.colour], dtype=np.float64)
    t = (np.arange(size, dtype=np.float64) + 0.5) / size
    if background.style == "plain":
        offset = np.zeros((size, size))
    elif background.style == "gradient_v":
        offset = np.repeat(GRADIENT_AMPLITUDE * (2 * t - 1)[:, None], size, axis=1)
    elif background.style == "gradient_h":
        offset = np.repeat(GRADIENT_AMPLITUDE * (2 * t - 1)[None, :], size, axis=0)
    elif background.style == "stripes":
        phase = np.floor((t[:, None] + t[None, :]) * STRIPE_COUNT) % 2
        offset = STRIPE_AMPLITUDE * (2 * phase - 1)
    else:
        raise InvalidRequestError(f"unknown background style {background.style!r}")
    return np.clip(base[None, None, :] + offset[:, :, None], 0.0, 255.0)


def render_array(scene: Scene, size: int = 64) -> np.ndarray:
    """Render ``scene`` to a uint8 array (size, size, 3)."""
    img = background_array(scene.background, size)
    for obj in scene.objects:
        a = object_coverage(obj, size)[:, :, None]
        colour = np.asarray(OBJECT_COLOURS[obj.colour], dtype=np.float64)
        img = img * (1.0 - a) + colour[None, None, :] * a
    return np.rint(img).astype(np.uint8)


def render_scene(scene: Scene, size: int = 64) -> Image.Image:
    """Render ``scene`` to an RGB PIL image of ``size`` x ``size`` pixels."""
    return Image.fromarray(render_array(scene, size))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a 2-D boolean mask by a (2 radius + 1)^2 square."""
    out = np.asarray(mask, dtype=bool)
    for axis in (0, 1):
        acc = out.copy()
        for shift in range(1, radius + 1):
            fwd = np.zeros_like(out)
            bwd = np.zeros_like(out)
            if axis == 0:
                fwd[shift:] = out[:-shift]
                bwd[:-shift] = out[shift:]
            else:
                fwd[:, shift:] = out[:, :-shift]
                bwd[:, :-shift] = out[:, shift:]
            acc |= fwd | bwd
        out = acc
    return out
