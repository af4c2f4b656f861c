"""One table for choosing an editor: our methods and the large pipeline editors through the same benchmark
runner, with quality, seconds per edit, denoiser calls and peak memory side by side; then the memory options.

    python benchmarks/bench_editors.py [--samples 2] [--out runs/editors]

No large editor's weights exist offline, so the pipeline editors (kontext, qwen-edit, flux2, longcat-edit,
ip2p-xl) run on **tiny random configurations** saved to folders and loaded by the real ``from_pretrained`` path:
their rows are a smoke test of the plumbing and of the cost structure (calls per edit, working resolution),
never of quality. Our methods (ip2p, sdedit) and ``ledits++`` run on the built-in models, where the quality
columns mean something. With real weights, the same run is::

    instructedit bench --dataset gedit:/data/GEdit-Bench --methods ip2p,kontext,qwen-edit,ledits++ \\
        --model kontext=black-forest-labs/FLUX.1-Kontext-dev --metrics judge --judge-url http://127.0.0.1:8000/v1
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def editors_table(samples: int, out: Path) -> None:
    from instructedit import Editor
    from instructedit.evaluation.aggregate import Stat
    from instructedit.evaluation.datasets import read_domain
    from instructedit.evaluation.results import read_rows
    from instructedit.evaluation.runner import BenchmarkConfig, run_benchmark
    from instructedit.models import tiny_editors

    folders = Path(tempfile.mkdtemp(prefix="tiny-editors-"))
    tiny = {"kontext": tiny_editors.tiny_kontext, "flux2": tiny_editors.tiny_flux2_klein,
            "ip2p-xl": tiny_editors.tiny_sdxl_ip2p, "qwen-edit": tiny_editors.tiny_qwen_edit,
            "longcat-edit": tiny_editors.tiny_longcat_edit}
    # a model folder's instructedit.json holds its per-method defaults: few steps for the tiny ones
    defaults = {"kontext": {"max_area": 64 * 64, "auto_resize": False}, "flux2": {"text_encoder_out_layers": "1"},
                "qwen-edit": {"height": 64, "width": 64, "max_sequence_length": 64}}
    # Qwen2.5-VL processors cannot be saved or loaded without torchvision (their video processor): those two
    # are handed to the editor in memory, under a folder that holds only their defaults
    in_memory = {"qwen-edit", "longcat-edit"}
    editor = Editor(device="cpu")
    models = {}
    for method, build in tiny.items():
        pipe, folder = build(), folders / method
        if method in in_memory:
            folder.mkdir()
            editor.add_pipeline(pipe, str(folder))
        else:
            pipe.save_pretrained(folder)
        (folder / "instructedit.json").write_text(json.dumps(
            {"defaults": {method: {"num_inference_steps": 4, **defaults.get(method, {})}}}))
        models[method] = str(folder)
    data = read_domain("test")
    data.samples = data.samples[:samples]
    config = BenchmarkConfig(methods=["ip2p", "sdedit", "ledits++", *tiny], models=models, metrics="default",
                             save_images=False)
    run_benchmark(data, config, out, editor=editor, progress=False, parquet=False)
    rows = [r for r in read_rows(out) if r.get("status") == "ok"]
    print(f"{'method':<13} {'model':<30} {'applied':>7} {'PSNR out':>8} {'s/edit':>7} {'calls':>5} "
          f"{'peak MB':>8}")
    for method in config.methods:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue

        def mean(name: str, of=mine) -> str:
            stat = Stat.of(r["metrics"].get(name) for r in of)
            return "-" if stat is None else f"{stat.mean:.2f}"

        label = "tiny random (smoke test)" if method in tiny else "built-in (reference domain)"
        calls = statistics.median(r["record"]["unet_calls"] for r in mine)
        print(f"{method:<13} {label:<30} {mean('oracle_edit_applied'):>7} {mean('oracle_preservation_psnr'):>8} "
              f"{mean('seconds_per_edit'):>7} {calls:>5g} {mean('peak_memory_mb'):>8}")
    print("peak MB on CPU is the process's peak resident set so far (it only grows); on a GPU, the allocator's "
          "peak for that edit")


def memory_table(repeats: int, device: str = "cpu") -> None:
    """Time, peak memory (CUDA) and output change of each memory option on the tiny Kontext pipeline."""
    import torch
    from PIL import Image

    from instructedit import Editor, EditRequest
    from instructedit.engine.pipelines import MemoryOptions
    from instructedit.models import tiny_editors

    folder = Path(tempfile.mkdtemp(prefix="tiny-kontext-"))
    tiny_editors.tiny_kontext().save_pretrained(folder)
    image = Image.fromarray((np.random.RandomState(0).rand(128, 128, 3) * 255).astype("uint8"))
    request = EditRequest(image=image, instruction="make the square blue", method="kontext", model=str(folder),
                          params={"num_inference_steps": 4, "max_area": 128 * 128, "auto_resize": False})
    options = {"plain": (MemoryOptions(), None), "vae_tiling": (MemoryOptions(vae_tiling=True), None),
               "vae_slicing": (MemoryOptions(vae_slicing=True), None),
               "attention_slicing": (MemoryOptions(attention_slicing=True), None),
               "bfloat16": (MemoryOptions(), "bfloat16")}
    if device.startswith("cuda"):
        options.update({"model offload": (MemoryOptions(offload="model"), "bfloat16"),
                        "sequential offload": (MemoryOptions(offload="sequential"), "bfloat16"),
                        "bnb-4bit": (MemoryOptions(quantization="bnb-4bit"), "bfloat16"),
                        "torchao-int8": (MemoryOptions(quantization="torchao-int8"), "bfloat16")})
    base = None
    print(f"\n{f'option (tiny Kontext, 128 px, {device})':<36} {'s/edit':>7} {'peak MB':>8} {'max |diff|':>10} "
          f"{'mean |diff|':>11}")
    for name, (memory, dtype) in options.items():
        try:
            editor = Editor(device=device, dtype=dtype, memory=memory)
            editor.edit(request)  # load and warm up
        except Exception as exc:  # noqa: BLE001 - a missing library is a row of the table, not the end of it
            print(f"{name:<36} {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
            continue
        times, result = [], None
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        for _ in range(repeats):
            start = time.perf_counter()
            result = editor.edit(request)
            times.append(time.perf_counter() - start)
        peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f}" if device.startswith("cuda") else "-"
        pixels = np.asarray(result.image, dtype=np.int16)
        base = pixels if base is None else base
        diff = np.abs(pixels - base)
        print(f"{name:<36} {statistics.median(times):>7.3f} {peak:>8} {diff.max():>10d} {diff.mean():>11.2f}")
    if not device.startswith("cuda"):
        print("offload (model/sequential) and quantised weights (bnb-4bit/8bit, torchao, GGUF) need a CUDA GPU: "
              "rerun with --device cuda")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the offload and quantisation rows")
    parser.add_argument("--memory-only", action="store_true", help="only the memory-options table")
    args = parser.parse_args()
    if not args.memory_only:
        editors_table(args.samples, args.out or Path(tempfile.mkdtemp(prefix="bench-editors-")))
    memory_table(args.repeats, args.device)


if __name__ == "__main__":
    main()
