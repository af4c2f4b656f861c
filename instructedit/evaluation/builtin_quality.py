"""Quality of models on the reference domain's held-out split, measured by its exact oracles.

    python -m instructedit.evaluation.builtin_quality [--samples 140] [--t2i MODEL] [--ip2p MODEL] [--json OUT]

Reports, per method and per edit type, the share of edits the oracle finds applied (also on held-out
phrasings), PSNR and L1 against the input outside the edit mask, seconds per edit; and for the text-to-image
model, the share of held-out captions whose objects the detector finds with the right colour and shape.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError
from ..types import EditRequest


@dataclass
class MethodQuality:
    """Oracle figures of one method over a set of held-out samples."""

    method: str
    applied: float
    applied_by_type: dict[str, float]
    applied_heldout_phrasing: float | None
    psnr_outside_mask: float
    l1_outside_mask: float
    seconds_per_edit: float
    count: int
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """The figures without the per-sample rows (JSON-ready)."""
        data = {k: v for k, v in self.__dict__.items() if k != "rows"}
        return data


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(finite) if finite else float("nan")


def sample_request(sample: Any, method: str, model: str | None = None, params: dict | None = None,
                   seed: int = 0) -> EditRequest:  # fmt: skip
    """The edit request of a domain sample: its instruction for a method an instruction drives
    (:attr:`~instructedit.methods.base.Method.takes_instruction`), its captions otherwise."""
    from ..methods import get_method

    instructed = get_method(method).takes_instruction
    return EditRequest(
        image=sample.source_image(), method=method, model=model, params=dict(params or {}), seed=seed,
        instruction=sample.instruction if instructed else None,
        source=None if instructed else sample.source_caption,
        target=None if instructed else sample.target_caption,
    )  # fmt: skip


def _dataset(samples: Any) -> Any:
    """Domain samples (:class:`~instructedit.domain.samples.DomainSample`) as a benchmark dataset."""
    from .datasets import EditDataset
    from .datasets.domain import to_edit_sample

    if isinstance(samples, EditDataset):
        return samples
    return EditDataset("domain-held-out", [to_edit_sample(s, "domain-held-out") for s in samples], kind="domain")


def _quality_row(row: dict[str, Any], heldout: dict[str, bool]) -> dict[str, Any]:
    """One benchmark row as the figures read it; an infinite PSNR (nothing changed outside the mask: L1 0, which
    the row stores as ``None``) counts as such, as the oracle measured it."""
    metrics = row.get("metrics") or {}
    l1, psnr = metrics.get("oracle_preservation_l1"), metrics.get("oracle_preservation_psnr")
    if psnr is None and l1 == 0.0:
        psnr = math.inf
    return {"id": row["sample_id"], "edit_type": row["edit_type"], "heldout_phrasing": heldout[row["sample_id"]],
            "applied": metrics.get("oracle_edit_applied") == 1.0, "psnr": psnr, "l1": l1,
            "seconds": row["wall_time_s"]}  # fmt: skip


def evaluate_method(editor: Any, samples: Any, method: str, model: str | None = None, params: dict | None = None,
                    seed: int = 0, out_dir: str | Path | None = None) -> MethodQuality:  # fmt: skip
    """Run ``method`` on every sample through the benchmark runner and score each output with the domain's oracles.

    ``samples``: domain samples (e.g. :func:`held_out_samples`) or a domain :class:`EditDataset`. The runner
    plans one job per sample (``params``, ``seed``, ``model``: unset = the editor's default for the method), edits
    with ``editor`` and computes the ``oracle`` metrics; its results go to ``out_dir`` (kept after every edit, so
    rerunning with the same folder resumes a long run such as DAC's) or to a temporary folder.
    """
    from .results import read_rows
    from .runner import BenchmarkConfig, run_benchmark

    dataset = _dataset(samples)
    config = BenchmarkConfig(methods=[method], params=dict(params or {}), models={method: model} if model else {},
                             metrics="oracle", seeds=(seed,), save_images=False)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="instructedit-quality-") as scratch:
        out = Path(out_dir) if out_dir is not None else Path(scratch)
        run_benchmark(dataset, config, out, editor=editor, on_error="raise", progress=False, shard=(0, 1),
                      parquet=False)  # fmt: skip
        results = read_rows(out)
    not_run = [r for r in results if r.get("status") != "ok"]
    if not_run:
        raise InvalidRequestError(f"{method} did not run on sample '{not_run[0]['sample_id']}': "
                                  f"{not_run[0].get('reason') or not_run[0].get('error')}")  # fmt: skip
    heldout = {s.id: bool((s.extra or {}).get("heldout_phrasing")) for s in dataset}
    rows = [_quality_row(row, heldout) for row in results]
    by_type: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        by_type[row["edit_type"]].append(row["applied"])
    heldout_applied = [row["applied"] for row in rows if row["heldout_phrasing"]]
    psnrs = [min(row["psnr"], 100.0) for row in rows if row["psnr"] is not None]
    return MethodQuality(
        method=method,
        applied=_mean([row["applied"] for row in rows]),
        applied_by_type={k: _mean(v) for k, v in sorted(by_type.items())},
        applied_heldout_phrasing=_mean(heldout_applied) if heldout_applied else None,
        psnr_outside_mask=_mean(psnrs),
        l1_outside_mask=_mean([row["l1"] for row in rows if row["l1"] is not None]),
        # the median: the first edit also loads the model
        seconds_per_edit=statistics.median(row["seconds"] for row in rows) if rows else float("nan"),
        count=len(rows),
        rows=rows,
    )


def evaluate_text_to_image(components: Any, samples: Sequence[Any], **kwargs: Any) -> dict[str, Any]:
    """How well images sampled from held-out source captions show them, by the domain's detector.

    ``caption_accuracy`` is the issue's bar: the share of captions whose every object is found with the right
    colour and shape. ``object_recall`` (captioned objects found) and ``background_accuracy`` (background colour
    right) say how far a model that misses the bar is from it.
    """
    from ..domain.detect import caption_report, report_satisfied
    from ..engine.generation import text_to_image

    reports = [caption_report(text_to_image(components, s.source_caption, seed=i, **kwargs), s.source_scene)
               for i, s in enumerate(samples)]
    objects = [row["found"] for report in reports for row in report["objects"]]
    return {
        "caption_accuracy": _mean([report_satisfied(report) for report in reports]),
        "object_recall": _mean(objects),
        "background_accuracy": _mean([report["background_ok"] for report in reports]),
        "count": len(reports),
    }


def held_out_samples(count: int, seed: int = 1, size: int = 64) -> list[Any]:
    """A fixed, balanced held-out sample: ``count`` test-split edits (all seven types in turn)."""
    from ..domain import generate_samples

    return generate_samples("test", count, seed=seed, size=size)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate the built-in (or given) models and print a table; optionally write JSON."""
    from ..editor import Editor
    from ..methods import get_method
    from ..models.builtin import builtin_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=140)
    parser.add_argument("--t2i", default=builtin_model("t2i"))
    parser.add_argument("--ip2p", default=builtin_model("ip2p"))
    parser.add_argument("--methods", default="ip2p,sdedit,encode-decode,diffedit")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter for every method of the run (repeatable), e.g. inversion=ddim")
    parser.add_argument("--skip-text-to-image", action="store_true", help="do not score the text-to-image model")
    parser.add_argument("--json", default=None)
    parser.add_argument("--out", default=None, help="keep each method's rows in OUT/METHOD (a rerun resumes)")
    args = parser.parse_args(argv)
    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--param {item!r}: give NAME=VALUE")
        params[name] = value
    samples = held_out_samples(args.samples)
    editor = Editor(device="cpu")
    report: dict[str, Any] = {"samples": len(samples), "methods": {}}
    models = {"t2i": args.t2i, "ip2p": args.ip2p}
    for method in args.methods.split(","):
        model = models[get_method(method).model_kind]
        quality = evaluate_method(editor, samples, method, model, params=params,
                                  out_dir=Path(args.out) / method if args.out else None)
        report["methods"][method] = quality.summary()
        types = " ".join(f"{k}={v:.2f}" for k, v in quality.applied_by_type.items())
        print(f"{method:<14} applied {quality.applied:.3f} (held-out phrasings {quality.applied_heldout_phrasing}) "
              f"PSNR-outside {quality.psnr_outside_mask:.2f} dB  L1 {quality.l1_outside_mask:.4f}  "
              f"{quality.seconds_per_edit:.3f} s/edit\n    {types}")
    if args.t2i and not args.skip_text_to_image:
        t2i = evaluate_text_to_image(editor.load(args.t2i), samples[: max(1, args.samples // 2)])
        report["text_to_image"] = t2i
        print(f"text-to-image  caption accuracy {t2i['caption_accuracy']:.3f}, "
              f"objects found {t2i['object_recall']:.3f}, "
              f"background right {t2i['background_accuracy']:.3f} on {t2i['count']} held-out captions")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2, default=float)
    return report


if __name__ == "__main__":
    main()
