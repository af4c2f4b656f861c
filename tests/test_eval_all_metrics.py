"""Every registered metric through the benchmark runner on tiny models, and the metric settings of the
benchmarks: PIE-Bench's LPIPS network, MagicBrush's local-description CLIP-T."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_eval_datasets import _pie_fixture, _pie_item, magicbrush  # noqa: F401  (fixture)
from test_eval_runner import SDEDIT, FakeEditor
from test_metrics_clip import tiny_clip  # noqa: F401  (fixture)
from test_metrics_dino import tiny_vit  # noqa: F401  (fixture)
from test_metrics_lpips import _random_heads, _torchvision_style_checkpoint

from instructedit.evaluation.datasets import load_dataset, read_domain
from instructedit.evaluation.metrics import lpips as lp
from instructedit.evaluation.metrics.clip import clip_text_similarity
from instructedit.evaluation.metrics.fid import InceptionFeatureExtractor
from instructedit.evaluation.results import RESULTS
from instructedit.evaluation.runner import BenchmarkConfig, run_benchmark
from instructedit.evaluation.scoring import BENCHMARK_METRIC_MODELS, GROUPS, METRICS, Scorer, ScoringInput
from instructedit.evaluation.set_metrics import SET_METRIC_NAMES, read_set_metrics


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / RESULTS).read_text().splitlines()]


def _lpips_weights(folder: Path, net: str) -> dict[str, str]:
    """Random LPIPS-``net`` weights saved as a user's local files: torchvision-style backbone, lpips heads."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(_torchvision_style_checkpoint(net, seed=1), folder / f"{net}.pth")
    _random_heads(net, folder / f"{net}-heads.pth")
    return {"lpips_backbone": str(folder / f"{net}.pth"), "lpips_heads": str(folder / f"{net}-heads.pth")}


def test_every_registered_metric_runs_through_the_runner(tmp_path, tiny_pipeline_dir, tiny_clip, tiny_vit,  # noqa: F811
                                                         judge_server):
    clip_folder, vit_folder = tiny_clip[0], tiny_vit[0]
    dataset = read_domain("test", num_samples=3)  # target, mask, captions, local descriptions and the oracle
    config = BenchmarkConfig(
        methods=["diffedit"],  # produces a mask: mask_iou applies
        params={"num_inference_steps": 3, "num_maps_per_mask": 2},
        models={"t2i": tiny_pipeline_dir("t2i")},
        metrics=["all", *SET_METRIC_NAMES],
        metric_models={"clip": clip_folder, "dino": vit_folder, "structure": vit_folder,
                       **_lpips_weights(tmp_path / "lpips", "alex")},  # fmt: skip
    )
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, stride=8), torch.nn.AdaptiveAvgPool2d(1))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        extractor = InceptionFeatureExtractor(network=network)
    from instructedit.evaluation.metrics.judge import VLMJudge

    judge = VLMJudge(f"http://127.0.0.1:{judge_server.server_address[1]}/v1", backoff=0)  # a local judge server
    summary = run_benchmark(dataset, config, tmp_path / "out", device="cpu", progress=False, parquet=False,
                            set_extractor=extractor, judge=judge)  # fmt: skip
    assert (summary.ok, summary.errors) == (3, 0)
    rows = _rows(tmp_path / "out")
    assert len(METRICS) == sum(len(names) for names in GROUPS.values()) >= 28
    for row in rows:
        assert "metric_errors" not in row, row["metric_errors"]
        assert set(row["metrics"]) == set(METRICS) | {"seconds_per_edit", "peak_memory_mb"}
        not_finite = {k: v for k, v in row["metrics"].items() if v is None or not math.isfinite(v)}
        assert not not_finite
    set_rows = read_set_metrics(tmp_path / "out")
    assert set_rows and all(math.isfinite(r[name]) for r in set_rows for name in ("fid", "kid"))


