"""Reference domain: dataset folders (manifest, MagicBrush layout, text-to-image captions) and readers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from instructedit.commandline import fail
from instructedit.domain import dataset, generate_dataset, generate_samples, load_split, read_magicbrush
from instructedit.domain.cli import app as domain_app
from instructedit.errors import DatasetError, InvalidRequestError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("domain")
    return root, generate_dataset(root, "train", 14, seed=3), generate_dataset(root, "test", 14, seed=3)


def test_layout_on_disk(folders):
    root, train_dir, test_dir = folders
    assert train_dir == root / "train" and test_dir == root / "test"
    for d in (train_dir, test_dir):
        for name in (
            "manifest.jsonl",
            "captions.jsonl",
            "dataset.json",
            "edit_sessions.json",
            "global_descriptions.json",
            "local_descriptions.json",
        ):
            assert (d / name).is_file(), name
    sample_id = "train_3_000000"
    folder = train_dir / "images" / sample_id
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{sample_id}-input.png", f"{sample_id}-mask1.png", f"{sample_id}-output1.png"]
    with Image.open(folder / f"{sample_id}-mask1.png") as m:
        assert m.mode == "L" and set(np.unique(np.asarray(m))) <= {0, 255}
    with Image.open(folder / f"{sample_id}-input.png") as im:
        assert im.mode == "RGB" and im.size == (64, 64)
    info = json.loads((test_dir / "dataset.json").read_text())
    assert info["split"] == "test" and info["num_samples"] == 14 and info["generator"] == "instructedit.domain"


def test_manifest_round_trip_equals_in_memory_samples(folders):
    _, train_dir, _ = folders
    loaded = load_split(train_dir)
    fresh = generate_samples("train", 14, seed=3)
    assert [s.id for s in loaded] == [s.id for s in fresh]
    for a, b in zip(loaded, fresh, strict=True):
        ma, mb = a.to_manifest(train_dir.resolve()), b.to_manifest()
        for key in ("source", "target", "mask"):
            ma.pop(key), mb.pop(key)
        assert ma == mb
        assert a.source_path.is_absolute()
        # files (lossless PNG) hold exactly the renders
        assert np.array_equal(np.asarray(a.source_image()), np.asarray(b.source_image()))
        assert np.array_equal(np.asarray(a.target_image()), np.asarray(b.target_image()))
        assert np.array_equal(a.mask_array(), b.mask_array())


def test_manifest_fields(folders):
    _, _, test_dir = folders
    record = json.loads((test_dir / "manifest.jsonl").read_text().splitlines()[0])
    for key in (
        "id", "source", "target", "mask", "instruction", "source_caption", "target_caption",
        "edit_type", "heldout_phrasing", "source_scene", "target_scene", "edit",
    ):  # fmt: skip
        assert key in record, key
    assert (test_dir / record["source"]).is_file()


def test_magicbrush_layout_round_trips(folders):
    _, _, test_dir = folders
    samples = {s.id: s for s in load_split(test_dir)}
    turns = read_magicbrush(test_dir)
    assert sorted(samples) == [t.img_id for t in turns]
    for t in turns:
        s = samples[t.img_id]
        assert t.turn_index == 1 and t.instruction == s.instruction
        assert t.source_caption == s.source_caption and t.target_caption == s.target_caption
        assert t.local_description == s.local_description
        assert (t.source_path, t.target_path, t.mask_path) == (s.source_path, s.target_path, s.mask_path)


def test_text_to_image_captions(folders):
    _, train_dir, test_dir = folders
    train_lines = [json.loads(x) for x in (train_dir / "captions.jsonl").read_text().splitlines()]
    test_lines = [json.loads(x) for x in (test_dir / "captions.jsonl").read_text().splitlines()]
    assert len(train_lines) == 28 and len(test_lines) == 14  # train: sources + targets; test: sources only
    samples = {s.source_path: s for s in load_split(test_dir)}
    for line in test_lines:
        assert set(line) == {"image", "caption"}
        assert samples[(test_dir / line["image"]).resolve()].source_caption == line["caption"]
    for line in train_lines:
        assert (train_dir / line["image"]).is_file() and line["caption"]


def test_imagefolder_views_for_training(folders):
    _, train_dir, _ = folders
    captions = [json.loads(x) for x in (train_dir / "captions.jsonl").read_text().splitlines()]
    t2i = [json.loads(x) for x in (train_dir / "t2i" / "metadata.jsonl").read_text().splitlines()]
    assert [(train_dir / "t2i" / r["file_name"]).resolve() for r in t2i] == [
        (train_dir / c["image"]).resolve() for c in captions
    ]
    assert [r["text"] for r in t2i] == [c["caption"] for c in captions]
    samples = load_split(train_dir)
    edit = [json.loads(x) for x in (train_dir / "edit" / "metadata.jsonl").read_text().splitlines()]
    assert len(edit) == len(samples)
    for row, s in zip(edit, samples, strict=True):
        assert set(row) == {"input_image", "edit_prompt", "edited_image", "mask"}
        assert row["edit_prompt"] == s.instruction
        base = train_dir / "edit"
        assert [(base / row[k]).resolve() for k in ("input_image", "edited_image", "mask")] == [
            s.source_path,
            s.target_path,
            s.mask_path,
        ]


def test_refuses_to_overwrite_unless_asked(folders, tmp_path):
    root, _, _ = folders
    with pytest.raises(DatasetError, match="not empty"):
        generate_dataset(root, "train", 2, seed=0)
    foreign = tmp_path / "train"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="did not write"):
        generate_dataset(tmp_path, "train", 2, seed=0, overwrite=True)
    assert (foreign / "notes.txt").is_file()


def test_overwrite_replaces_our_own_folder(tmp_path):
    generate_dataset(tmp_path, "train", 3, seed=0)
    out = generate_dataset(tmp_path, "train", 2, seed=1, overwrite=True)
    assert [s.id for s in load_split(out)] == ["train_1_000000", "train_1_000001"]
    assert len(list((out / "images").iterdir())) == 2


def test_load_split_errors_name_the_problem(folders, tmp_path):
    root, train_dir, _ = folders
    with pytest.raises(DatasetError, match="did you mean"):
        load_split(root)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.jsonl").write_text("{not json\n")
    with pytest.raises(DatasetError, match="line 1 is not valid JSON"):
        load_split(broken)
    record = json.loads((train_dir / "manifest.jsonl").read_text().splitlines()[1])
    for key in ("source", "target", "mask"):  # absolute paths to the real files: a valid record elsewhere
        record[key] = str((train_dir / record[key]).resolve())
    (broken / "manifest.jsonl").write_text(json.dumps(record) + "\n")
    assert [s.id for s in load_split(broken)] == [record["id"]]
    missing = {**record, "source": str(broken / "nowhere.png")}
    (broken / "manifest.jsonl").write_text(json.dumps(missing) + "\n")
    with pytest.raises(DatasetError, match=f"{record['id']}.*nowhere.png"):
        load_split(broken)
    incomplete = {k: v for k, v in record.items() if k != "instruction"}
    (broken / "manifest.jsonl").write_text(json.dumps(incomplete) + "\n")
    with pytest.raises(DatasetError, match="instruction"):
        load_split(broken)
    inconsistent = {**record, "target_scene": record["source_scene"]}
    (broken / "manifest.jsonl").write_text(json.dumps(inconsistent) + "\n")
    with pytest.raises(DatasetError, match="edit applied"):
        load_split(broken)


def test_read_magicbrush_requires_sessions(tmp_path):
    with pytest.raises(DatasetError, match="edit_sessions.json"):
        read_magicbrush(tmp_path)


def test_parallel_rendering_writes_the_same_files(tmp_path):
    serial = generate_dataset(tmp_path / "serial", "train", 12, seed=5)
    parallel = generate_dataset(tmp_path / "parallel", "train", 12, seed=5, workers=2)
    files = sorted(p.relative_to(serial) for p in serial.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(parallel) for p in parallel.rglob("*") if p.is_file())
    assert len(files) > 36
    for name in files:
        assert (serial / name).read_bytes() == (parallel / name).read_bytes(), name
    with pytest.raises(InvalidRequestError, match="workers"):
        generate_dataset(tmp_path / "serial", "train", 2, workers=0, overwrite=True)
    assert (serial / "manifest.jsonl").is_file()  # the refused call replaced nothing


def test_paraphrased_training_split_records_it_and_writes_its_wordings(tmp_path):
    out = generate_dataset(tmp_path, "train", 14, seed=3, paraphrases=True)
    assert json.loads((out / "dataset.json").read_text())["paraphrases"] is True
    written = [json.loads(line)["edit_prompt"] for line in (out / "edit" / "metadata.jsonl").read_text().splitlines()]
    assert written == [s.instruction for s in generate_samples("train", 14, seed=3, paraphrases=True)]
    with pytest.raises(InvalidRequestError, match="test split"):
        generate_dataset(tmp_path, "test", 2, seed=3, paraphrases=True)
    assert not (tmp_path / "test").exists()


@pytest.mark.parametrize("bad", [{"seed": -1}, {"size": 4}, {"heldout_fraction": 2.0}, {"edit_types": ["rotate"]}])
def test_bad_arguments_are_refused_before_an_existing_split_is_replaced(tmp_path, bad):
    out = generate_dataset(tmp_path, "train", 2, seed=0)
    before = (out / "manifest.jsonl").read_text()
    with pytest.raises(InvalidRequestError):
        generate_dataset(tmp_path, "train", 2, overwrite=True, **{"seed": 1, **bad})
    assert (out / "manifest.jsonl").read_text() == before


# --- interrupted runs ---------------------------------------------------------------------------------------

# `instructedit domain generate ARGS...` that kills itself with SIGKILL (kill -9: no cleanup code runs) when it
# is about to render sample number AFTER.
KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from instructedit.domain import dataset
    from instructedit.domain.cli import app

    render, rendered = dataset._write_sample, []

    def render_then_die(sample, root):
        if len(rendered) == int(sys.argv[1]):
            os.kill(os.getpid(), signal.SIGKILL)
        rendered.append(sample.id)
        return render(sample, root)

    dataset._write_sample = render_then_die
    app(sys.argv[2:], prog_name="instructedit domain generate")
    """
)


