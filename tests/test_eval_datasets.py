"""Benchmark dataset readers on small fixtures built in tmp: MagicBrush, PIE-Bench, manifests, folders, domain."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instructedit.errors import DatasetError
from instructedit.evaluation.datasets import (
    PIE_EDIT_TYPES,
    decode_pie_mask,
    detect_kind,
    encode_pie_mask,
    load_dataset,
    read_domain,
    read_folder,
    read_magicbrush,
    read_manifest,
    read_piebench,
)


def _image(path: Path, seed: int, size: tuple[int, int] = (16, 16)) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def _rgba_mask(path: Path, hole: tuple[slice, slice], size: tuple[int, int] = (16, 16)) -> None:
    """A MagicBrush-style mask: an opaque copy of the image with the edit region transparent."""
    rgba = np.full((size[1], size[0], 4), 200, dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[hole[0], hole[1], 3] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba, "RGBA").save(path)


# --------------------------------------------------------------------------------------------- MagicBrush
@pytest.fixture()
def magicbrush(tmp_path: Path) -> Path:
    split = tmp_path / "mb" / "test"
    sessions = {
        "111": [
            {"input": "111-input.png", "mask": "111-mask1.png", "output": "111-output1.png",
             "instruction": "put a hat on the dog"},
            {"input": "111-output1.png", "mask": "111-mask2.png", "output": "111-output2.png",
             "instruction": "make the hat red"},
        ],
        "222": [
            {"input": "222-input.png", "mask": "222-mask1.png", "output": "222-output1.png",
             "instruction": "remove the cup"},
        ],
    }  # fmt: skip
    for seed, name in enumerate(["111-input", "111-output1", "111-output2", "222-input", "222-output1"]):
        _image(split / "images" / name.split("-")[0] / f"{name}.png", seed)
    _rgba_mask(split / "images/111/111-mask1.png", (slice(2, 6), slice(3, 9)))
    _rgba_mask(split / "images/111/111-mask2.png", (slice(0, 4), slice(0, 4)))
    _rgba_mask(split / "images/222/222-mask1.png", (slice(0, 8), slice(8, 16)), size=(32, 32))  # other resolution
    (split / "edit_sessions.json").write_text(json.dumps(sessions))
    (split / "global_descriptions.json").write_text(json.dumps({
        "111": {"111-input.png": "a dog", "111-output1.png": "a dog in a hat", "111-output2.png": "a dog in a red hat"},
        "222": {"222-input.png": "a cup on a table", "222-output1.png": "a table"},
    }))  # fmt: skip
    (split / "local_descriptions.json").write_text(json.dumps({"111": {"111-output1.png": "a hat"}}))
    return tmp_path / "mb"


def test_magicbrush_turns_captions_and_masks(magicbrush: Path) -> None:
    dataset = read_magicbrush(magicbrush)  # the parent of test/ is accepted
    assert dataset.kind == "magicbrush" and [s.id for s in dataset] == ["111_1", "111_2", "222_1"]
    first, second, single = dataset
    assert (first.turn, first.num_turns, first.session_id, first.is_final_turn) == (1, 2, "111", False)
    assert (second.turn, second.is_final_turn) == (2, True) and single.is_final_turn
    assert second.instruction == "make the hat red"
    assert (first.source_caption, first.target_caption) == ("a dog", "a dog in a hat")
    assert first.extra["local_description"] == "a hat" and "local_description" not in second.extra
    # turn 2 starts from the ground truth of turn 1
    assert np.array_equal(np.asarray(second.source_image()), np.asarray(first.target_image()))
    expected = np.zeros((16, 16), dtype=np.uint8)
    expected[2:6, 3:9] = 255
    assert np.array_equal(np.asarray(first.mask_image()), expected)  # transparent = edit
    resized = np.asarray(single.mask_image())  # 32x32 mask resized (nearest) to the 16x16 image
    expected = np.zeros((16, 16), dtype=np.uint8)
    expected[0:4, 4:8] = 255
    assert resized.shape == (16, 16) and np.array_equal(resized, expected)


def test_magicbrush_malformed_annotations_name_the_sample(magicbrush: Path) -> None:
    sessions_path = magicbrush / "test" / "edit_sessions.json"
    sessions = json.loads(sessions_path.read_text())
    del sessions["222"][0]["instruction"]
    sessions_path.write_text(json.dumps(sessions))
    with pytest.raises(DatasetError, match="sample '222_1'.*instruction"):
        read_magicbrush(magicbrush)
    sessions["222"][0]["instruction"] = "remove the cup"
    sessions["222"][0]["output"] = "222-output9.png"
    sessions_path.write_text(json.dumps(sessions))
    with pytest.raises(DatasetError, match="sample '222_1'.*222-output9.png.*missing"):
        read_magicbrush(magicbrush)
    sessions_path.write_text("{not json")
    with pytest.raises(DatasetError, match="edit_sessions.json.*not valid JSON"):
        read_magicbrush(magicbrush)


def test_magicbrush_target_of_another_size_names_the_sample(magicbrush: Path) -> None:
    _image(magicbrush / "test/images/222/222-output1.png", 9, size=(20, 16))
    sample = read_magicbrush(magicbrush)[2]
    with pytest.raises(DatasetError, match="sample '222_1': target image .* is 20x16 but the source is 16x16"):
        sample.load()


def test_magicbrush_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")

    def png(array: np.ndarray, mode: str | None = None) -> dict:
        buffer = io.BytesIO()
        Image.fromarray(array, mode).save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": None}

    rng = np.random.default_rng(0)
    source, target = (rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(2))
    mask = np.full((8, 8, 4), 255, dtype=np.uint8)
    mask[:4, :, 3] = 0
    table = pa.table({
        "img_id": ["7", "7"], "turn_index": [1, 2], "instruction": ["add a sun", "make it night"],
        "source_img": [png(source), png(target)], "target_img": [png(target), png(source)],
        "mask_img": [png(mask, "RGBA"), png(mask, "RGBA")],
    })  # fmt: skip
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "dev-00000-of-00001.parquet")
    assert detect_kind(tmp_path) == "magicbrush"
    dataset = read_magicbrush(tmp_path, split="dev")
    assert [(s.id, s.turn, s.num_turns) for s in dataset] == [("7_1", 1, 2), ("7_2", 2, 2)]
    loaded = dataset[0].load()
    assert np.array_equal(np.asarray(loaded.source), source) and np.array_equal(np.asarray(loaded.target), target)
    assert np.asarray(loaded.mask)[:4].min() == 255 and np.asarray(loaded.mask)[4:].max() == 0


# --------------------------------------------------------------------------------------------- PIE-Bench
def _pnp_reference_decode(encoded: list[int], shape=(512, 512)) -> np.ndarray:
    """PIE-Bench's mask_decode, written out as its loop (evaluation/evaluate.py of cure-lab/PnPInversion)."""
    length = shape[0] * shape[1]
    flat = np.zeros(length)
    for i in range(0, len(encoded), 2):
        for j in range(min(encoded[i + 1], length - encoded[i])):
            flat[encoded[i] + j] = 1
    mask = flat.reshape(shape)
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = 1
    return mask