def test_piebench_runs_use_pie_bench_lpips_network(tmp_path) -> None:
    encoded = [200 * 512 + 100, 30]
    root = _pie_fixture(tmp_path / "data", {"000000000000": _pie_item("0_random_140/000000000000.jpg", "0", encoded)})
    dataset = load_dataset(f"piebench:{root}")
    squeeze = _lpips_weights(tmp_path / "w", "squeeze")
    config = BenchmarkConfig(methods=[SDEDIT], metrics="lpips_input", metric_models=squeeze)
    run_benchmark(dataset, config, tmp_path / "out", editor=FakeEditor(), progress=False, parquet=False)
    row = _rows(tmp_path / "out")[0]
    assert "metric_errors" not in row  # squeeze weights loaded: alex would refuse them
    run_info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_info["metric_models"]["lpips"] == "squeeze" == BENCHMARK_METRIC_MODELS["piebench"]["lpips"]
    model = lp.LPIPS.from_pretrained("squeeze", backbone_path=squeeze["lpips_backbone"],
                                     heads_path=squeeze["lpips_heads"])  # fmt: skip
    output = Image.open(tmp_path / "out" / row["output_image"]).convert("RGB")
    expected = lp.lpips_distance(output, dataset[0].source_image(), model=model)
    assert row["metrics"]["lpips_input"] == pytest.approx(expected, rel=1e-6)
    # other datasets keep the lpips package's default network; a given network wins over the benchmark's
    assert Scorer("lpips_input", dataset_kind="manifest").options.models == {}
    assert Scorer("lpips_input", dataset_kind="piebench", models={"lpips": "vgg"}).options.models == {"lpips": "vgg"}


def test_clip_t_reads_the_local_description_and_clip_t_global_the_caption(tmp_path, magicbrush, tiny_clip):  # noqa: F811
    folder = tiny_clip[0]
    dataset = load_dataset(str(magicbrush))
    config = BenchmarkConfig(methods=[SDEDIT], metrics="clip_t,clip_t_global",
                             metric_models={"clip": folder})  # fmt: skip
    run_benchmark(dataset, config, tmp_path / "out", editor=FakeEditor(), progress=False, parquet=False)
    rows = {r["sample_id"]: r for r in _rows(tmp_path / "out")}

    def similarity(sample_id: str, caption: str) -> float:
        output = Image.open(tmp_path / "out" / rows[sample_id]["output_image"]).convert("RGB")
        return clip_text_similarity([output], [caption], model=folder)[0]

    first = rows["111_1"]["metrics"]  # local description "a hat", global caption "a dog in a hat"
    assert first["clip_t"] == pytest.approx(similarity("111_1", "a hat"), abs=1e-6)
    assert first["clip_t_global"] == pytest.approx(similarity("111_1", "a dog in a hat"), abs=1e-6)
    assert abs(first["clip_t"] - first["clip_t_global"]) > 1e-4  # the two texts really give different values
    second = rows["111_2"]["metrics"]  # no local description for this turn: the target caption
    assert second["clip_t"] == second["clip_t_global"] == pytest.approx(similarity("111_2", "a dog in a red hat"),
                                                                         abs=1e-6)  # fmt: skip


def test_zero_one_masks_score_like_zero_255_masks() -> None:
    """A 0/1 ``L`` mask (PIE-Bench's decoded masks as an image) scores as its 0/255 twin, mask IoU included."""
    rng = np.random.default_rng(0)
    source, output = (Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(2))
    box = np.zeros((16, 16), dtype=np.uint8)
    box[4:12, 2:9] = 1
    guess = np.zeros((16, 16), dtype=np.uint8)
    guess[4:12, 5:9] = 1  # 32 of the box's 56 pixels

    def scores(scale: int) -> dict:
        item = ScoringInput(output=output, source=source, mask=Image.fromarray(box * scale),
                            produced_mask=Image.fromarray(guess * scale))  # fmt: skip
        return Scorer("pixel,mask").score(item)

    zero_one, zero_255 = scores(1), scores(255)
    assert zero_one == zero_255
    assert zero_one["mask_iou"] == pytest.approx(32 / 56)
    assert zero_one["psnr_input_unedited"] != pytest.approx(zero_one["psnr_input"])
