"""The benchmark report: one self-contained HTML file (tables, trade-off curves, image grids; images embedded as
base64 PNGs so it can be mailed) and the summary table as Markdown (for a README).

``build_report(results)`` reads one or more results folders (or ``results.jsonl`` files) written by the runner:

* a table per method and setting (mean ± standard deviation, with n), one per turn mode for multi-turn data
  (all turns, final turn), and one per edit type;
* trade-off curves as the DiffEdit paper plots them: an edit-success metric (CLIPScore, CLIP-T, the domain
  oracle, or L1 to the ground truth) against the distance to the input (LPIPS, else L1), one curve per method
  over its swept parameter, and InstructPix2Pix's CLIP directional similarity against CLIP image similarity;
* image grids: input | each method (at its middle setting) | ground truth, and each method across its sweep.

Plots use matplotlib (Agg backend); without it the report says so and keeps the tables and grids.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import DatasetError
from .aggregate import (
    CurvePoint,
    Group,
    Series,
    Stat,
    curve_parameter,
    curve_series,
    higher_is_better,
    metric_names,
    ok_rows,
    representative_setting,
    summarize,
)
from .results import iter_rows, result_files
from .runner import RUN_INFO
from .set_metrics import SET_METRIC_NAMES, read_set_metrics

#: Trade-off plots: (x = distance to the input, y = edit success); the first x present is used for each y.
X_AXES = ("lpips_input", "l1_input")
Y_AXES = ("clip_score", "clip_t", "oracle_edit_applied", "clip_dir", "clip_i_target", "dino_target", "l1_target")
#: Extra fixed pairs (x, y): InstructPix2Pix's consistency vs directional similarity.
PAIRS = (("clip_i_input", "clip_dir"),)
#: Set-level plots (DiffEdit): FID/KID (y) against the first present of these text-alignment metrics (x).
SET_X_AXES = ("clip_score", "clip_t", "oracle_edit_applied", "clip_dir")
MAX_PLOTS = 6
PLOTS_FOLDER = "plots"  # next to the report: the trade-off plots as PNG files


@dataclass
class ReportFiles:
    html: Path
    markdown: Path
    plots: list[Path] = field(default_factory=list)  # each trade-off plot also as a PNG (for papers, READMEs)


# ------------------------------------------------------------------------------------------------ inputs
def _load(paths: Sequence[str | Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows (each with ``_dir``, the folder its relative image paths start from), the runs' ``run.json`` and
    their set-level metrics."""
    rows: dict[str, dict[str, Any]] = {}
    infos = []
    set_rows: list[dict[str, Any]] = []
    for path in map(lambda p: Path(p).expanduser(), paths):
        if path.is_dir():
            files = result_files(path)
            if not files:
                raise DatasetError(f"'{path}' holds no results.jsonl: pass the --out folder of `instructedit bench`.")
            folder = path
        elif path.is_file():
            files, folder = [path], path.parent
        else:
            raise DatasetError(f"results '{path}' does not exist: pass a results folder or a results .jsonl file.")
        set_rows += read_set_metrics(folder)
        if (folder / RUN_INFO).is_file():
            try:
                infos.append(json.loads((folder / RUN_INFO).read_text(encoding="utf-8")))
            except json.JSONDecodeError:
                pass
        for file in files:
            for row in iter_rows(file):
                rows.pop(row["key"], None)
                rows[row["key"]] = {**row, "_dir": str(folder)}
    if not rows:
        raise DatasetError("the results hold no rows yet: run `instructedit bench` first.")
    return list(rows.values()), infos, set_rows


# ------------------------------------------------------------------------------------------------ format
def _fmt(value: float, digits: int = 4) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10**5 or abs(value) < 1e-3:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def _cell(stat: Stat | None, rows: int) -> str:
    if stat is None:
        return "–"
    text = f"{_fmt(stat.mean)} ± {_fmt(stat.std, 2)}"
    return text if stat.n == rows else f"{text} (n={stat.n})"


def _header(metric: str) -> str:
    direction = False if metric in SET_METRIC_NAMES else higher_is_better(metric)
    return metric + {True: " ↑", False: " ↓", None: ""}[direction]


