"""Image grids for the benchmarks' figures: rows of equally sized tiles, upscaled without smoothing."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image


def image_sheet(rows: Sequence[Sequence[Image.Image]], side: int, gap: int = 2) -> Image.Image:
    """One sheet of ``rows`` of tiles, each resized (nearest) to ``side`` pixels, ``gap`` white pixels apart."""
    columns = max(len(row) for row in rows)
    sheet = Image.new("RGB", (columns * side + (columns - 1) * gap, len(rows) * side + (len(rows) - 1) * gap),
                      (255, 255, 255))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            tile = tile.convert("RGB").resize((side, side), Image.Resampling.NEAREST)
            sheet.paste(tile, (c * (side + gap), r * (side + gap)))
    return sheet
