"""`instructedit batch`: one edit per manifest line, resumable, per-line errors that do not stop the batch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from instructedit import Editor, EditRequest
from instructedit.cli import app
from instructedit.inputs import read_metadata
from instructedit.serving.batch import run_batch

SCENE = Path(__file__).resolve().parent.parent / "examples" / "scene.png"
STEPS = {"num_inference_steps": 3}


@pytest.fixture()
def manifest(tmp_path) -> Path:
    shutil.copy(SCENE, tmp_path / "scene.png")
    lines = [
        json.dumps({"id": "blue", "image": "scene.png", "instruction": "make the star blue", "params": STEPS}),
        "{this is not json",
        json.dumps({"image": "scene.png", "instruction": "   ", "params": STEPS}),
        json.dumps({"image": "missing.png", "instruction": "make the star red", "params": STEPS}),
        json.dumps({"image": "scene.png", "method": "sdedit", "target": "a blue star on a black background",
                    "params": {**STEPS, "strength": 0.5}, "seed": 2}),
        json.dumps({"image": "scene.png", "instruction": "x", "colour": "red"}),
    ]
    path = tmp_path / "edits.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_batch_runs_every_good_line_and_reports_each_bad_one(manifest, tmp_path):
    out = tmp_path / "out"
    summary = run_batch(manifest, out, editor=Editor())
    assert (summary.lines, summary.done, summary.failed) == (6, 2, 4)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_line = {r["line"]: r for r in rows}
    assert by_line[1]["status"] == "ok" and by_line[1]["output_image"] == "images/blue.png"
    assert "line 2 is not JSON" in by_line[2]["error"]
    assert by_line[3]["field"] == "instruction" and by_line[3]["error"].startswith("line 3:")
    assert "missing.png" in by_line[4]["error"]
    assert by_line[5]["status"] == "ok" and by_line[5]["record"]["method"] == "sdedit"
    assert "unknown field(s) colour" in by_line[6]["error"]
    # the output is the library's own result, with its record
    expected = Editor().edit(EditRequest(str(SCENE), instruction="make the star blue", params=STEPS))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "images" / "blue.png").convert("RGB")),
                                  np.asarray(expected.image))
    assert json.loads(read_metadata(out / "images" / "blue.png")["instructedit"])["params"]["num_inference_steps"] == 3


def test_a_rerun_resumes_without_redoing_a_finished_line(manifest, tmp_path):
    out = tmp_path / "out"
    first = run_batch(manifest, out, editor=Editor())
    stamp = (out / "images" / "blue.png").stat().st_mtime_ns
    with open(out / "results.jsonl", "a") as f:
        f.write('{"key": "torn')  # a crash mid-row
    second = run_batch(manifest, out, editor=Editor())
    assert (second.done, second.already_done, second.failed) == (0, first.done, 4)
    assert (out / "images" / "blue.png").stat().st_mtime_ns == stamp
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]  # every line whole
    assert sum(r["status"] == "ok" for r in rows) == 2


def test_the_cli_prints_a_summary_and_exits_1_when_a_line_failed(manifest, tmp_path):
    result = CliRunner().invoke(app, ["batch", str(manifest), "-o", str(tmp_path / "o"), "--no-progress"])
    assert result.exit_code == 1 and "2 done, 0 already done, 4 failed" in result.output
    missing = CliRunner().invoke(app, ["batch", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "no manifest" in missing.output
