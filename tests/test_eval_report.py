"""The benchmark report: aggregation, the HTML page (tables, curves, grids as base64 PNGs), the Markdown summary."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instructedit.errors import DatasetError
from instructedit.evaluation.aggregate import Stat, curve_series, representative_setting, summarize
from instructedit.evaluation.report import build_report
from instructedit.evaluation.results import RESULTS


def _row(key: str, method: str, strength: float | None, sample: str, metrics: dict, **extra) -> dict:
    swept = {"strength": strength} if strength is not None else {}
    return {
        "key": key, "status": "ok", "method": method, "model": "m", "sample_id": sample, "dataset": "toy",
        "swept": swept, "params": dict(swept), "setting": f"strength={strength}" if swept else "default",
        "metrics": metrics, "edit_type": extra.pop("edit_type", "colour"), **extra,
    }  # fmt: skip


def test_stat_and_groups() -> None:
    stat = Stat.of([1.0, 2.0, 4.0, None, float("nan")])
    assert (stat.mean, stat.n) == (pytest.approx(7 / 3), 3)
    assert stat.std == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
    assert Stat.of([None]) is None and Stat.of([5.0]).std == 0.0
    rows = [
        _row("a", "sdedit", 0.8, "s1", {"l1_input": 0.4}), _row("b", "sdedit", 0.2, "s1", {"l1_input": 0.1}),
        _row("c", "sdedit", 0.8, "s2", {"l1_input": 0.6}), _row("d", "ip2p", None, "s1", {"l1_input": 0.3}),
        _row("e", "sdedit", 0.5, "s1", {"l1_input": 0.2}),
    ]  # fmt: skip
    groups = summarize(rows, ["method", "setting"], ["l1_input"])
    # methods in first-seen order, settings in swept order (numerically)
    assert [(g.keys["method"], g.keys["setting"], len(g.rows)) for g in groups] == [
        ("sdedit", "strength=0.2", 1), ("sdedit", "strength=0.5", 1), ("sdedit", "strength=0.8", 2),
        ("ip2p", "default", 1),
    ]  # fmt: skip
    assert groups[2].stats["l1_input"].mean == pytest.approx(0.5)
    assert representative_setting(rows, "sdedit") == "strength=0.5"


def test_curve_series_points() -> None:
    rows = [
        _row(f"k{i}", "sdedit", s, f"s{j}", {"l1_input": s + j / 10, "clip_t": 1 - s})
        for i, (s, j) in enumerate([(0.2, 0), (0.2, 1), (0.6, 0), (0.6, 1)])
    ] + [_row("k9", "ip2p", None, "s0", {"l1_input": 0.3, "clip_t": 0.5})]
    series = {s.method: s for s in curve_series(rows, "l1_input", "clip_t")}
    sdedit = series["sdedit"]
    assert sdedit.parameter == "strength" and [p.value for p in sdedit.points] == [0.2, 0.6]
    assert [p.x.mean for p in sdedit.points] == pytest.approx([0.25, 0.65])
    assert [p.y.mean for p in sdedit.points] == pytest.approx([0.8, 0.4])
    assert series["ip2p"].parameter is None and len(series["ip2p"].points) == 1


def _results(tmp_path: Path) -> Path:
    """A results folder: 3 samples x (sdedit at 3 strengths + ip2p), images on disk, one error row."""
    out = tmp_path / "res"
    rows = []
    for s in range(3):
        source = np.full((24, 24, 3), 40 * s, dtype=np.uint8)
        Image.fromarray(source).save(tmp_path / f"in{s}.png")
        Image.fromarray(255 - source).save(tmp_path / f"gt{s}.png")
        for method, strength in [("sdedit", 0.3), ("sdedit", 0.6), ("sdedit", 0.9), ("ip2p", None)]:
            value = strength if strength is not None else 0.5
            key = f"{method}-{strength}-{s}"
            (out / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((24, 24, 3), int(255 * value), dtype=np.uint8)).save(out / "images" / f"{key}.png")
            rows.append(_row(
                key, method, strength, f"sample{s}",
                {"l1_input": value, "l1_target": 1 - value + s / 100, "psnr_input": 20 - 10 * value},
                edit_type="colour" if s < 2 else "shape", output_image=f"images/{key}.png",
                source_image=str(tmp_path / f"in{s}.png"), target_image=str(tmp_path / f"gt{s}.png"),
                instruction=f"make sample {s} <b>bold</b>",
            ))  # fmt: skip
    rows.append({**_row("broken", "ip2p", None, "sample9", {}), "status": "error", "error": "InvalidImageError: bad"})
    (out / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "run.json").write_text(json.dumps({"config": {"methods": ["sdedit", "ip2p"]}}))
    return out


def _pngs(page: str) -> list[Image.Image]:
    images = []
    for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page):
        images.append(Image.open(io.BytesIO(base64.b64decode(data))))
    return images


def test_report_html_and_markdown(tmp_path: Path) -> None:
    out = _results(tmp_path)
    files = build_report(out, samples=2, thumbnail=48)
    page = files.html.read_text()
    assert files.html == out / "report.html" and files.markdown == out / "summary.md"
    for heading in ("Per method", "Per edit type", "Trade-off curves", "Examples", "Errors (1)", "Configuration"):
        assert f"<h2>{heading}" in page
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")  # self-contained
    assert "&lt;b&gt;bold&lt;/b&gt;" in page  # texts are escaped
    images = _pngs(page)
    plots = [im for im in images if im.width > 300]
    thumbs = [im for im in images if im.width <= 48]
    assert len(plots) == 1  # l1_target (edit success) against l1_input (distance to the input)
    # the same plot is written as a PNG file and shown in the Markdown summary
    assert files.plots == [out / "plots" / "l1_target_vs_l1_input.png"]
    with Image.open(files.plots[0]) as written:
        assert written.size == plots[0].size and np.array_equal(np.asarray(written), np.asarray(plots[0]))
    assert "![l1_target_vs_l1_input](plots/l1_target_vs_l1_input.png)" in files.markdown.read_text()
    # grid: 2 samples x (input + 2 methods + ground truth); sweep strip: sdedit's 3 settings
    assert len(thumbs) == 2 * 4 + 3
    markdown = files.markdown.read_text()
    assert "| method | setting | n | l1_input ↓ | l1_target ↓ | psnr_input ↑ |" in markdown
    l1_target = np.mean([1 - 0.6 + s / 100 for s in range(3)])
    std = np.std([1 - 0.6 + s / 100 for s in range(3)], ddof=1)
    assert f"| sdedit | strength=0.6 | 3 | 0.6 ± 0 | {l1_target:.4g} ± {std:.2g} |" in markdown
    assert "ip2p: 3 ok" in markdown and "ip2p: 1 error" in markdown
    short = build_report(out, tmp_path / "short.html", metrics=["l1_target"]).markdown.read_text()
    assert "| method | setting | n | l1_target ↓ |\n" in short
    with pytest.raises(DatasetError, match="clip_t.*not in the results"):
        build_report(out, metrics=["clip_t"])


def test_report_multi_turn_table_and_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from instructedit.evaluation.cli import app

    out = tmp_path / "res"
    out.mkdir()
    rows = [_row(f"t{t}", "ip2p", None, f"x_{t}", {"l1_target": 0.1 * t}, turn=t, num_turns=2, final_turn=t == 2)
            for t in (1, 2)]  # fmt: skip
    (out / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(app, ["report", str(out), "--out", str(tmp_path / "r.html"), "--title", "MB"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text()
    assert "<title>MB</title>" in page and "Final turn only" in page
    assert (tmp_path / "summary.md").read_text().count("| ip2p | default |") == 2  # all turns, final turn
    assert CliRunner().invoke(app, ["report", str(tmp_path / "none")]).exit_code == 2


def test_report_needs_rows(tmp_path: Path) -> None:
    (tmp_path / RESULTS).write_text("")
    with pytest.raises(DatasetError, match="no rows"):
        build_report(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no results.jsonl"):
        build_report(tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not exist"):
        build_report(tmp_path / "missing")


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # 3 images give a singular covariance
def test_set_metrics_fid_kid_and_report_columns(tmp_path: Path) -> None:
    from instructedit.evaluation.metrics.fid import fid_from_features, kid_from_features
    from instructedit.evaluation.set_metrics import compute_set_metrics, read_set_metrics

    out = _results(tmp_path)
    seen: list[int] = []

    def extract(images: list[Image.Image]) -> np.ndarray:  # mean colour + a ramp: 4-D "features"
        seen.append(len(images))
        return np.stack([[*np.asarray(im, dtype=np.float64).mean(axis=(0, 1)), i] for i, im in enumerate(images)])

    compute_set_metrics(out, extractor=extract, kid_subsets=3)
    lines = {(r["method"], r["setting"]): r for r in read_set_metrics(out)}
    assert set(lines) == {("sdedit", "strength=0.3"), ("sdedit", "strength=0.6"), ("sdedit", "strength=0.9"),
                          ("ip2p", "default")}  # fmt: skip
    line = lines[("sdedit", "strength=0.6")]
    assert line["reference"] == "target" and line["n"] == 3 and line["swept"] == {"strength": 0.6}
    outputs = extract([Image.open(out / "images" / f"sdedit-0.6-{s}.png").convert("RGB") for s in range(3)])
    targets = extract([Image.open(tmp_path / f"gt{s}.png").convert("RGB") for s in range(3)])
    assert line["fid"] == pytest.approx(fid_from_features(outputs, targets))
    assert line["kid"] == pytest.approx(kid_from_features(outputs, targets, subsets=3, subset_size=3).mean)
    assert sum(seen[:-2]) == 3 + 3 * 4  # reference images are featurised once, every output once
    markdown = build_report(out).markdown.read_text()
    assert "fid ↓ | kid ↓ |" in markdown and f"{line['fid']:.4g}" in markdown