def test_pie_rle_decodes_exactly() -> None:
    # Rows 100-101, columns 10-19, encoded by hand: start = row * 512 + column, length = 10.
    encoded = [100 * 512 + 10, 10, 101 * 512 + 10, 10, 512 * 512 - 3, 50]  # the last run overflows the end
    expected = np.zeros((512, 512), dtype=np.uint8)
    expected[100:102, 10:20] = 1
    expected[511, 509:] = 1
    assert np.array_equal(decode_pie_mask(encoded, border=False), expected)
    expected[0, :] = expected[-1, :] = expected[:, 0] = expected[:, -1] = 1  # PIE-Bench's border rule
    decoded = decode_pie_mask(encoded)
    assert np.array_equal(decoded, expected)
    assert np.array_equal(decoded, _pnp_reference_decode(encoded))
    rng = np.random.default_rng(1)
    blob = rng.random((512, 512)) > 0.7
    assert np.array_equal(decode_pie_mask(encode_pie_mask(blob), border=False), blob.astype(np.uint8))


def _pie_fixture(root: Path, items: dict) -> Path:
    for item in items.values():
        _image(root / "annotation_images" / item["image_path"], 3, size=(512, 512))
    (root / "mapping_file.json").write_text(json.dumps(items))
    return root


def _pie_item(path: str, type_id: str | None, mask: list[int]) -> dict:
    item = {
        "image_path": path, "original_prompt": "a [white] cat on a sofa", "editing_prompt": "a [black] cat on a sofa",
        "editing_instruction": "Make the cat black", "blended_word": "cat cat", "mask": mask,
    }  # fmt: skip
    if type_id is not None:
        item["editing_type_id"] = type_id
    return item


