"""Reference domain: dataset folders (manifest, MagicBrush layout, text-to-image captions) and readers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from instructedit.domain import generate_dataset, generate_samples, load_split, read_magicbrush
from instructedit.errors import DatasetError, InvalidRequestError


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
