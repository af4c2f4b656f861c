"""Reuse across edits of one image: a sweep of 5 strengths on one image, with the edit cache and without.

    python benchmarks/bench_reuse.py [--steps 20] [--images 4]

Built-in text-to-image model, held-out domain scenes; each sweep runs strengths 0.2 ... 1.0 (ascending: the cache
extends the inversion it has rather than redoing it). Same process, same seed; the outputs must be identical.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from instructedit import Editor, EditRequest
from instructedit.domain import generate_samples

SWEEP = (0.2, 0.4, 0.6, 0.8, 1.0)


def sweep(editor, sample, method: str, knob: str, steps: int):
    images, calls, start = [], 0, time.perf_counter()
    for strength in SWEEP:
        result = editor.edit(EditRequest(sample.source_image(), method=method, source=sample.source_caption,
                                         target=sample.target_caption, seed=0,
                                         params={"num_inference_steps": steps, knob: strength}))
        images.append(np.asarray(result.image))
        calls += result.record.unet_calls
    return images, calls, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args()
    samples = generate_samples("test", args.images + 1, seed=3, heldout_fraction=1.0)
    cached, fresh = Editor(device="cpu"), Editor(device="cpu", cache_bytes=0)
    print("| method | sweep of 5 strengths, no cache | with the edit cache | UNet calls | identical |")
    print("|---|---|---|---|---|")
    for method, knob in (("encode-decode", "strength"), ("diffedit", "inpaint_strength")):
        for editor in (cached, fresh):  # warm both (model load, traces) on a sample not measured
            sweep(editor, samples[-1], method, knob, args.steps)
        t_fresh = t_cached = 0.0
        calls_fresh = calls_cached = 0
        same = True
        for sample in samples[: args.images]:
            a, ca, ta = sweep(fresh, sample, method, knob, args.steps)
            b, cb, tb = sweep(cached, sample, method, knob, args.steps)
            same &= all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
            t_fresh, t_cached = t_fresh + ta, t_cached + tb
            calls_fresh, calls_cached = calls_fresh + ca, calls_cached + cb
        n = args.images
        print(f"| {method} | {t_fresh / n:.2f} s | {t_cached / n:.2f} s (x{t_fresh / t_cached:.2f}) | "
              f"{calls_fresh // n} -> {calls_cached // n} | {'yes' if same else 'NO'} |", flush=True)
        if not same:
            raise SystemExit("the cache changed an output")


if __name__ == "__main__":
    main()