def test_piebench_reader(tmp_path: Path) -> None:
    encoded = [200 * 512 + 100, 30]
    root = _pie_fixture(tmp_path / "data", {
        "000000000000": _pie_item("0_random_140/000000000000.jpg", "0", encoded),
        "612000000003": _pie_item("6_change_attribute_color_40/1_artificial/000.jpg", None, encoded),
    })  # fmt: skip
    assert detect_kind(root) == "piebench"
    dataset = load_dataset(f"piebench:{root}")
    first, second = dataset
    assert (first.edit_type, second.edit_type) == (PIE_EDIT_TYPES["0"], "change color")  # id prefix 6 -> colour
    assert first.source_caption == "a white cat on a sofa" and first.target_caption == "a black cat on a sofa"
    assert first.instruction == "Make the cat black" and first.extra["blended_word"] == ["cat", "cat"]
    assert first.target is None
    mask = np.asarray(first.mask_image()) // 255
    assert np.array_equal(mask, decode_pie_mask(encoded)) and mask[200, 100:130].all() and mask[200, 131] == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mask": [5, 3, 9]}, "odd number"),
        ({"mask": [512 * 512, 1]}, "beyond"),
        ({"mask": [1, -2]}, "negative"),
        ({"editing_type_id": "12"}, "editing_type_id"),
        ({"image_path": "0_random_140/missing.jpg"}, "missing"),
        ({"editing_prompt": None, "editing_instruction": None}, "neither"),
    ],
)
def test_piebench_malformed_names_the_sample(tmp_path: Path, change: dict, message: str) -> None:
    root = _pie_fixture(tmp_path, {"000000000007": _pie_item("0_random_140/000000000007.jpg", "0", [0, 1])})
    items = json.loads((root / "mapping_file.json").read_text())
    items["000000000007"].update(change)
    (root / "mapping_file.json").write_text(json.dumps(items))
    with pytest.raises(DatasetError, match=f"sample '000000000007'.*{message}"):
        read_piebench(root)


def test_piebench_image_of_another_size_fails_at_load(tmp_path: Path) -> None:
    root = _pie_fixture(tmp_path, {"000000000001": _pie_item("0_random_140/000000000001.jpg", "0", [0, 4])})
    _image(root / "annotation_images/0_random_140/000000000001.jpg", 4, size=(256, 256))
    with pytest.raises(DatasetError, match="sample '000000000001': mask .* is 512x512 but the source is 256x256"):
        read_piebench(root)[0].load()