def _killed_generate(after: int, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, str(after), *args], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr


def _generate(*args: str):
    return CliRunner().invoke(domain_app, list(args))


def _ids(split_dir):
    return [s.id for s in load_split(split_dir)]


needs_sigkill = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")


@needs_sigkill
def test_a_run_killed_mid_way_leaves_no_split_and_the_same_command_then_finishes(tmp_path):
    out = tmp_path / "domain"
    _killed_generate(20, str(out), "--num-samples", "60")  # kill -9 at 20 of 60 samples
    assert not (out / "train").exists()  # nothing half-written where the split goes
    (leftover,) = out.iterdir()
    assert leftover.name.startswith(".") and len(list((leftover / "images").iterdir())) == 20

    rerun = _generate(str(out), "--num-samples", "60")  # the same command, no --overwrite needed
    assert rerun.exit_code == 0, rerun.output
    assert sorted(p.name for p in out.iterdir()) == ["train"]  # the leftover is gone
    assert _ids(out / "train") == [s.id for s in generate_samples("train", 60)]
    assert len(list((out / "train" / "images").iterdir())) == 60

    again = _generate(str(out), "--num-samples", "60")  # a finished split is still protected
    assert again.exit_code == 2
    assert "not empty; pass overwrite=True" in again.output and "(on the command line: --overwrite)" in again.output


