"""scripts/ship_builtin_models.py measures the shipped models with the defaults of the card it writes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ship_builtin_models.py"


@pytest.fixture()
def ship(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("ship_builtin_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for kind in ("t2i", "ip2p"):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "instructedit.json").write_text(json.dumps(
            {"defaults": {"ip2p": {"guidance_scale": 5.0}}, "metrics": {"stale": True}}))
    seen = []

    def measure(argv):  # stands in for builtin_quality.main: records the defaults the editor would read
        folder = Path(argv[argv.index("--ip2p") + 1])
        seen.append(json.loads((folder / "instructedit.json").read_text())["defaults"])
        return {"samples": int(argv[argv.index("--samples") + 1])}

    monkeypatch.setattr(module, "ASSETS", tmp_path)
    monkeypatch.setattr(module.builtin_quality, "main", measure)
    return module, tmp_path, seen


def test_metrics_are_measured_with_the_new_cards_defaults(ship):
    module, assets, seen = ship
    module.record({"defaults": {"ip2p": {"guidance_scale": 3.0}}}, 28)
    assert seen == [{"ip2p": {"guidance_scale": 3.0}}]
    for kind in ("t2i", "ip2p"):
        card = json.loads((assets / kind / "instructedit.json").read_text())
        assert card == {"defaults": {"ip2p": {"guidance_scale": 3.0}}, "metrics": {"samples": 28}}


def test_remeasure_rewrites_only_the_metrics(ship, monkeypatch):
    module, assets, seen = ship
    monkeypatch.setattr(sys, "argv", ["ship_builtin_models.py", "--remeasure", "--samples", "7"])
    module.main()
    assert seen == [{"ip2p": {"guidance_scale": 5.0}}]
    card = json.loads((assets / "ip2p" / "instructedit.json").read_text())
    assert card == {"defaults": {"ip2p": {"guidance_scale": 5.0}}, "metrics": {"samples": 7}}


def test_remeasure_refuses_a_training_run(ship, monkeypatch, capsys):
    module, _, _ = ship
    monkeypatch.setattr(sys, "argv", ["ship_builtin_models.py", "--remeasure", "--base-card", "card.json"])
    with pytest.raises(SystemExit):
        module.main()
    assert "--remeasure measures the shipped models" in capsys.readouterr().err


def test_a_text_to_image_continuation_is_appended_and_only_that_model_re_exported(ship, tmp_path):
    module, _, _ = ship
    run = tmp_path / "t2i_more"
    run.mkdir()
    (run / "loss_log.jsonl").write_text("".join(
        json.dumps({"step": step, "seconds": 0.4 * step, "loss": 0.1 / step}) + "\n" for step in (1, 2, 3)))
    base = tmp_path / "card.json"
    base.write_text(json.dumps({"training": {"text2image": {"steps": 6500}}, "metrics": {"stale": True}}))
    args = module.argparse.Namespace(base_card=base, ip2p_continued=[], continue_command=[],
                                     t2i_continued=[run], t2i_continue_command=["instructedit train text2image ..."])
    card, folders = module.continued_card(args)
    assert folders == {"t2i": run / "pipeline"}
    assert "metrics" not in card and card["training"]["text2image"] == {"steps": 6500}
    assert card["training"]["text2image_continued"] == [
        {"steps": 3, "seconds": 1.2, "final_loss": 0.1 / 3, "command": "instructedit train text2image ..."}]


def test_a_continued_run_without_a_pipeline_is_refused_before_anything_is_written(ship, tmp_path, monkeypatch, capsys):
    module, assets, seen = ship
    base = tmp_path / "card.json"
    base.write_text(json.dumps({"training": {}}))
    before = (assets / "t2i" / "instructedit.json").read_text()
    monkeypatch.setattr(sys, "argv", ["ship_builtin_models.py", "--base-card", str(base), "--t2i-continued",
                                      str(tmp_path / "missing"), "--t2i-continue-command", "..."])
    with pytest.raises(SystemExit):
        module.main()
    assert "holds no pipeline/model_index.json" in capsys.readouterr().err
    assert seen == [] and (assets / "t2i" / "instructedit.json").read_text() == before


def test_a_continuation_trained_elsewhere_records_its_machine(ship, tmp_path):
    module, _, _ = ship
    run = tmp_path / "t2i_gpu"
    run.mkdir()
    (run / "loss_log.jsonl").write_text(json.dumps({"step": 5, "seconds": 2.0, "loss": 0.01}) + "\n")
    (run / "device_run.json").write_text(json.dumps({"machine": "NVIDIA H200, torch 2.11.0+cu130", "steps": 5}))
    assert module.continuations([run], ["instructedit train text2image ..."]) == [
        {"steps": 5, "seconds": 2.0, "final_loss": 0.01, "machine": "NVIDIA H200, torch 2.11.0+cu130",
         "command": "instructedit train text2image ..."}]
