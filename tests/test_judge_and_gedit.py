"""The VLM judge (VIEScore, as GEdit-Bench scores edits) against a local server that speaks the OpenAI chat
protocol, and the GEdit-Bench reader on parquet files in its published layout."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from instructedit.errors import DatasetError
from instructedit.evaluation.metrics.judge import JudgeError, VLMJudge, parse_scores


def _url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def test_judge_scores_follow_viescore_and_are_cached(judge_server, test_image, tmp_path):
    cache = tmp_path / "judge.jsonl"
    judge = VLMJudge(_url(judge_server), model="qwen2.5-vl", backoff=0, cache_file=cache)
    edited = test_image.rotate(90)
    scores = judge.judge(test_image, edited, "make the square blue")
    assert (scores.semantics, scores.quality) == (6.0, 7.0)  # the minimum of each list
    assert math.isclose(scores.overall, math.sqrt(42))
    assert len(judge_server.requests) == 2 and judge_server.requests[0]["model"] == "qwen2.5-vl"
    assert judge_server.instructions == ["make the square blue"]
    judge.judge(test_image, edited, "make the square blue")
    assert len(judge_server.requests) == 2  # cached in memory
    again = VLMJudge(_url(judge_server), model="qwen2.5-vl", cache_file=cache)
    assert again.judge(test_image, edited, "make the square blue") == scores
    assert len(judge_server.requests) == 2  # and on disk, for a resumed run
    other = VLMJudge(_url(judge_server), model="another-judge", backoff=0, cache_file=cache)
    other.judge(test_image, edited, "make the square blue")
    assert len(judge_server.requests) == 4  # another model's judgement is never reused


def test_judge_retries_failures_and_never_invents_a_score(judge_server, test_image):
    judge = VLMJudge(_url(judge_server), backoff=0, max_retries=2)
    judge_server.script = [500, "I cannot tell."]  # a server error, then an unparsable answer: asked again
    scores = judge.judge(test_image, test_image, "make the square blue")
    assert scores is not None and scores.semantics == 6.0 and len(judge_server.requests) == 4
    judge_server.script = ["no idea", "still no idea"]  # VIEScore would guess a random score here
    assert judge.judge(test_image, test_image.rotate(180), "make the square blue") is None
    judge_server.script = [404]
    with pytest.raises(JudgeError) as excinfo:
        judge.judge(test_image, test_image.rotate(270), "make the square blue")
    assert excinfo.value.field == "judge_url" and "HTTP 404" in str(excinfo.value)
    judge_server.script = [503, 503, 503]
    with pytest.raises(JudgeError, match="failed 3 times"):
        judge.judge(test_image, test_image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "make the square blue")


def test_judge_without_an_endpoint_says_how_to_configure_one(monkeypatch):
    monkeypatch.delenv("INSTRUCTEDIT_JUDGE_URL", raising=False)
    with pytest.raises(JudgeError) as excinfo:
        VLMJudge()
    assert "--judge-url" in str(excinfo.value) and "no judge model ships" in str(excinfo.value)
    with pytest.raises(JudgeError):
        VLMJudge("ftp://nowhere")


@pytest.mark.parametrize(("answer", "scores"), [
    ('||V^=^V||{"score": [3, 10], "reasoning": "x"}||V^=^V||', [3.0, 10.0]),
    ('Sure! {"score" : [5], "reasoning" : "half done"}', [5.0]),
    ("[6, 2]", [6.0, 2.0]),
    ("7", [7.0]),
    ('{score: [4, 4], reasoning: unquoted}', [4.0, 4.0]),
    ('{"score": [12, 3]}', None),  # out of the 0-10 scale
    ("no scores at all", None),
])
def test_parse_scores_reads_answers_as_viescore_does(answer, scores):
    assert parse_scores(answer) == scores


def _png(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_gedit(path, rows) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "task_type": [r[0] for r in rows], "key": [r[1] for r in rows], "instruction": [r[2] for r in rows],
        "instruction_language": [r[3] for r in rows],
        "input_image": pa.array([{"bytes": _png(r[4]), "path": None} for r in rows], type=image),
        "input_image_raw": pa.array([{"bytes": _png(r[4]), "path": None} for r in rows], type=image),
        "Intersection_exist": [r[5] for r in rows],
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


GEDIT_ROWS = [("color_alter", "a1", "make the square blue", "en", (200, 30, 30), True),
              ("subject-add", "b2", "add a hat", "en", (30, 200, 30), False),
              ("color_alter", "a1", "把方块变成蓝色", "cn", (200, 30, 30), True)]


def test_gedit_reader_reads_the_published_layout(tmp_path):
    from instructedit.evaluation.datasets import load_dataset

    _write_gedit(tmp_path / "gedit" / "data" / "train-00000-of-00001.parquet", GEDIT_ROWS)
    english = load_dataset(str(tmp_path / "gedit"))  # recognised by its columns, not taken for MagicBrush
    assert english.kind == "gedit" and [s.id for s in english] == ["color_alter/en/a1", "subject-add/en/b2"]
    first = english.samples[0]
    assert first.edit_type == "color_alter" and first.instruction == "make the square blue"
    assert first.extra["intersection_exist"] is True and first.extra["language"] == "en"
    assert np.asarray(first.source_image())[0, 0].tolist() == [200, 30, 30]
    assert len(load_dataset(f"gedit:{tmp_path / 'gedit'}", split="all")) == 3
    assert [s.id for s in load_dataset(f"gedit:{tmp_path / 'gedit'}", split="cn")] == ["color_alter/cn/a1"]
    with pytest.raises(DatasetError, match="language"):
        load_dataset(f"gedit:{tmp_path / 'gedit'}", split="fr")

    import pyarrow as pa
    import pyarrow.parquet as pq

    broken = tmp_path / "broken.parquet"
    pq.write_table(pa.table({"task_type": ["x"], "instruction_language": ["en"]}), broken)
    with pytest.raises(DatasetError, match="lacks columns"):
        load_dataset(f"gedit:{broken}")


def test_benchmark_on_gedit_reports_judge_scores_time_and_memory(judge_server, tiny_pipeline_dir, tmp_path):
    from instructedit.editor import Editor
    from instructedit.evaluation.datasets import load_dataset
    from instructedit.evaluation.results import read_rows
    from instructedit.evaluation.runner import BenchmarkConfig, run_benchmark

    _write_gedit(tmp_path / "gedit.parquet", GEDIT_ROWS)
    data = load_dataset(str(tmp_path / "gedit.parquet"))
    config = BenchmarkConfig(methods=["ip2p"], models={"ip2p": tiny_pipeline_dir("ip2p")},
                             params={"num_inference_steps": 2}, metrics="judge,l1_input")
    judge = VLMJudge(_url(judge_server), backoff=0, cache_file=tmp_path / "out" / "judge-cache.jsonl")
    editor = Editor(device="cpu")
    summary = run_benchmark(data, config, tmp_path / "out", editor=editor, progress=False, parquet=False,
                            judge=judge)
    assert summary.ok == 2 and sorted(judge_server.instructions) == ["add a hat", "make the square blue"]
    rows = {r["sample_id"]: r for r in read_rows(tmp_path / "out")}
    metrics = rows["color_alter/en/a1"]["metrics"]
    assert metrics["judge_semantics"] == 6.0 and math.isclose(metrics["judge_overall"], math.sqrt(42))
    assert metrics["seconds_per_edit"] > 0 and metrics["peak_memory_mb"] > 0 and "l1_input" in metrics
    asked = len(judge_server.requests)
    (tmp_path / "out" / "results.jsonl").unlink()  # as if every edit had to run again (same seed, same images)
    rerun = VLMJudge(_url(judge_server), cache_file=tmp_path / "out" / "judge-cache.jsonl")
    run_benchmark(data, config, tmp_path / "out", editor=editor, progress=False, parquet=False, judge=rerun)
    assert len(judge_server.requests) == asked  # every judgement came from the cache file
