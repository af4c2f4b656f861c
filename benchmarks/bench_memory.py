"""Memory options side by side: seconds and peak memory of each, one fresh process per configuration.

    python benchmarks/bench_memory.py [--runs 2] [--skip-sd15]

Built-in text-to-image model, SDEdit (20 steps, strength 0.75) on the README's example image, warm edit after a
first one, with: nothing, bf16, attention slicing, and VAE tiling on the image enlarged to 512 pixels (against no
tiling at that size). An SD-1.5-sized UNet (random weights, 860M parameters) shows one classifier-free-guided step
at 64x64 latents in fp32 and bf16. Peak memory is the process's maximum resident set (CPU) or
``torch.cuda.max_memory_allocated`` (``--device cuda``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    "plain": {}, "bf16": {"dtype": "bfloat16"}, "attention slicing": {"attention_slicing": True},
    "512 px, no tiling": {"size": 512}, "512 px, VAE tiling": {"size": 512, "vae_tiling": True},
}


def _peak_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_edit(config: dict, device: str) -> dict:
    from PIL import Image

    from instructedit import Editor, EditRequest
    from instructedit.engine.memory import MemoryOptions

    image = Image.open(ROOT / "examples/scene.png").convert("RGB")
    if "size" in config:
        image = image.resize((config["size"], config["size"]))
    memory = MemoryOptions(vae_tiling=config.get("vae_tiling", False),
                           attention_slicing=config.get("attention_slicing", False))
    editor = Editor(device=device, dtype=config.get("dtype"), memory=memory, cache_bytes=0)
    request = EditRequest(image, target="a blue star", method="sdedit", seed=0, params={"strength": 0.75})
    editor.edit(request)
    start = time.perf_counter()
    editor.edit(request)
    return {"seconds": time.perf_counter() - start, "peak_mb": _peak_mb(device)}


def run_sd15_step(dtype_name: str, device: str) -> dict:
    import torch
    from diffusers import UNet2DConditionModel

    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8).to(device, dtype).eval()
    sample = torch.randn(2, 4, 64, 64, device=device, dtype=dtype)
    hidden = torch.randn(2, 77, 768, device=device, dtype=dtype)
    with torch.no_grad():
        unet(sample, 500, hidden)
        start = time.perf_counter()
        unet(sample, 500, hidden)
    return {"seconds": time.perf_counter() - start, "peak_mb": _peak_mb(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-sd15", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, _, name = args.one.partition(":")
        result = run_edit(CONFIGS[name], args.device) if kind == "edit" else run_sd15_step(name, args.device)
        print(json.dumps(result))
        return
    jobs = [("built-in sdedit, " + name, f"edit:{name}") for name in CONFIGS]
    if not args.skip_sd15:
        jobs += [(f"SD-1.5-sized UNet step, {name}", f"sd15:{name}") for name in ("float32", "bfloat16")]
    print(f"| configuration ({args.device}) | seconds (median of {args.runs}) | peak memory (MB) |")
    print("|---|---|---|")
    for label, one in jobs:
        results = []
        for _ in range(args.runs):
            out = subprocess.run([sys.executable, __file__, "--one", one, "--device", args.device], cwd=ROOT,
                                 check=True, capture_output=True, text=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        seconds = statistics.median(r["seconds"] for r in results)
        peak = statistics.median(r["peak_mb"] for r in results)
        print(f"| {label} | {seconds:.2f} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