def _table_data(
    groups: list[Group], by: Sequence[str], metrics: Sequence[str], set_rows: Sequence[dict[str, Any]] = ()
) -> tuple[list[str], list[list[str]]]:
    """Table head and body; ``set_rows`` (by method and setting) add FID/KID columns."""
    set_names = [n for n in SET_METRIC_NAMES if any(n in r for r in set_rows)]
    lookup = {(r.get("method"), r.get("setting")): r for r in set_rows}
    head = [*by, "n", *(_header(m) for m in metrics), *(_header(n) for n in set_names)]
    body = []
    for group in groups:
        found = lookup.get((group.keys.get("method"), group.keys.get("setting")), {})
        body.append([
            *("" if group.keys[f] is None else str(group.keys[f]) for f in by),
            str(len(group.rows)),
            *(_cell(group.stats.get(m), len(group.rows)) for m in metrics),
            *(_fmt(found[n]) if isinstance(found.get(n), int | float) else "–" for n in set_names),
        ])  # fmt: skip
    return head, body


def _html_table(head: list[str], body: list[list[str]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    lines = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    # wide metric tables scroll sideways inside the page instead of running off it
    return f'<div class="scroll"><table><thead><tr>{cells}</tr></thead><tbody>{lines}</tbody></table></div>'


def _markdown_table(head: list[str], body: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(head), "|" + "|".join("---" for _ in head) + "|", *(line(r) for r in body)])


# ------------------------------------------------------------------------------------------------ images
def _image_path(row: dict[str, Any], field: str) -> Path | None:
    value = row.get(field)
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else Path(row["_dir"]) / path


def _png_data(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _thumbnail(path: Path | None, size: int) -> str:
    if path is None:
        return '<div class="missing">—</div>'
    try:
        with Image.open(path) as image:
            image = image.convert("RGB") if image.mode not in ("RGB", "L") else image.copy()
    except (OSError, ValueError):
        return f'<div class="missing">missing<br>{html.escape(path.name)}</div>'
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return f'<img src="{_png_data(image)}" alt="{html.escape(path.name)}">'


def _pick_samples(rows: list[dict[str, Any]], count: int) -> list[str]:
    """Up to ``count`` sample ids, taking edit types in turn so every type shows."""
    by_type: dict[Any, list[str]] = {}
    for row in rows:
        ids = by_type.setdefault(row.get("edit_type"), [])
        if row["sample_id"] not in ids:
            ids.append(row["sample_id"])
    picked: list[str] = []
    while len(picked) < count and any(by_type.values()):
        for ids in by_type.values():
            if ids and len(picked) < count:
                picked.append(ids.pop(0))
    return picked


def _grid(rows: list[dict[str, Any]], methods: list[str], count: int, size: int) -> str:
    settings = {m: representative_setting(rows, m) for m in methods}
    has_target = any(r.get("target_image") for r in rows)
    head = ["input", *(f"{m}<br><small>{html.escape(str(settings[m]))}</small>" for m in methods)]
    head += ["ground truth"] if has_target else []
    lines = []
    for sample_id in _pick_samples(rows, count):
        mine = [r for r in rows if r["sample_id"] == sample_id]
        first = mine[0]
        text = first.get("instruction") or first.get("target_caption") or ""
        cells = [_thumbnail(_image_path(first, "source_image"), size)]
        for method in methods:
            match = [r for r in mine if r["method"] == method and r.get("setting") == settings[method]]
            cells.append(_thumbnail(_image_path(match[0], "output_image"), size) if match else "")
        if has_target:
            cells.append(_thumbnail(_image_path(first, "target_image"), size))
        caption = f"<b>{html.escape(sample_id)}</b> {html.escape(str(first.get('edit_type') or ''))}<br>"
        caption += f"<small>{html.escape(text)}</small>"
        lines.append(f'<tr><td class="label">{caption}</td>' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "<tr><th></th>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
    return f'<table class="grid">{header}{"".join(lines)}</table>'


def _sweep_strips(rows: list[dict[str, Any]], methods: list[str], size: int) -> str:
    picked = _pick_samples(rows, 1)
    if not picked:
        return ""
    mine = [r for r in rows if r["sample_id"] == picked[0]]
    parts = []
    for method in methods:
        groups = summarize([r for r in mine if r["method"] == method], ["setting"], [])
        if len(groups) < 2:
            continue
        cells = "".join(
            f"<td>{_thumbnail(_image_path(g.rows[0], 'output_image'), size)}<br>"
            f"<small>{html.escape(str(g.keys['setting']))}</small></td>"
            for g in groups
        )
        parts.append(f'<tr><td class="label"><b>{html.escape(method)}</b></td>{cells}</tr>')
    if not parts:
        return ""
    return (f"<h3>Sweeps on sample {html.escape(picked[0])}</h3>"
            f'<table class="grid">{"".join(parts)}</table>')  # fmt: skip


# ------------------------------------------------------------------------------------------------ plots
def _plot_pairs(metrics: Sequence[str]) -> list[tuple[str, str]]:
    present = set(metrics)
    pairs = []
    x = next((m for m in X_AXES if m in present), None)
    if x is not None:
        pairs += [(x, y) for y in Y_AXES if y in present]
    pairs += [(a, b) for a, b in PAIRS if a in present and b in present]
    return list(dict.fromkeys(pairs))[:MAX_PLOTS]


def _plot(series: list[Series], x: str, y: str) -> bytes | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    figure = Figure(figsize=(5.2, 3.9), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for line in series:
        xs = [p.x.mean for p in line.points]
        ys = [p.y.mean for p in line.points]
        order = sorted(range(len(xs)), key=lambda i: (str(type(line.points[i].value)), line.points[i].value)
                       if line.points[i].value is not None else ("", 0))  # fmt: skip
        xs, ys = [xs[i] for i in order], [ys[i] for i in order]
        axes.plot(xs, ys, marker="o", label=line.label)
        if line.parameter:
            for i in order:
                axes.annotate(f"{line.points[i].value}", (line.points[i].x.mean, line.points[i].y.mean),
                              textcoords="offset points", xytext=(3, 3), fontsize=7)  # fmt: skip
    axes.set_xlabel(_header(x))
    axes.set_ylabel(_header(y))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    parameters = sorted({s.parameter for s in series if s.parameter})
    # the legend's annotations carry each point's value; the title names what is swept, wrapped to fit the plot
    swept = f"\nswept: {', '.join(parameters)}" if parameters else ""
    axes.set_title(f"{y} vs {x}{swept}", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _set_charts(
    rows: list[dict[str, Any]], metrics: Sequence[str], set_rows: Sequence[dict[str, Any]]
) -> list[tuple[str, str, list[Series]]]:
    """DiffEdit's FID (or KID) against text alignment: one point per method and setting."""
    x = next((m for m in SET_X_AXES if m in metrics), None)
    charts = []
    for name in SET_METRIC_NAMES:
        present = [r for r in set_rows if isinstance(r.get(name), int | float)]
        if x is None or not present:
            continue
        series = []
        for method in dict.fromkeys(r.get("method") for r in present):
            mine = [r for r in rows if r.get("method") == method]
            parameter = curve_parameter(mine)
            points = []
            for set_row in (r for r in present if r.get("method") == method):
                stat = Stat.of((r.get("metrics") or {}).get(x) for r in mine if r.get("setting") == set_row["setting"])
                if stat is not None:
                    value = (set_row.get("swept") or {}).get(parameter) if parameter else None
                    points.append(CurvePoint(value, stat, Stat(float(set_row[name]), 0.0, int(set_row.get("n", 0)))))
            if points:
                series.append(Series(str(method), str(method), parameter, points))
        charts.append((x, name, series))
    return charts


# ------------------------------------------------------------------------------------------------ report
_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
table.grid td{text-align:center} td.label{text-align:left;max-width:220px}
.missing{color:#999;font-size:11px} .plots img{margin:6px;border:1px solid #ddd}
.note{color:#666;font-size:13px} .scroll{overflow-x:auto;max-width:100%}
"""


def build_report(
    results: str | Path | Sequence[str | Path],
    out: str | Path | None = None,
    *,
    markdown: str | Path | None = None,
    title: str = "instructedit benchmark",
    samples: int = 8,
    thumbnail: int = 160,
    metrics: Sequence[str] | None = None,
) -> ReportFiles:
    """Write the HTML report and the Markdown summary of ``results`` (folders or ``.jsonl`` files).

    Defaults: ``report.html`` and ``summary.md`` in the (first) results folder. ``samples``: rows of the image
    grid; ``thumbnail``: longest side of the embedded images, in pixels; ``metrics``: the metric columns of the
    tables (default: every metric present, in catalogue order).
    """
    paths = [results] if isinstance(results, str | Path) else list(results)
    if not paths:
        raise DatasetError("no results given: pass a results folder.")
    rows, infos, set_rows = _load(paths)
    first = Path(paths[0]).expanduser()
    folder = first if first.is_dir() else first.parent
    html_path = Path(out).expanduser() if out is not None else folder / "report.html"
    md_path = Path(markdown).expanduser() if markdown is not None else html_path.with_name("summary.md")
    good = ok_rows(rows)
    present = metric_names(good)
    if metrics is not None:
        unknown = sorted(set(metrics) - set(present))
        if unknown:
            raise DatasetError(f"metric(s) {', '.join(unknown)} are not in the results; present: {', '.join(present)}.")
    columns = list(metrics) if metrics is not None else present
    methods = list(dict.fromkeys(r["method"] for r in rows))
    sections: list[str] = []
    md: list[str] = [f"# {title}", ""]

    datasets = sorted({str(r.get("dataset")) for r in rows})
    status = summarize(rows, ["method", "status"], [])
    counts = ", ".join(f"{g.keys['method']}: {len(g.rows)} {g.keys['status']}" for g in status)
    intro = f"Dataset: {', '.join(datasets)}. Rows: {len(rows)} ({counts})."
    sections.append(f'<p class="note">{html.escape(intro)}</p>')
    md += [intro, ""]

    by = ["method", "setting"]
    head, body = _table_data(summarize(good, by, columns), by, columns, set_rows)
    sections.append("<h2>Per method</h2>" + _html_table(head, body))
    md += ["## Per method (mean ± std)", "", _markdown_table(head, body), ""]
    if any((r.get("num_turns") or 1) > 1 for r in good):
        final = [r for r in good if r.get("final_turn")]
        head_f, body_f = _table_data(summarize(final, by, columns), by, columns)
        sections.append("<h2>Final turn only (multi-turn sessions)</h2>" + _html_table(head_f, body_f))
        md += ["## Final turn only", "", _markdown_table(head_f, body_f), ""]
    if any(r.get("edit_type") for r in good):
        by_type = ["edit_type", "method", "setting"]
        head_t, body_t = _table_data(summarize(good, by_type, columns), by_type, columns)
        sections.append("<h2>Per edit type</h2>" + _html_table(head_t, body_t))

    plots, plot_files = [], []
    charts = [(x, y, curve_series(good, x, y)) for x, y in _plot_pairs(present)]
    charts += _set_charts(good, present, set_rows)
    for x, y, series in charts:
        if series:
            data = _plot(series, x, y)
            if data is None:
                plots.append('<p class="note">Install matplotlib to draw the trade-off curves.</p>')
                break
            encoded = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            plots.append(f'<img src="{encoded}" alt="{html.escape(y)} vs {html.escape(x)}">')
            plot_file = html_path.parent / PLOTS_FOLDER / f"{y}_vs_{x}.png"
            plot_file.parent.mkdir(parents=True, exist_ok=True)
            plot_file.write_bytes(data)
            plot_files.append(plot_file)
    if plots:
        sections.append('<h2>Trade-off curves</h2><div class="plots">' + "".join(plots) + "</div>")
    if plot_files:
        md += ["## Trade-off curves", ""]
        md += [f"![{f.stem}]({PLOTS_FOLDER}/{f.name})" for f in plot_files] + [""]

    if good:
        grid_methods = [m for m in methods if any(r["method"] == m for r in good)]
        sections.append("<h2>Examples</h2>" + _grid(good, grid_methods, samples, thumbnail))
        sections.append(_sweep_strips(good, grid_methods, thumbnail))

    errors = [r for r in rows if r.get("status") == "error"]
    if errors:
        items = "".join(
            f"<li>{html.escape(str(r.get('method')))} / {html.escape(str(r.get('sample_id')))}: "
            f"{html.escape(str(r.get('error')))}</li>"
            for r in errors[:50]
        )
        sections.append(f"<h2>Errors ({len(errors)})</h2><ul>{items}</ul>")
    if infos:
        config = json.dumps([i.get("config") for i in infos], indent=1, default=str)
        sections.append(f"<h2>Configuration</h2><pre>{html.escape(config)}</pre>")

    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>"
    )
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(page, encoding="utf-8")
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text("\n".join(md), encoding="utf-8")
    return ReportFiles(html=html_path, markdown=md_path, plots=plot_files)