# --------------------------------------------------------------------------------------------- manifest
def test_manifest_reader(tmp_path: Path) -> None:
    source = _image(tmp_path / "imgs/a.png", 0)
    _image(tmp_path / "imgs/a_gt.png", 1)
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:8, 4:8] = 255
    Image.fromarray(mask).save(tmp_path / "imgs/a_mask.png")
    _image(tmp_path / "imgs/b.png", 2)
    lines = [
        {"id": "a", "image": "imgs/a.png", "instruction": "make it blue", "source": "a red cube",
         "target": "a blue cube", "target_image": "imgs/a_gt.png", "mask": "imgs/a_mask.png", "edit_type": "colour",
         "difficulty": "easy"},
        {"image": "imgs/b.png", "target_caption": "a tree"},
    ]  # fmt: skip
    manifest = tmp_path / "requests.jsonl"
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    assert detect_kind(manifest) == "manifest"
    dataset = load_dataset(str(manifest))
    a, b = dataset
    assert (a.id, b.id) == ("a", "line2")
    assert (a.source_caption, a.target_caption, a.edit_type, a.extra) == (
        "a red cube",
        "a blue cube",
        "colour",
        {"difficulty": "easy"},
    )
    loaded = a.load()
    assert np.array_equal(np.asarray(loaded.source), source) and np.array_equal(np.asarray(loaded.mask), mask)
    assert b.instruction is None and b.target is None and b.mask is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"id": "x1", "instruction": "do it"}, "sample 'x1': no 'image'"),
        ({"id": "x2", "image": "nope.png", "instruction": "do it"}, "sample 'x2': image file .* does not exist"),
        ({"id": "x3", "image": "ok.png"}, "sample 'x3': give an 'instruction' or a 'target_caption'"),
        ({"id": "x4", "image": "ok.png", "instruction": 5}, "sample 'x4': field 'instruction' must be a string"),
        ({"image": "ok.png", "instruction": "a", "mask": "gone.png"}, "sample 'line1': mask file"),
        ({"id": "x6", "image": "ok.png", "instruction": "a", "turn": 3, "num_turns": 2}, "sample 'x6': 'turn'"),
    ],
)
def test_manifest_malformed_names_the_sample(tmp_path: Path, line: dict, message: str) -> None:
    _image(tmp_path / "ok.png", 0)
    (tmp_path / "m.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(DatasetError, match=message):
        read_manifest(tmp_path / "m.jsonl")


def test_manifest_bad_json_and_duplicates(tmp_path: Path) -> None:
    _image(tmp_path / "ok.png", 0)
    good = json.dumps({"id": "s", "image": "ok.png", "instruction": "x"})
    (tmp_path / "m.jsonl").write_text(good + "\n{broken\n")
    with pytest.raises(DatasetError, match="line 2 is not valid JSON"):
        read_manifest(tmp_path / "m.jsonl")
    (tmp_path / "m.jsonl").write_text(good + "\n" + good + "\n")
    with pytest.raises(DatasetError, match="sample id 's' appears twice"):
        read_manifest(tmp_path / "m.jsonl")


def test_images_are_read_lazily_and_errors_name_the_sample(tmp_path: Path) -> None:
    _image(tmp_path / "ok.png", 0)
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "late", "image": "ok.png", "instruction": "x"}) + "\n")
    dataset = read_manifest(tmp_path / "m.jsonl")
    (tmp_path / "ok.png").write_bytes(b"not a png any more")  # damaged after indexing: noticed only when read
    with pytest.raises(DatasetError, match="sample 'late': source image .* is unusable"):
        dataset[0].source_image()


def test_folder_reader_sidecars(tmp_path: Path) -> None:
    _image(tmp_path / "cat.png", 0)
    (tmp_path / "cat.txt").write_text("make the cat orange\n")
    Image.fromarray(np.full((16, 16), 255, dtype=np.uint8)).save(tmp_path / "cat.mask.png")
    _image(tmp_path / "dog.jpg", 1)
    (tmp_path / "dog.json").write_text(json.dumps({"source_caption": "a dog", "target_caption": "a wolf"}))
    _image(tmp_path / "dog.target.png", 2)
    dataset = load_dataset(str(tmp_path))
    assert dataset.kind == "folder" and [s.id for s in dataset] == ["cat", "dog"]
    cat, dog = dataset
    assert cat.instruction == "make the cat orange" and cat.mask is not None and cat.target is None
    assert dog.target_caption == "a wolf" and dog.target is not None and dog.instruction is None
    _image(tmp_path / "bird.png", 3)
    with pytest.raises(DatasetError, match="sample 'bird': no 'bird.txt' or 'bird.json'"):
        read_folder(tmp_path)
    assert read_folder(tmp_path, instruction="add a hat")[0].instruction == "add a hat"


