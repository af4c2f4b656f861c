"""The recipe of the built-in models: generate the reference domain's training split, then train the VAE, the
text-to-image model and the InstructPix2Pix model, each stage reading the previous stage's output.

    OUT/data/train/{t2i,edit}/metadata.jsonl   OUT/data/test/...   (instructedit.domain)
    OUT/vae/vae                                AutoencoderKL (+ OUT/vae/vae_metrics.json)
    OUT/text2image/pipeline                    StableDiffusionPipeline
    OUT/ip2p/pipeline                          StableDiffusionInstructPix2PixPipeline

Every stage checkpoints into its own folder, so rerunning with ``resume=True`` continues where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import InvalidRequestError
from .diffusion_task import InstructPix2PixSettings, InstructPix2PixTask, Text2ImageSettings, Text2ImageTask
from .loop import TrainingConfig, TrainingResult, save_from_checkpoint, train
from .vae_trainer import VAESettings, VAETask


@dataclass
class RecipeSettings:
    """Sizes and schedules of the built-in models (defaults: the committed models' recipe)."""

    output_dir: Path
    train_samples: int = 20000
    test_samples: int = 500
    resolution: int = 64
    seed: int = 0
    batch_size: int = 32
    vae_channels: tuple[int, ...] = (32, 64, 64)
    unet_channels: tuple[int, ...] = (32, 64, 64)
    text_hidden_size: int = 128
    text_layers: int = 4
    vae_steps: int = 4000
    vae_batch_size: int = 8
    vae_learning_rate: float = 5e-4
    vae_crop_size: int | None = None
    vae_norm_groups: int = 1  # one group keeps absolute colour through the norms (flat-colour scenes)
    text2image_steps: int = 6500
    text2image_learning_rate: float = 3e-4
    ip2p_steps: int = 3000
    ip2p_learning_rate: float = 2e-4
    text_encoder: str = "minilm"
    max_text_length: int = 40
    # v-prediction: at high noise the UNet predicts the clean latent directly, where an epsilon model amplifies
    # its errors by 1/sqrt(alpha_bar) (measured: wrong global colours from the epsilon-trained built-in model)
    prediction_type: str = "v_prediction"
    snr_gamma: float | None = 5.0
    use_ema: bool = True
    ema_decay: float = 0.999
    checkpointing_steps: int = 500
    save_dtype: str = "fp32"  # training outputs; `instructedit train export` makes the compact fp16 copies
    resume: bool = False
    progress_bar: bool = True


def domain_data(settings: RecipeSettings) -> dict[str, Path]:
    """Generate (or reuse) the domain's train and test splits under OUT/data; returns the split folders."""
    from ..domain import generate_dataset

    root = Path(settings.output_dir) / "data"
    folders = {}
    for split, count in (("train", settings.train_samples), ("test", settings.test_samples)):
        folder = root / split
        info = folder / "dataset.json"
        wanted = {"num_samples": count, "seed": settings.seed, "size": settings.resolution}
        if info.is_file() and {k: json.loads(info.read_text()).get(k) for k in wanted} == wanted:
            folders[split] = folder
        else:
            folders[split] = generate_dataset(
                root, split, count, seed=settings.seed, size=settings.resolution, overwrite=True
            )
    return folders


def vae_settings(settings: RecipeSettings, data: dict[str, Path]) -> VAESettings:
    """The recipe's VAE stage settings (``data``: the split folders of :func:`domain_data`)."""
    return VAESettings(
        data_dir=data["train"] / "t2i",
        resolution=settings.resolution,
        block_out_channels=settings.vae_channels,
        crop_size=settings.vae_crop_size,
        mid_block_attention=False,
        norm_num_groups=settings.vae_norm_groups,
        eval_data_dir=data["test"] / "t2i",
        save_dtype=settings.save_dtype,
    )


def restandardize_vae(settings: RecipeSettings, vae: str | Path) -> Path:
    """Finish an already trained VAE (e.g. one saved before latent standardisation existed) exactly as the VAE
    stage finishes its own — standardised latents, scaling factor, metrics — into OUT/vae."""
    from .vae_trainer import load_vae, save_vae

    stage = vae_settings(settings, domain_data(settings))
    return save_vae(load_vae(str(vae)), VAETask(stage).dataset(), stage, Path(settings.output_dir) / "vae")


def _config(
    settings: RecipeSettings, stage: str, steps: int, learning_rate: float, ema: bool, batch_size: int | None = None
) -> TrainingConfig:
    return TrainingConfig(
        output_dir=Path(settings.output_dir) / stage,
        max_train_steps=steps,
        train_batch_size=batch_size or settings.batch_size,
        learning_rate=learning_rate,
        lr_scheduler="cosine",
        lr_warmup_steps=min(500, steps // 10),
        seed=settings.seed,
        checkpointing_steps=settings.checkpointing_steps,
        resume=settings.resume,
        use_ema=ema,
        ema_decay=settings.ema_decay,
        progress_bar=settings.progress_bar,
    )


def run_recipe(
    settings: RecipeSettings, stages: tuple[str, ...] = ("vae", "text2image", "ip2p"), vae_from: str | None = None
) -> dict[str, TrainingResult]:
    """Run the chosen stages in order; returns each stage's TrainingResult.

    ``vae_from`` (a VAE, or a pipeline folder holding one) replaces training in the VAE stage: that VAE is
    finished as the stage finishes its own (:func:`restandardize_vae`).
    """
    if vae_from and "vae" not in stages:
        raise InvalidRequestError(
            f"vae_from={vae_from!r} replaces training in the VAE stage, which is not among the stages "
            f"{','.join(stages)}: add 'vae' to stages.",
            field="stages",
        )
    data = domain_data(settings)
    out = Path(settings.output_dir)
    results: dict[str, TrainingResult] = {}
    if "vae" in stages and vae_from:
        folder = restandardize_vae(settings, vae_from)
        results["vae"] = TrainingResult(output=folder, global_step=0, last_loss=None, seconds_per_step=None,
                                        extra={"finished_from": str(vae_from)})
    elif "vae" in stages:
        results["vae"] = train(
            VAETask(vae_settings(settings, data)),
            _config(settings, "vae", settings.vae_steps, settings.vae_learning_rate, False, settings.vae_batch_size),
        )
    if "text2image" in stages:
        t2i = Text2ImageSettings(
            data_dir=data["train"] / "t2i",
            resolution=settings.resolution,
            vae=str(out / "vae" / "vae"),
            text_encoder=settings.text_encoder,
            unet_channels=settings.unet_channels,
            text_hidden_size=settings.text_hidden_size,
            text_layers=settings.text_layers,
            text_corpus=data["train"] / "edit",
            max_text_length=settings.max_text_length,
            prediction_type=settings.prediction_type,
            snr_gamma=settings.snr_gamma,
            cache_latents=True,
            cache_text=settings.text_encoder != "new",
            save_dtype=settings.save_dtype,
        )
        config = _config(
            settings, "text2image", settings.text2image_steps, settings.text2image_learning_rate, settings.use_ema
        )
        results["text2image"] = train(Text2ImageTask(t2i), config)
    if "ip2p" in stages:
        config = _config(settings, "ip2p", settings.ip2p_steps, settings.ip2p_learning_rate, settings.use_ema)
        results["ip2p"] = train(ip2p_task(settings, data["train"]), config)
    return results


def ip2p_task(settings: RecipeSettings, train_split: Path) -> InstructPix2PixTask:
    """The recipe's InstructPix2Pix stage: starts from OUT/text2image/pipeline, trains on the split's edits."""
    return InstructPix2PixTask(
        InstructPix2PixSettings(
            data_dir=train_split / "edit",
            resolution=settings.resolution,
            pretrained_model=str(Path(settings.output_dir) / "text2image" / "pipeline"),
            snr_gamma=settings.snr_gamma,
            cache_latents=True,
            save_dtype=settings.save_dtype,
            train_text_encoder=settings.text_encoder == "new",
            cache_text=settings.text_encoder != "new",
        )
    )


def save_ip2p_checkpoint(settings: RecipeSettings, checkpoint: str | Path) -> Path:
    """Save an intermediate checkpoint of the InstructPix2Pix stage (its EMA weights) as OUT/ip2p/pipeline, for a
    run stopped before its last step."""
    out = Path(settings.output_dir)
    return save_from_checkpoint(ip2p_task(settings, out / "data" / "train"), checkpoint, out / "ip2p")


def scaled(settings: RecipeSettings, factor: float) -> RecipeSettings:
    """The recipe with every stage's step count multiplied by ``factor`` (for quick trial runs)."""
    return replace(
        settings,
        vae_steps=max(1, round(settings.vae_steps * factor)),
        text2image_steps=max(1, round(settings.text2image_steps * factor)),
        ip2p_steps=max(1, round(settings.ip2p_steps * factor)),
    )
