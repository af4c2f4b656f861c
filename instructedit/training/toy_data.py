"""A tiny synthetic dataset in both training formats (coloured squares on white), for smoke runs and tests:
try the training commands in seconds without generating the full reference domain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

TOY_COLOURS = {"red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 60, 220)}


def write_toy_datasets(root: str | Path, num_samples: int = 8, resolution: int = 16, seed: int = 0) -> dict[str, Path]:
    """Write ``root/t2i`` (image–caption pairs) and ``root/edit`` (recolouring triplets with masks).

    Sample i shows a square of colour i mod 3 at a random position; its edit turns the square into the next
    colour. Returns ``{"t2i": folder, "edit": folder}``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    names = list(TOY_COLOURS)
    folders = {"t2i": root / "t2i", "edit": root / "edit"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    side = max(2, resolution // 3)
    captions, triplets = [], []
    for i in range(num_samples):
        before, after = names[i % len(names)], names[(i + 1) % len(names)]
        top, left = (int(v) for v in rng.integers(0, resolution - side + 1, size=2))
        source = np.full((resolution, resolution, 3), 255, np.uint8)
        target = source.copy()
        mask = np.zeros((resolution, resolution), np.uint8)
        source[top : top + side, left : left + side] = TOY_COLOURS[before]
        target[top : top + side, left : left + side] = TOY_COLOURS[after]
        mask[top : top + side, left : left + side] = 255
        Image.fromarray(source).save(folders["t2i"] / f"{i}.png")
        for name, array in (("in", source), ("out", target), ("mask", mask)):
            Image.fromarray(array).save(folders["edit"] / f"{i}_{name}.png")
        captions.append({"file_name": f"{i}.png", "text": f"a {before} square on a white background"})
        triplets.append(
            {
                "input_image": f"{i}_in.png",
                "edit_prompt": f"make the square {after}",
                "edited_image": f"{i}_out.png",
                "mask": f"{i}_mask.png",
            }
        )
    for folder, rows in ((folders["t2i"], captions), (folders["edit"], triplets)):
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folders
