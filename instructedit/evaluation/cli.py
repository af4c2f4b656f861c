"""Command-line entry points of the benchmark: ``instructedit bench``, ``instructedit bench-merge`` and
``instructedit report``.

``app`` is a Typer app with the three commands; :func:`register` adds them to another Typer app (the main
``instructedit`` CLI). Typed errors print one line and exit with status 2; Ctrl-C exits with 130 after saying
how to resume.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from ..commandline import fail
from ..errors import InstructEditError, InvalidRequestError

app = typer.Typer(help="Benchmark editing methods on a dataset and report the results.", no_args_is_help=True)


def _split_list(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def parse_keyed(specs: list[str], what: str, default_key: str | None = "*") -> dict[str, str]:
    """``["sdedit=/m/sd", "/m/any"]`` -> ``{"sdedit": "/m/sd", "*": "/m/any"}``; a bare value needs a
    ``default_key``."""
    out: dict[str, str] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if sep and re.fullmatch(r"[A-Za-z_*][A-Za-z0-9_*-]*", key.strip()) and value.strip():
            out[key.strip()] = value.strip()
        elif not sep and spec.strip() and default_key is not None:
            out[default_key] = spec.strip()
        else:
            form = "[NAME=]VALUE" if default_key is not None else "NAME=VALUE"
            raise InvalidRequestError(f"{what} '{spec}' is not {form}.")
    return out


def bench(
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset",
            "-d",
            help=(
                "KIND:PATH with KIND magicbrush|piebench|gedit|manifest|folder|domain, a path whose layout is "
                "recognised "
                "(a generated domain split's dataset.json, mapping_file.json, edit_sessions.json, *.jsonl, a folder "
                "of images), or 'domain[:SPLIT|:FOLDER]'."
            ),
        ),
    ],
    methods: Annotated[str, typer.Option("--methods", "-m", help="Comma-separated, e.g. sdedit,diffedit,ip2p.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Results folder (rerun the same command to resume).")] = Path(
        "bench-results"
    ),
    sweep: Annotated[
        list[str] | None,
        typer.Option(
            "--sweep",
            help=(
                "NAME=START:STOP:STEP (stop included) or NAME=V1,V2,...; repeat for a grid. Applies only to the "
                "methods that have the parameter (strength: sdedit, encode-decode; inpaint_strength: diffedit; "
                "image_guidance_scale: ip2p); the others run once with their default."
            ),
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help=("NAME=VALUE fixed for every method that has the parameter; repeatable.")),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help=("[METHOD|t2i|ip2p=]MODEL: hub id or local diffusers folder, for one method, one model kind, or all."),
        ),
    ] = None,
    metrics: Annotated[
        str,
        typer.Option(
            "--metrics",
            help=(
                "Metrics or groups: default (pixel,mask,oracle), all, pixel, mask, oracle, lpips, clip, dino, "
                "structure, judge (a VLM's VIEScore, GEdit-Bench's metric: needs --judge-url), or single names such "
                "as clip_t (local description, as MagicBrush), clip_t_global, "
                "lpips_input; fid,kid add set-level metrics."
            ),
        ),
    ] = "default",
    metric_model: Annotated[
        list[str] | None,
        typer.Option(
            "--metric-model",
            help=(
                "METRIC_OR_GROUP=WEIGHTS, e.g. clip=/models/clip-vit-base-patch32, lpips=squeeze, "
                "lpips_backbone=/w/alexnet.pth, fid=/w/inception.pt (TorchScript TF-FID Inception). "
                "Defaults: LPIPS AlexNet, SqueezeNet on PIE-Bench (as PIE-Bench)."
            ),
        ),
    ] = None,
    judge_url: Annotated[
        str | None,
        typer.Option("--judge-url", help=("OpenAI-compatible endpoint of a vision model for the judge metrics "
                                          "(default: $INSTRUCTEDIT_JUDGE_URL; none ships offline).")),
    ] = None,
    judge_model: Annotated[
        str | None, typer.Option("--judge-model", help="The judge's model name (default: $INSTRUCTEDIT_JUDGE_MODEL).")
    ] = None,
    seeds: Annotated[str, typer.Option("--seeds", help="Comma-separated seeds; each is a separate run.")] = "0",
    split: Annotated[
        str | None, typer.Option("--split", help="MagicBrush split (default test); GEdit-Bench language (en, cn, all).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Use only the first N samples.")] = None,
    edit_types: Annotated[str | None, typer.Option("--edit-types", help="Comma-separated edit types to keep.")] = None,
    final_turn_only: Annotated[bool, typer.Option("--final-turn-only", help="Multi-turn: last turns only.")] = False,
    instruction: Annotated[
        str | None,
        typer.Option("--instruction", help=("Instruction for every image of a plain folder without sidecar files.")),
    ] = None,
    use_masks: Annotated[
        bool,
        typer.Option(
            "--use-masks/--no-masks",
            help=("Give the dataset's edit masks to the methods that accept one (default: mask-free)."),
        ),
    ] = False,
    multi_turn: Annotated[
        str,
        typer.Option(
            "--multi-turn",
            help=(
                "independent: every turn starts from its ground-truth input; iterative: from the method's previous "
                "output."
            ),
        ),
    ] = "independent",
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 (default: cuda if any).")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="float32, float16, bfloat16.")] = None,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="Rerun the rows that failed before.")] = False,
    stop_on_error: Annotated[
        bool, typer.Option("--stop-on-error", help=("Stop at the first failing sample instead of recording it."))
    ] = False,
    images: Annotated[bool, typer.Option("--images/--no-images", help="Save the output PNGs.")] = True,
    parquet: Annotated[bool, typer.Option("--parquet/--no-parquet", help="Also write results.parquet.")] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write report.html at the end.")] = True,
) -> None:
    """Run METHODS x samples x sweep settings x seeds; one result row (and image) per output.

    Finished rows are kept on disk after every edit: after a crash or Ctrl-C, rerun the same command to
    resume. For several GPUs or machines: `accelerate launch -m instructedit.evaluation.cli bench ...` (one
    shard per process, merged at the end; `instructedit bench-merge OUT` merges by hand).
    """
    from .runner import BenchmarkConfig, load_dataset_for_bench, run_benchmark
    from .sweep import parse_param, parse_sweep

    try:
        data = load_dataset_for_bench(
            dataset, split=split, limit=limit, edit_types=_split_list(edit_types) or None,
            final_turn_only=final_turn_only, instruction=instruction,
        )  # fmt: skip
        try:
            seed_list = [int(s) for s in _split_list(seeds)]
        except ValueError as exc:
            raise InvalidRequestError(f"--seeds '{seeds}' must be comma-separated integers.") from exc
        config = BenchmarkConfig(
            methods=_split_list(methods),
            sweeps=[parse_sweep(s) for s in sweep or []],
            params=dict(parse_param(p) for p in param or []),
            models=parse_keyed(model or [], "--model"),
            metrics=metrics,
            metric_models=parse_keyed(metric_model or [], "--metric-model", default_key=None),
            seeds=seed_list,
            use_masks=use_masks,
            multi_turn=multi_turn,
            save_images=images,
        )
        judge = None
        if judge_url or judge_model:
            from .metrics.judge import VLMJudge

            judge = VLMJudge(judge_url, model=judge_model, cache_file=out / "judge-cache.jsonl")
        summary = run_benchmark(
            data, config, out, device=device, dtype=dtype, retry_errors=retry_errors,
            on_error="raise" if stop_on_error else "record", progress=progress, parquet=parquet, judge=judge,
        )  # fmt: skip
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted: finished rows are saved in {out}; rerun the same command to resume.", err=True)
        raise typer.Exit(130) from None
    except InstructEditError as exc:
        raise fail(exc) from exc
    typer.echo(
        f"{summary.ran} edits run ({summary.ok} ok, {summary.errors} errors, {summary.skipped} skipped), "
        f"{summary.already_done} already done; results: {summary.results}"
    )
    if report and summary.results.name == "results.jsonl" and summary.results.is_file():
        from .report import build_report

        try:
            files = build_report(summary.out_dir)
        except InstructEditError as exc:
            raise fail(exc) from exc
        typer.echo(f"report: {files.html}")


def bench_merge(
    out: Annotated[Path, typer.Argument(help="Results folder holding results.shard-*.jsonl files.")],
) -> None:
    """Merge the per-process shard files of a sharded run into results.jsonl (one row per job)."""
    from .results import merge_results

    try:
        typer.echo(f"merged into {merge_results(out)}")
    except InstructEditError as exc:
        raise fail(exc) from exc


def report(
    results: Annotated[list[Path], typer.Argument(help="Results folders (or results .jsonl files) to report on.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file (default RESULTS/report.html).")] = None,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Markdown summary (default next to the HTML: summary.md).")
    ] = None,
    title: Annotated[str, typer.Option("--title", help="Report title.")] = "instructedit benchmark",
    samples: Annotated[int, typer.Option("--samples", help="Samples shown in the image grid.")] = 8,
    thumbnail: Annotated[int, typer.Option("--thumbnail", help="Longest side of embedded images (px).")] = 160,
    metrics: Annotated[
        str | None,
        typer.Option("--metrics", help=("Comma-separated metric columns for the tables (default: all present).")),
    ] = None,
) -> None:
    """Write a self-contained HTML report (tables, trade-off curves, image grids) and a Markdown summary."""
    from .report import build_report

    try:
        files = build_report(results, out, markdown=markdown, title=title, samples=samples, thumbnail=thumbnail,
                             metrics=_split_list(metrics) or None)  # fmt: skip
    except InstructEditError as exc:
        raise fail(exc) from exc
    typer.echo(f"report: {files.html}\nsummary: {files.markdown}")


def register(target: typer.Typer) -> None:
    """Add ``bench``, ``bench-merge`` and ``report`` to ``target`` (the main CLI)."""
    target.command("bench")(bench)
    target.command("bench-merge")(bench_merge)
    target.command("report")(report)


register(app)


if __name__ == "__main__":  # `python -m instructedit.evaluation.cli` / `accelerate launch -m ...`
    app()
