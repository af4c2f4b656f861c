"""Prompt-to-Prompt's costs on the built-in text-to-image model: each inversion, and attention control against plain
sampling on the same components.

    python benchmarks/bench_p2p.py [--repeats 5] [--grid docs/p2p_grid.png]

One held-out scene (a colour swap). Rows: encode-decode (plain DDIM inversion + sampling, the reference without
attention control), p2p with each inversion (DDIM, negative-prompt, null-text), and p2p again on the same image
with another target (the pivot and null-text embeddings come from the edit cache). Median seconds per edit, UNet
calls and batch items (network evaluations), reconstruction PSNR of the source branch (identical captions).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from sheets import image_sheet

from instructedit import Editor, EditRequest
from instructedit.evaluation.builtin_quality import held_out_samples
from instructedit.models.builtin import builtin_model

GRID_METHODS = (("sdedit", {}), ("encode-decode", {}), ("diffedit", {}), ("p2p", {"inversion": "ddim"}),
                ("p2p", {"inversion": "negative-prompt"}), ("p2p", {"inversion": "null-text"}), ("dac", {}))
GRID_TYPES = ("change_colour", "replace", "change_background", "add", "remove")


def _psnr(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


def grid(path: str, scale: int = 2) -> None:
    """One row per edit type: input, each of :data:`GRID_METHODS` (built-in defaults), ground truth."""
    editor = Editor(device="cpu")
    samples = held_out_samples(70)
    rows = []
    for edit_type in GRID_TYPES:
        sample = next(s for s in samples if s.edit_type == edit_type)
        row = [sample.source_image()]
        for method, params in GRID_METHODS:
            row.append(editor.edit(EditRequest(
                sample.source_image(), method=method, model=builtin_model("t2i"), seed=0, params=params,
                source=sample.source_caption, target=sample.target_caption)).image)
        rows.append([*row, sample.target_image()])
    image_sheet(rows, samples[0].size * scale).save(path)
    columns = ", ".join(f"{m} {p.get('inversion', '')}".strip() for m, p in GRID_METHODS)
    print(f"grid: {path} (input, {columns}, ground truth; rows {', '.join(GRID_TYPES)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--grid", default=None, help="also write a comparison grid (one row per edit type) here")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    sample = next(s for s in held_out_samples(70) if s.edit_type == "change_colour")
    model = builtin_model("t2i")
    rows = [("encode-decode (plain)", "encode-decode", {"guidance_scale": 7.5})] + [
        (f"p2p, {inversion} inversion", "p2p", {"inversion": inversion})
        for inversion in ("ddim", "negative-prompt", "null-text")
    ]
    print(f"built-in t2i, one 64x64 held-out scene ({sample.source_caption!r} -> {sample.target_caption!r}), "
          f"20 steps, guidance 7.5, median of {args.repeats} (cache off unless stated)")
    print(f"{'':<32} {'s/edit':>7} {'UNet calls':>11} {'evals':>6} {'reconstruction':>15}")
    editor = Editor(device="cpu", cache_bytes=0)
    for label, method, params in rows:
        request = EditRequest(sample.source_image(), method=method, model=model, seed=0,
                              source=sample.source_caption, target=sample.target_caption, params=params)
        editor.edit(request)  # load and trace
        times, record = [], None
        for _ in range(args.repeats):
            start = time.perf_counter()
            record = editor.edit(request).record
            times.append(time.perf_counter() - start)
        same = EditRequest(sample.source_image(), method=method, model=model, seed=0, source=sample.source_caption,
                           target=sample.source_caption, params=params)
        psnr = _psnr(editor.edit(same).image, sample.source_image())
        print(f"{label:<32} {statistics.median(times):7.3f} {record.unet_calls:>11} {record.unet_evals:>6} "
              f"{psnr:12.1f} dB")
    cached = Editor(device="cpu")
    for inversion in ("ddim", "null-text"):
        first = EditRequest(sample.source_image(), method="p2p", model=model, seed=0, source=sample.source_caption,
                            target=sample.target_caption, params={"inversion": inversion})
        cached.edit(first)
        other = EditRequest(sample.source_image(), method="p2p", model=model, seed=0, source=sample.source_caption,
                            target=sample.source_caption.replace("background", "backdrop"),
                            params={"inversion": inversion})
        start = time.perf_counter()
        record = cached.edit(other).record
        print(f"{'p2p, ' + inversion + ', 2nd target (cache)':<32} {time.perf_counter() - start:7.3f} "
              f"{record.unet_calls:>11} {record.unet_evals:>6}")
    if args.grid:
        grid(args.grid)


if __name__ == "__main__":
    main()