def test_select_filters(magicbrush: Path) -> None:
    dataset = read_magicbrush(magicbrush)
    assert [s.id for s in dataset.select(final_turn_only=True)] == ["111_2", "222_1"]
    assert [s.id for s in dataset.select(limit=1)] == ["111_1"]
    with pytest.raises(DatasetError, match="unknown edit types"):
        dataset.select(edit_types=["colour"])
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(str(magicbrush / "nowhere"))


# --------------------------------------------------------------------------------------------- domain
def test_domain_adapter_and_oracle() -> None:
    from instructedit.evaluation.datasets.domain import oracle_scores

    dataset = read_domain("test", num_samples=3)
    assert dataset.kind == "domain" and len(dataset) == 3 and all(s.edit_type for s in dataset)
    sample = dataset[0]
    loaded = sample.load()
    truth = sample.extra["domain_sample"]
    assert np.array_equal(np.asarray(loaded.target), np.asarray(truth.target_image()))
    assert np.array_equal(np.asarray(loaded.mask) > 0, truth.mask_array())
    on_target, on_source = oracle_scores(truth, loaded.target), oracle_scores(truth, loaded.source)
    assert on_target["edit_applied"] == 1.0 and on_source["edit_applied"] == 0.0
    assert on_source["preservation_l1"] == 0.0 and on_source["preservation_psnr"] is None  # identical: inf -> None


def test_domain_folder(tmp_path: Path) -> None:
    from instructedit.domain.dataset import generate_dataset

    folder = generate_dataset(tmp_path, "test", 2, seed=3, size=32)
    dataset = load_dataset(f"domain:{tmp_path}")
    assert [s.id for s in dataset] == [s.id for s in read_domain("test", num_samples=2, seed=3, size=32)]
    assert dataset.root == str(folder) and dataset[0].source.path is not None


def test_generated_domain_split_given_as_a_plain_path_is_read_as_domain(tmp_path: Path) -> None:
    from test_eval_runner import SDEDIT, FakeEditor

    from instructedit.domain.dataset import generate_dataset
    from instructedit.evaluation.runner import BenchmarkConfig, run_benchmark

    folder = generate_dataset(tmp_path, "test", 2, seed=3, size=32)
    assert (folder / "edit_sessions.json").is_file()  # it also carries MagicBrush's index files
    expected = [s.id for s in read_domain("test", num_samples=2, seed=3, size=32)]
    for spec in (str(folder), str(tmp_path)):  # the split folder, or the folder holding it
        assert detect_kind(Path(spec)) == "domain"
        dataset = load_dataset(spec)
        assert dataset.kind == "domain" and [s.id for s in dataset] == expected and dataset.root == str(folder)
    run_benchmark(load_dataset(str(folder)), BenchmarkConfig(methods=[SDEDIT]), tmp_path / "out",
                  editor=FakeEditor(), progress=False, parquet=False)  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert all({"oracle_edit_applied", "oracle_preservation_l1"} <= set(r["metrics"]) for r in rows)
    train = generate_dataset(tmp_path, "train", 3, seed=3, size=32)
    assert load_dataset(str(tmp_path))[0].id == expected[0]  # several splits: test by default
    assert [s.id for s in load_dataset(str(tmp_path), split="train")] == [
        s.id for s in load_dataset(f"domain:{train}")
    ]
    (folder / "dataset.json").write_text(json.dumps({"generator": "someone else"}))
    assert detect_kind(folder) == "magicbrush"  # not ours: the MagicBrush layout it carries
