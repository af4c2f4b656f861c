"""Summaries of benchmark rows: means per group, trade-off curve points, representative settings."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .scoring import METRICS


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation and count of one metric over a group (``n`` ignores missing values)."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Iterable[Any]) -> Stat | None:
        data = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)
                and math.isfinite(v)]  # fmt: skip
        if not data:
            return None
        mean = sum(data) / len(data)
        var = sum((v - mean) ** 2 for v in data) / (len(data) - 1) if len(data) > 1 else 0.0
        return cls(mean, math.sqrt(var), len(data))


def ok_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of finished edits."""
    return [r for r in rows if r.get("status") == "ok"]


def metric_names(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Every metric present in ``rows``: the known ones in catalogue order, then the others alphabetically."""
    present = {name for r in rows for name in (r.get("metrics") or {})}
    known = [n for n in METRICS if n in present]
    return known + sorted(present - set(known))


def higher_is_better(metric: str) -> bool | None:
    """Direction of a metric, ``None`` when unknown."""
    spec = METRICS.get(metric)
    return spec.higher_is_better if spec is not None else None


def _sortable(value: Any) -> tuple:
    if isinstance(value, bool) or value is None:
        return (2, str(value))
    if isinstance(value, int | float):
        return (0, float(value))
    return (1, str(value))


def setting_order(row: dict[str, Any]) -> tuple:
    """Sort key of a row's setting: by swept values (numbers numerically)."""
    swept = row.get("swept") or {}
    return tuple((k, _sortable(v)) for k, v in sorted(swept.items()))


@dataclass
class Group:
    """Rows sharing the values of some fields, with their metric statistics."""

    keys: dict[str, Any]
    rows: list[dict[str, Any]]
    stats: dict[str, Stat]


def summarize(rows: Sequence[dict[str, Any]], by: Sequence[str], metrics: Sequence[str]) -> list[Group]:
    """Group ``rows`` by the fields ``by`` (first-seen order of methods; settings in swept order)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(_hashable(row.get(f)) for f in by), []).append(row)
    method_rank = {m: i for i, m in enumerate(dict.fromkeys(r.get("method") for r in rows))}

    def order(item: tuple[tuple, list[dict[str, Any]]]) -> tuple:
        key, members = item
        parts = []
        for field_name, value in zip(by, key, strict=True):
            if field_name == "method":
                parts.append((0, method_rank.get(value, 0)))
            elif field_name == "setting":
                parts.append((0, setting_order(members[0])))
            else:
                parts.append(_sortable(value))
        return tuple(parts)

    out = []
    for key, members in sorted(groups.items(), key=order):
        stats = {m: s for m in metrics if (s := Stat.of((r.get("metrics") or {}).get(m) for r in members))}
        out.append(Group(dict(zip(by, key, strict=True)), members, stats))
    return out


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


@dataclass
class CurvePoint:
    value: Any  # the curve parameter's value (None for an unswept method)
    x: Stat
    y: Stat


@dataclass
class Series:
    """One curve: a method (and model, and the fixed values of other swept parameters) over ``parameter``."""

    label: str
    method: str
    parameter: str | None
    points: list[CurvePoint]


def curve_parameter(rows: Sequence[dict[str, Any]]) -> str | None:
    """The swept parameter with the most distinct values among ``rows`` (one method's), or ``None``."""
    values: dict[str, set] = {}
    for row in rows:
        for name, value in (row.get("swept") or {}).items():
            values.setdefault(name, set()).add(_hashable(value))
    if not values:
        return None
    return max(sorted(values), key=lambda n: len(values[n]))


def curve_series(rows: Sequence[dict[str, Any]], x: str, y: str) -> list[Series]:
    """Mean ``x`` and ``y`` per setting, one series per method (and model and other swept values)."""
    series = []
    for method_group in summarize(rows, ["method", "model"], []):
        member_rows = method_group.rows
        parameter = curve_parameter(member_rows)
        buckets: dict[tuple, list[dict[str, Any]]] = {}
        for row in member_rows:
            others = tuple(sorted((k, _hashable(v)) for k, v in (row.get("swept") or {}).items() if k != parameter))
            buckets.setdefault(others, []).append(row)
        models = {r.get("model") for r in rows if r.get("method") == method_group.keys["method"]}
        for others, bucket in buckets.items():
            points = []
            for setting in summarize(bucket, ["setting"], [x, y]):
                if x in setting.stats and y in setting.stats:
                    value = (setting.rows[0].get("swept") or {}).get(parameter) if parameter else None
                    points.append(CurvePoint(value, setting.stats[x], setting.stats[y]))
            if not points:
                continue
            label = str(method_group.keys["method"])
            if len(models) > 1 and method_group.keys.get("model"):
                label += f" [{method_group.keys['model']}]"
            if others:
                label += " (" + ", ".join(f"{k}={v}" for k, v in others) + ")"
            series.append(Series(label, str(method_group.keys["method"]), parameter, points))
    return series


def representative_setting(rows: Sequence[dict[str, Any]], method: str) -> str | None:
    """The middle setting (in swept order) of ``method``'s rows: the one image grids show."""
    settings = summarize([r for r in rows if r.get("method") == method], ["setting"], [])
    if not settings:
        return None
    return settings[(len(settings) - 1) // 2].keys["setting"]