@needs_sigkill
def test_an_overwrite_killed_mid_way_keeps_the_previous_split_and_the_rerun_replaces_it(tmp_path):
    generate_dataset(tmp_path, "train", 3, seed=0)
    _killed_generate(4, str(tmp_path), "--num-samples", "8", "--seed", "1", "--overwrite")
    assert _ids(tmp_path / "train") == ["train_0_000000", "train_0_000001", "train_0_000002"]

    rerun = _generate(str(tmp_path), "--num-samples", "8", "--seed", "1", "--overwrite")
    assert rerun.exit_code == 0, rerun.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]
    assert _ids(tmp_path / "train") == [s.id for s in generate_samples("train", 8, seed=1)]


def test_an_error_mid_way_removes_what_the_run_wrote(tmp_path, monkeypatch):
    render = dataset._write_sample

    def fail_on_the_third(sample, root):
        if sample.id.endswith("002"):
            raise KeyboardInterrupt  # Ctrl-C
        return render(sample, root)

    monkeypatch.setattr(dataset, "_write_sample", fail_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path, "train", 5)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(dataset, "_write_sample", render)
    assert _ids(generate_dataset(tmp_path, "train", 5)) == [s.id for s in generate_samples("train", 5)]


def _unfinished_old_style_run(out, count: int = 2):
    """What an interrupted run of the non-atomic generator left: OUT/train/images/ with some samples (the last
    one half-written), and no manifest or dataset.json."""
    finished = generate_dataset(out / "scratch", "train", count + 1)
    (out / "train" / "images").mkdir(parents=True)
    for sample_dir in sorted((finished / "images").iterdir())[:count]:
        shutil.copytree(sample_dir, out / "train" / "images" / sample_dir.name)
    last = sorted((finished / "images").iterdir())[count]
    (out / "train" / "images" / last.name).mkdir()
    (out / "train" / "images" / last.name / f"{last.name}-input.png").write_bytes(b"\x89PNG\r\n")  # truncated
    shutil.rmtree(out / "scratch")
    return out / "train"


