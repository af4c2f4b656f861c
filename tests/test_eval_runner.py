"""The benchmark runner: sweeps, job planning, rows and metrics, resume after a crash, sharding, the CLI,
and one end-to-end run on a tiny random model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instructedit.errors import InvalidImageError, InvalidRequestError
from instructedit.evaluation.datasets import EditDataset, read_manifest
from instructedit.evaluation.results import RESULTS, iter_rows, merge_results, read_rows, shard_name
from instructedit.evaluation.runner import BenchmarkConfig, job_key, plan_jobs, run_benchmark
from instructedit.evaluation.sweep import Sweep, method_grid, parse_param, parse_sweep
from instructedit.types import EditRecord, EditResult


# --------------------------------------------------------------------------------------------- sweeps
def test_parse_sweep() -> None:
    assert parse_sweep("strength=0.3:0.9:0.1").values == (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert parse_sweep("num_inference_steps=10:40:15").values == (10, 25, 40)
    assert parse_sweep("strength=0.9:0.5:-0.2").values == (0.9, 0.7, 0.5)
    assert parse_sweep("strength=0.2:0.7:0.2").values == (0.2, 0.4, 0.6)  # stop not on the grid: not passed
    assert parse_sweep("guidance_scale=5,7.5,5").values == (5, 7.5)
    assert parse_sweep("scheduler=ddim,dpm").values == ("ddim", "dpm")
    assert parse_param("eta=0") == ("eta", 0) and parse_param("blend=true") == ("blend", True)
    for bad in ("strength", "strength=", "2x=1", "strength=0.1:0.5", "strength=0.1:0.5:0", "strength=0.5:0.1:0.1",
                "strength=a:b:c"):  # fmt: skip
        with pytest.raises(InvalidRequestError):
            parse_sweep(bad)


def test_method_grid_uses_only_the_methods_parameters() -> None:
    sweeps = [Sweep("strength", (0.3, 0.6)), Sweep("guidance_scale", (5, 7.5)), Sweep("image_guidance_scale", (1,))]
    assert method_grid({"strength", "guidance_scale"}, sweeps) == [
        {"strength": 0.3, "guidance_scale": 5}, {"strength": 0.3, "guidance_scale": 7.5},
        {"strength": 0.6, "guidance_scale": 5}, {"strength": 0.6, "guidance_scale": 7.5},
    ]  # fmt: skip
    assert method_grid({"eta"}, sweeps) == [{}]  # none of the swept parameters: one run with defaults


# --------------------------------------------------------------------------------------------- fakes
@dataclass
class FakeMethod:
    name: str
    needs: frozenset[str]
    defaults: dict = field(default_factory=dict)


SDEDIT = FakeMethod("sdedit", frozenset({"target"}), {"strength": 0.8, "num_inference_steps": 50})
IP2P = FakeMethod("ip2p", frozenset({"instruction"}), {"image_guidance_scale": 1.5, "num_inference_steps": 100})


class FakeEditor:
    """Blends the input towards white by ``strength`` (0.5 when unset); crashes on call number ``crash_on``
    and rejects the (method, instruction) pairs of ``reject`` with a typed error."""

    def __init__(self, crash_on: int | None = None, reject: set[tuple[str, str]] | None = None) -> None:
        self.calls: list = []
        self.crash_on, self.reject = crash_on, reject or set()

    def edit(self, request):
        self.calls.append(request)
        if self.crash_on is not None and len(self.calls) == self.crash_on:
            raise RuntimeError("simulated crash (out of memory)")
        if (request.method, request.instruction) in self.reject:
            raise InvalidImageError("simulated bad input")
        strength = request.params.get("strength", 0.5)
        pixels = np.asarray(request.image, dtype=np.float64)
        out = Image.fromarray(np.round(pixels * (1 - strength) + 255 * strength).astype(np.uint8))
        record = EditRecord(
            method=request.method, model="fake", params=dict(request.params), seed=request.seed,
            instruction=request.instruction, source=request.source, target=request.target,
            image_size=out.size, wall_time_s=0.0, unet_calls=1, unet_evals=1,
        )  # fmt: skip
        return EditResult(out, record, None)


def _manifest(tmp_path: Path, count: int = 3, sessions: bool = False) -> EditDataset:
    lines = []
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 200, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"s{i}.png")
        mask = np.zeros((16, 16), dtype=np.uint8)
        mask[:8] = 255
        Image.fromarray(mask).save(tmp_path / f"m{i}.png")
        line = {"id": f"s{i}", "image": f"s{i}.png", "mask": f"m{i}.png", "instruction": f"edit {i}",
                "target_caption": f"target {i}", "edit_type": "a" if i % 2 else "b"}  # fmt: skip
        if sessions:
            line.update(session="chat", turn=i + 1, num_turns=count)
        lines.append(json.dumps(line))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    return read_manifest(tmp_path / "m.jsonl")


def _config(**kwargs) -> BenchmarkConfig:
    return BenchmarkConfig(methods=[SDEDIT, IP2P], sweeps=[parse_sweep("strength=0.2,0.6")], **kwargs)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------------------------- planning
def test_plan_jobs(tmp_path: Path) -> None:
    dataset = _manifest(tmp_path, 2)
    jobs = plan_jobs(dataset, _config(params={"num_inference_steps": 4}))
    # per sample: sdedit at 2 strengths, ip2p once (no strength parameter); sample-major order
    assert [(j.sample.id, j.method.name, j.setting) for j in jobs] == [
        ("s0", "sdedit", "strength=0.2"), ("s0", "sdedit", "strength=0.6"), ("s0", "ip2p", "default"),
        ("s1", "sdedit", "strength=0.2"), ("s1", "sdedit", "strength=0.6"), ("s1", "ip2p", "default"),
    ]  # fmt: skip
    assert all(j.params["num_inference_steps"] == 4 for j in jobs)
    assert len({j.key for j in jobs}) == len(jobs)
    assert jobs[0].key == job_key("s0", "sdedit", None, {"strength": 0.2, "num_inference_steps": 4.0}, 0, False,
                                  "independent")  # 4 and 4.0 are one setting  # fmt: skip
    with pytest.raises(InvalidRequestError, match="no selected method has parameter.*strenght"):
        plan_jobs(dataset, BenchmarkConfig(methods=[SDEDIT], sweeps=[parse_sweep("strenght=0.1,0.2")]))
    needs_source = FakeMethod("diffedit", frozenset({"source", "target"}))
    skipped = plan_jobs(dataset, BenchmarkConfig(methods=[needs_source]))
    assert all("source_caption" in j.skip_reason for j in skipped)


def test_real_methods_are_resolved_by_name(tmp_path: Path) -> None:
    jobs = plan_jobs(_manifest(tmp_path, 1), BenchmarkConfig(methods=["sdedit", "diffedit", "ip2p"],
                                                              sweeps=[parse_sweep("strength=0.3,0.9")]))  # fmt: skip
    assert [(j.method.name, j.setting) for j in jobs] == [
        ("sdedit", "strength=0.3"), ("sdedit", "strength=0.9"), ("diffedit", "default"), ("ip2p", "default"),
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------- running
def test_rows_images_and_metrics(tmp_path: Path) -> None:
    from instructedit.inputs import read_metadata

    dataset = _manifest(tmp_path, 2)
    editor = FakeEditor()
    summary = run_benchmark(dataset, _config(), tmp_path / "out", editor=editor, progress=False)
    assert (summary.planned, summary.ran, summary.ok, summary.already_done) == (6, 6, 6, 0)
    rows = _lines(tmp_path / "out" / RESULTS)
    assert [r["setting"] for r in rows[:3]] == ["strength=0.2", "strength=0.6", "default"]
    row = rows[1]
    assert row["status"] == "ok" and row["params"] == {"strength": 0.6} and row["swept"] == {"strength": 0.6}
    assert row["record"]["method"] == "sdedit" and row["record"]["params"] == {"strength": 0.6}
    assert editor.calls[1].target == "target 0" and editor.calls[1].mask is None  # mask-free by default
    source = np.asarray(Image.open(tmp_path / "s0.png"), dtype=np.float64) / 255
    output_image = Image.open(tmp_path / "out" / row["output_image"])
    output = np.asarray(output_image.convert("RGB"), dtype=np.float64) / 255
    assert row["metrics"]["l1_input"] == pytest.approx(np.abs(output - source).mean(), rel=1e-6)
    kept = np.zeros((16, 16, 1))
    kept[8:] = 1  # the unedited half; PIE-Bench masking: the edited half counts as zero error
    assert row["metrics"]["mse_input_unedited"] == pytest.approx((((output - source) * kept) ** 2).mean(), rel=1e-6)
    assert "l1_target" not in row["metrics"]  # no ground truth in this dataset
    assert json.loads(read_metadata(tmp_path / "out" / row["output_image"])["instructedit"])["method"] == "sdedit"
    assert Path(row["source_image"]).resolve() == (tmp_path / "s0.png").resolve()
    assert (tmp_path / "out" / row["mask_image"]).is_file()
    run_info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_info["config"]["sweeps"] == {"strength": [0.2, 0.6]} and run_info["jobs"] == 6
    if summary.parquet is not None:
        import pyarrow.parquet as pq

        table = pq.read_table(summary.parquet)
        assert table.num_rows == 6
        assert {"metrics.l1_input", "params.strength", "record.unet_calls"} <= set(table.column_names)


def test_resume_after_crash_loses_and_redoes_nothing(tmp_path: Path) -> None:
    dataset, out = _manifest(tmp_path, 2), tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_benchmark(dataset, _config(), out, editor=FakeEditor(crash_on=3), progress=False)
    before = _lines(out / RESULTS)
    assert len(before) == 2  # the two finished jobs are on disk
    editor = FakeEditor()
    summary = run_benchmark(dataset, _config(), out, editor=editor, progress=False)
    assert (summary.already_done, summary.ran) == (2, 4) and len(editor.calls) == 4
    after = _lines(out / RESULTS)
    assert after[:2] == before and len({r["key"] for r in after}) == len(after) == 6
    again = FakeEditor()
    assert run_benchmark(dataset, _config(), out, editor=again, progress=False).ran == 0 and not again.calls


def test_half_written_last_line_is_tolerated(tmp_path: Path) -> None:
    dataset, out = _manifest(tmp_path, 2), tmp_path / "out"
    with pytest.raises(RuntimeError):
        run_benchmark(dataset, _config(), out, editor=FakeEditor(crash_on=4), progress=False)
    results = out / RESULTS
    complete = results.read_text()
    finished = [r["key"] for r in _lines(results)]
    results.write_text(complete + complete.splitlines()[0][:40])  # a crash in the middle of a write
    assert [r["key"] for r in iter_rows(results)] == finished == [r["key"] for r in read_rows(out)]
    editor = FakeEditor()
    run_benchmark(dataset, _config(), out, editor=editor, progress=False)
    rows = _lines(results)  # every line parses: the fragment was cut off before appending
    assert len(editor.calls) == 3 and len(rows) == 6 and len({r["key"] for r in rows}) == 6
    assert [r["key"] for r in rows[:3]] == finished


def test_typed_errors_are_recorded_and_retried_on_request(tmp_path: Path) -> None:
    dataset, out = _manifest(tmp_path, 2), tmp_path / "out"
    summary = run_benchmark(dataset, _config(), out, editor=FakeEditor(reject={("ip2p", "edit 1")}), progress=False)
    assert (summary.ok, summary.errors) == (5, 1)
    error = next(r for r in _lines(out / RESULTS) if r["status"] == "error")
    assert error["sample_id"] == "s1" and error["method"] == "ip2p" and "InvalidImageError" in error["error"]
    assert run_benchmark(dataset, _config(), out, editor=FakeEditor(), progress=False).ran == 0
    retry = FakeEditor()
    summary = run_benchmark(dataset, _config(), out, editor=retry, progress=False, retry_errors=True)
    assert summary.ran == 1 and summary.ok == 1 and retry.calls[0].instruction == "edit 1"
    assert {r["status"] for r in read_rows(out)} == {"ok"} and len(read_rows(out)) == 6
    with pytest.raises(InvalidImageError):
        run_benchmark(dataset, _config(), tmp_path / "out2", editor=FakeEditor(reject={("sdedit", "edit 0")}),
                      progress=False,
                      on_error="raise")  # fmt: skip


def test_shards_split_the_jobs_and_merge(tmp_path: Path) -> None:
    dataset, out = _manifest(tmp_path, 3), tmp_path / "out"
    first, second = FakeEditor(), FakeEditor()
    run_benchmark(dataset, _config(), out, editor=first, progress=False, shard=(0, 2))
    run_benchmark(dataset, _config(), out, editor=second, progress=False, shard=(1, 2))
    shards = [_lines(out / shard_name(i, 2)) for i in range(2)]
    keys = [{r["key"] for r in rows} for rows in shards]
    assert len(first.calls) + len(second.calls) == 9 and not keys[0] & keys[1] and len(keys[0] | keys[1]) == 9
    merge_results(out)
    assert not list(out.glob("results.shard-*")) and len(_lines(out / RESULTS)) == 9


def test_iterative_turns_start_from_the_previous_output(tmp_path: Path) -> None:
    dataset = _manifest(tmp_path, 2, sessions=True)
    editor = FakeEditor()
    config = BenchmarkConfig(methods=[SDEDIT], sweeps=[parse_sweep("strength=0.5")], multi_turn="iterative")
    run_benchmark(dataset, config, tmp_path / "out", editor=editor, progress=False)
    first, second = _lines(tmp_path / "out" / RESULTS)
    assert second["source_image"] == first["output_image"] and second["turn"] == 2 and second["final_turn"]
    fed = np.asarray(editor.calls[1].image)
    assert np.array_equal(fed, np.asarray(Image.open(tmp_path / "out" / first["output_image"]).convert("RGB")))
    independent = FakeEditor()
    config.multi_turn = "independent"
    run_benchmark(dataset, config, tmp_path / "out2", editor=independent, progress=False)
    assert np.array_equal(np.asarray(independent.calls[1].image), np.asarray(Image.open(tmp_path / "s1.png")))


# --------------------------------------------------------------------------------------------- end to end
def test_cli_bench_end_to_end_on_a_tiny_model(tmp_path: Path, tiny_pipeline_dir) -> None:
    from typer.testing import CliRunner

    from instructedit.evaluation.cli import app
    from instructedit.inputs import read_metadata

    model, out = tiny_pipeline_dir("t2i"), tmp_path / "bench"
    args = ["bench", "--dataset", "domain", "--limit", "2", "--methods", "sdedit", "--sweep", "strength=0.3,0.7",
            "--param", "num_inference_steps=4", "--model", f"t2i={model}", "--device", "cpu", "--out", str(out),
            "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = _lines(out / RESULTS)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert sorted(r["record"]["params"]["strength"] for r in rows) == [0.3, 0.3, 0.7, 0.7]
    assert all(r["record"]["params"]["num_inference_steps"] == 4 and r["record"]["model"] == model for r in rows)
    assert all({"l1_input", "l1_target", "oracle_edit_applied", "psnr_input_unedited"} <= set(r["metrics"])
               for r in rows)  # fmt: skip
    record = json.loads(read_metadata(out / rows[0]["output_image"])["instructedit"])
    assert record == rows[0]["record"]
    assert (out / "report.html").is_file() and "data:image/png;base64," in (out / "report.html").read_text()
    again = CliRunner().invoke(app, args)  # resumes: nothing left to do
    assert again.exit_code == 0 and "0 edits run" in again.output and len(_lines(out / RESULTS)) == 4


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from instructedit.evaluation.cli import app

    result = CliRunner().invoke(app, ["bench", "--dataset", str(tmp_path / "nope"), "--methods", "sdedit"])
    assert result.exit_code == 2 and "does not exist" in result.output
    _manifest(tmp_path, 1)
    result = CliRunner().invoke(app, ["bench", "--dataset", str(tmp_path / "m.jsonl"), "--methods", "sdedit",
                                      "--sweep", "strength=1:2", "--out", str(tmp_path / "o")])  # fmt: skip
    assert result.exit_code == 2 and "START:STOP:STEP" in result.output


def test_set_metrics_are_computed_at_the_end(tmp_path: Path) -> None:
    from instructedit.evaluation.runner import split_metrics
    from instructedit.evaluation.set_metrics import read_set_metrics

    assert split_metrics("default,fid,clip_t,kid") == (["default", "clip_t"], ["fid", "kid"])
    assert split_metrics("fid") == (["none"], ["fid"])
    dataset = _manifest(tmp_path, 3)

    def extract(images):
        return np.stack([np.asarray(im, dtype=np.float64).mean(axis=(0, 1)) + [i, 2 * i * i, 0] for i, im in
                         enumerate(images)])  # fmt: skip

    config = _config(metrics="l1_input,fid")
    run_benchmark(dataset, config, tmp_path / "out", editor=FakeEditor(), progress=False, set_extractor=extract)
    lines = read_set_metrics(tmp_path / "out")
    assert [(r["method"], r["setting"], r["n"], r["reference"]) for r in lines] == [
        ("sdedit", "strength=0.2", 3, "input"), ("sdedit", "strength=0.6", 3, "input"), ("ip2p", "default", 3, "input"),
    ]  # fmt: skip
    assert all(r["fid"] >= 0 and "kid" not in r for r in lines)
    metrics = set(_lines(tmp_path / "out" / RESULTS)[0]["metrics"])
    assert metrics == {"l1_input", "seconds_per_edit", "peak_memory_mb"}  # the row metric asked for, and the cost
