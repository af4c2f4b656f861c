"""Wall time and UNet evaluations of each method next to diffusers' reference pipeline, in one process.

    python benchmarks/bench_methods.py [--repeats 5] [--steps 20] [--size 64]

Both sides get the same tiny random components, seed and settings; each measurement is the median of
``--repeats`` runs after one warm-up. UNet calls are counted by the same forward hook on both sides.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from instructedit import Editor, EditRequest
from instructedit.engine.guidance import UNetCounter
from instructedit.models.tiny import save_tiny_pipeline


def _median_times(fns, repeats: int) -> list[float]:
    """Median wall time of each function; runs alternate (A, B, A, B ...) so load drift hits both alike."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def _count(unet, fn) -> tuple[int, int]:
    with UNetCounter(unet) as counter:
        fn()
    return counter.calls, counter.evals


def _eager(components, fn):
    """``fn`` with the traced UNet forward switched off (the module itself on every call)."""

    def run():
        with components.unet_forward.eager():
            return fn()

    return run


def _pipe(cls, components, **extra):
    return cls(vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
               unet=components.unet, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
               **extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--methods", default="sdedit,diffedit,ip2p,encode-decode", help="comma-separated subset")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    from diffusers import (
        DDIMInverseScheduler,
        EulerAncestralDiscreteScheduler,
        StableDiffusionDiffEditPipeline,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionInstructPix2PixPipeline,
    )

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))
    tmp = tempfile.mkdtemp()
    t2i, ip2p = save_tiny_pipeline(f"{tmp}/t2i", "t2i"), save_tiny_pipeline(f"{tmp}/ip2p", "ip2p")
    editor = Editor(device="cpu")
    c_t2i, c_ip2p = editor.load(str(t2i)), editor.load(str(ip2p))
    steps = args.steps
    src, tgt = "a red circle on a white background", "a blue circle on a white background"

    def ours(method, model, **kw):
        request = EditRequest(image, method=method, model=str(model), seed=0, params={"num_inference_steps": steps,
                                                                                      **kw.pop("params", {})}, **kw)
        return lambda: editor.edit(request)

    img2img = _pipe(StableDiffusionImg2ImgPipeline, c_t2i, scheduler=c_t2i.scheduler)
    img2img.set_progress_bar_config(disable=True)
    ip2p_pipe = _pipe(StableDiffusionInstructPix2PixPipeline, c_ip2p,
                      scheduler=EulerAncestralDiscreteScheduler.from_config(c_ip2p.scheduler.config))
    ip2p_pipe.set_progress_bar_config(disable=True)
    diffedit = _pipe(StableDiffusionDiffEditPipeline, c_t2i, scheduler=c_t2i.scheduler,
                     inverse_scheduler=DDIMInverseScheduler.from_config(c_t2i.scheduler.config))
    diffedit.set_progress_bar_config(disable=True)

    def reference_diffedit():
        g = torch.Generator().manual_seed(0)
        mask = diffedit.generate_mask(image=image, source_prompt=src, target_prompt=tgt, num_inference_steps=steps,
                                      generator=g)
        inv = diffedit.invert(prompt=src, image=image, num_inference_steps=steps, guidance_scale=1.0,
                              generator=g).latents
        return diffedit(prompt=tgt, mask_image=mask, image_latents=inv, num_inference_steps=steps, generator=g)

    cases = [
        ("sdedit", c_t2i, ours("sdedit", t2i, target=tgt, params={"strength": 0.8}),
         lambda: img2img(tgt, image=image, strength=0.8, num_inference_steps=steps,
                         generator=torch.Generator().manual_seed(0))),
        ("diffedit", c_t2i, ours("diffedit", t2i, source=src, target=tgt), reference_diffedit),
        ("ip2p", c_ip2p, ours("ip2p", ip2p, instruction="make the circle blue"),
         lambda: ip2p_pipe("make the circle blue", image=image, num_inference_steps=steps,
                           generator=torch.Generator().manual_seed(0))),
        ("encode-decode", c_t2i, ours("encode-decode", t2i, source=src, target=tgt), None),
    ]
    threads = torch.get_num_threads()
    print(f"{args.size}x{args.size} px, {steps} steps, median of {args.repeats}, torch threads {threads}")
    print(f"{'method':<14} {'ours s':>8} {'eager s':>8} {'diffusers s':>12} {'ratio':>6} {'ours calls/evals':>17} "
          f"{'diffusers calls/evals':>22}")
    for name, comps, mine, reference in (case for case in cases if case[0] in args.methods.split(",")):
        ours_n = _count(comps.unet, mine)
        eager = _eager(comps, mine)
        if reference is None:
            ours_t, eager_t = _median_times([mine, eager], args.repeats)
            print(f"{name:<14} {ours_t:8.3f} {eager_t:8.3f} {'-':>12} {'-':>6} {ours_n[0]:>8}/{ours_n[1]:<8} "
                  f"{'(no pipeline)':>22}")
            continue
        ours_t, eager_t, ref_t = _median_times([mine, eager, reference], args.repeats)
        ref_n = _count(comps.unet, reference)
        print(f"{name:<14} {ours_t:8.3f} {eager_t:8.3f} {ref_t:12.3f} {ref_t / ours_t:6.2f} "
              f"{ours_n[0]:>8}/{ours_n[1]:<8} {ref_n[0]:>11}/{ref_n[1]:<10}")
    print("eager = ours with the UNet's forward not replayed from a trace; ratio = diffusers time / ours (above 1: "
          "ours is faster)")


if __name__ == "__main__":
    main()