def test_overwrite_replaces_the_unfinished_output_of_an_old_interrupted_run(tmp_path):
    split_dir = _unfinished_old_style_run(tmp_path)
    with pytest.raises(DatasetError, match="not empty .*unfinished run.*pass overwrite=True") as refused:
        generate_dataset(tmp_path, "train", 4)
    assert refused.value.field == "overwrite" and refused.value.suggest == {"overwrite": True}
    assert _ids(generate_dataset(tmp_path, "train", 4, overwrite=True)) == [s.id for s in generate_samples("train", 4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"] and split_dir.is_dir()


@pytest.mark.parametrize(
    ("added", "named"),
    [("notes.txt",) * 2, ("images/notes.txt",) * 2, ("images/train_0_000000/edited.png",) * 2, ("mine/a.png", "mine")],
)
def test_overwrite_still_refuses_a_folder_holding_files_it_did_not_write(tmp_path, added, named):
    unfinished = _unfinished_old_style_run(tmp_path / "unfinished")
    for split_dir in (unfinished, generate_dataset(tmp_path / "done", "train", 2)):
        (split_dir / added).parent.mkdir(parents=True, exist_ok=True)
        (split_dir / added).write_text("mine")
        for overwrite in (False, True):
            with pytest.raises(DatasetError, match=f"did not write \\(such as {named}\\)") as refused:
                generate_dataset(split_dir.parent, "train", 2, overwrite=overwrite)
            assert refused.value.field == "out_dir"
        assert (split_dir / added).read_text() == "mine"


def test_a_leftover_holding_foreign_files_is_not_deleted(tmp_path):
    leftover = tmp_path / ".train.partial"
    leftover.mkdir()
    (leftover / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="in the way"):
        generate_dataset(tmp_path, "train", 2)
    assert (leftover / "notes.txt").read_text() == "mine" and not (tmp_path / "train").exists()


def test_cli_errors_name_the_command_line_spelling(tmp_path):
    refused = _generate(str(tmp_path), "--num-samples", "2", "--workers", "0")
    assert refused.exit_code == 2 and refused.output.startswith("error: workers must be")
    assert "(on the command line: --workers)" in refused.output
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "notes.txt").write_text("mine")
    foreign = _generate(str(tmp_path), "--num-samples", "2", "--overwrite")
    assert foreign.exit_code == 2 and "did not write" in foreign.output
    assert "(on the command line: OUT)" in foreign.output


def test_option_hint_spells_fields_and_suggestions_as_the_running_command_does():

    app = typer.Typer()
    raised = {}

    @app.command()
    def command(ctx: typer.Context, out: Path, use_ema: bool = True, batch_size: int = 2) -> None:
        raise fail(raised["error"], ctx, {"train_batch_size": "batch_size", "out_dir": "out"})

    expected = {
        "--no-use-ema": InvalidRequestError("x", field="use_ema", suggest={"use_ema": False}),
        "--use-ema": InvalidRequestError("x", suggest={"use_ema": True}),
        "--batch-size 4": InvalidRequestError("x", field="train_batch_size", suggest={"train_batch_size": 4}),
        "--batch-size": InvalidRequestError("x", field="train_batch_size"),
        "OUT": InvalidRequestError("x", field="out_dir"),
    }
    for hint, error in expected.items():
        raised["error"] = error
        result = CliRunner().invoke(app, ["folder"])
        assert result.exit_code == 2 and result.output == f"error: x (on the command line: {hint})\n", result.output
    raised["error"] = InvalidRequestError("x", field="not_an_option")
    assert CliRunner().invoke(app, ["folder"]).output == "error: x\n"
