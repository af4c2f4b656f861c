"""Latent-diffusion training tasks: a caption-conditioned text-to-image UNet and an InstructPix2Pix UNet.

They follow diffusers' ``train_text_to_image.py`` and ``train_instruct_pix2pix.py``: latents are VAE posterior
samples times ``vae.config.scaling_factor``; the InstructPix2Pix conditioning image is the unscaled posterior mode
concatenated to the noisy latents; text is encoded exactly as the pipelines encode prompts. Both can start from a
pretrained diffusers pipeline (``pretrained_model``: e.g. Stable Diffusion 1.5, or this project's text-to-image
output) or — text-to-image only — be built from scratch around a trained VAE.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers import DDPMScheduler
from torch.utils.data import Dataset

from ..engine.components import Components
from ..errors import InvalidRequestError
from .data import EditTripletColumns, EditTripletDataset, ImageCaptionColumns, ImageCaptionDataset, PromptView
from .diffusion import (
    caption_dropout_mask,
    check_prediction_type,
    diffusion_loss,
    inference_scheduler,
    ip2p_dropout_masks,
    make_noise_scheduler,
    noisy_latents_and_target,
)
from .latents import LatentCache, encode_parameters, posterior_mode, posterior_sample
from .loop import TrainingTask
from .models import expand_unet_for_ip2p, small_unet, vae_downsample_factor
from .pipelines import load_trainable_components, save_pipeline
from .text_encoder import (
    TextEmbeddingCache,
    build_clip_text_encoder,
    encode_prompts,
    load_text_encoder,
    uses_attention_mask,
)
from .vae_trainer import load_vae

PIPELINE_FOLDER = "pipeline"


@dataclass
class DiffusionSettings:
    """Settings shared by the text-to-image and InstructPix2Pix tasks."""

    data_dir: Path
    resolution: int = 64
    resize: bool = False
    pretrained_model: str | None = None
    prediction_type: str | None = None  # None: the pretrained scheduler's, or "epsilon" from scratch
    snr_gamma: float | None = None
    train_text_encoder: bool | None = None  # None: train a new text encoder, freeze a pretrained one
    cache_latents: bool = False
    cache_text: bool = False  # encode every distinct prompt once (frozen text encoders only)
    save_dtype: str = "fp32"


@dataclass
class Text2ImageSettings(DiffusionSettings):
    """Text-to-image settings; the model-building fields apply when ``pretrained_model`` is None."""

    image_column: str = "file_name"
    caption_column: str = "text"
    caption_dropout: float = 0.1
    vae: str | None = None
    text_encoder: str = "new"  # "new" (small CLIP trained here), "minilm", or a hub id / folder
    text_corpus: Path | None = None  # extra lines for the new tokenizer's vocabulary (e.g. edit instructions)
    text_vocab_size: int = 1024
    text_hidden_size: int = 128
    text_layers: int = 4
    max_text_length: int = 48
    unet_channels: tuple[int, ...] = (64, 128, 128)
    unet_layers_per_block: int = 1


@dataclass
class InstructPix2PixSettings(DiffusionSettings):
    """InstructPix2Pix settings; ``pretrained_model`` (a text-to-image or InstructPix2Pix pipeline) is required."""

    input_image_column: str = "input_image"
    edit_prompt_column: str = "edit_prompt"
    edited_image_column: str = "edited_image"
    conditioning_dropout: float = 0.05


class LatentDiffusionTask(TrainingTask):
    """Shared machinery: frozen VAE, optional trainable text encoder, latent caching, pipeline saving."""

    pixel_keys: tuple[str, ...] = ()
    pipeline_kind = "text2image"

    def __init__(self, settings: DiffusionSettings, components: Components, dataset: Dataset) -> None:
        self.settings = settings
        self.components = components
        self._dataset = dataset
        self.train_text_encoder = bool(settings.train_text_encoder)
        prediction_type = settings.prediction_type
        if prediction_type is None:
            prediction_type = components.scheduler.config.get("prediction_type", "epsilon")
        check_prediction_type(prediction_type)
        # The training scheduler takes the betas of the pipeline's scheduler, as diffusers' scripts do.
        self.noise_scheduler = DDPMScheduler.from_config(components.scheduler.config, prediction_type=prediction_type)
        components.scheduler = inference_scheduler(self.noise_scheduler)
        components.vae.requires_grad_(False)
        components.vae.eval()
        components.text_encoder.requires_grad_(self.train_text_encoder)
        if not self.train_text_encoder:
            components.text_encoder.eval()
        self._check_resolution()
        self.cache: LatentCache | None = None
        self.text_cache: TextEmbeddingCache | None = None
        self._attention_mask = uses_attention_mask(components.text_encoder)

    def _check_resolution(self) -> None:
        factor = vae_downsample_factor(self.components.vae)
        if self.settings.resolution % factor:
            raise InvalidRequestError(
                f"resolution {self.settings.resolution} is not a multiple of the VAE's downsampling factor {factor}.",
                field="resolution",
            )

    def dataset(self) -> Dataset:
        # with cached latents the images are never needed again: serve only the prompts
        return PromptView(self._dataset) if self.settings.cache_latents else self._dataset

    def trainable_modules(self) -> dict[str, torch.nn.Module]:
        modules = {"unet": self.components.unet}
        if self.train_text_encoder:
            modules["text_encoder"] = self.components.text_encoder
        return modules

    def prepare(self, accelerator: Accelerator) -> None:
        self.components.vae.to(accelerator.device)
        if not self.train_text_encoder:
            self.components.text_encoder.to(accelerator.device)
        if self.settings.cache_latents:
            self.cache = LatentCache(self.components.vae, self._dataset, list(self.pixel_keys))
        if self.settings.cache_text and not self.train_text_encoder:
            texts = [""] + sorted(set(self._dataset.texts))
            self.text_cache = TextEmbeddingCache(self.components.tokenizer, self.components.text_encoder, texts)

    def posterior_parameters(self, batch: dict, key: str, device: torch.device) -> torch.Tensor:
        """VAE posterior parameters of the images ``batch[key]`` (from the cache when enabled)."""
        if self.cache is not None:
            return self.cache.get(key, batch["index"], device)
        return encode_parameters(self.components.vae, batch[key].to(device))

    def encode_text(
        self, modules: dict[str, torch.nn.Module], prompts: list[str], device: torch.device
    ) -> torch.Tensor:
        """Prompt embeddings, through the trainable (wrapped) encoder or the frozen one without gradients."""
        if self.text_cache is not None:
            return self.text_cache.get(prompts, device)
        encoder = modules.get("text_encoder", self.components.text_encoder)
        with torch.set_grad_enabled(self.train_text_encoder):
            return encode_prompts(
                self.components.tokenizer, encoder, prompts, device, attention_mask=self._attention_mask
            )

    def unet_loss(
        self,
        modules: dict,
        model_input: torch.Tensor,
        target: torch.Tensor,
        timesteps: torch.Tensor,
        text: torch.Tensor,
        accelerator: Accelerator,
    ) -> torch.Tensor:
        with accelerator.autocast():
            prediction = modules["unet"](model_input, timesteps, text).sample
        return diffusion_loss(prediction, target, timesteps, self.noise_scheduler, self.settings.snr_gamma)

    def noised_latents(
        self, batch: dict, key: str, generator: torch.Generator, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(noisy latents, timesteps, regression target) for the images ``batch[key]``: scaled posterior samples,
        noised at random timesteps (the generator draws the posterior sample first, then noise and timesteps)."""
        scale = self.components.vae.config.scaling_factor
        latents = posterior_sample(self.posterior_parameters(batch, key, device), generator) * scale
        return noisy_latents_and_target(latents, self.noise_scheduler, generator)

    def save_final(self, modules: dict[str, torch.nn.Module], output_dir: Path) -> Path:
        self.components.unet = modules["unet"]
        if "text_encoder" in modules:
            self.components.text_encoder = modules["text_encoder"]
        return save_pipeline(
            self.components, output_dir / PIPELINE_FOLDER, kind=self.pipeline_kind, save_dtype=self.settings.save_dtype
        )

    def describe(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in vars(self.settings).items()}


class Text2ImageTask(LatentDiffusionTask):
    """Train a caption-conditioned UNet2DConditionModel (and optionally its text encoder) on image–caption data."""

    name = "text2image"
    pixel_keys = ("pixel_values",)
    pipeline_kind = "text2image"

    def __init__(self, settings: Text2ImageSettings) -> None:
        if not 0 <= settings.caption_dropout < 1:
            raise InvalidRequestError(f"caption dropout must be in [0, 1), got {settings.caption_dropout}.",
                                      field="caption_dropout")
        dataset = ImageCaptionDataset(
            settings.data_dir,
            settings.resolution,
            ImageCaptionColumns(image=settings.image_column, caption=settings.caption_column),
            resize=settings.resize,
        )
        if settings.pretrained_model:
            components = load_trainable_components(settings.pretrained_model)
            if settings.vae:
                components.vae = load_vae(settings.vae)
        else:
            components = build_text2image_components(settings, dataset.captions)
        if settings.train_text_encoder is None:
            settings.train_text_encoder = settings.pretrained_model is None and settings.text_encoder == "new"
        super().__init__(settings, components, dataset)

    def compute_loss(
        self, modules: dict[str, torch.nn.Module], batch: dict, generator: torch.Generator, accelerator: Accelerator
    ) -> torch.Tensor:
        device = accelerator.device
        noisy, timesteps, target = self.noised_latents(batch, "pixel_values", generator, device)
        drop = caption_dropout_mask(len(batch["text"]), self.settings.caption_dropout, generator)
        text = self.encode_text(modules, dropped_prompts(batch["text"], drop), device)
        return self.unet_loss(modules, noisy, target, timesteps, text, accelerator)


class InstructPix2PixTask(LatentDiffusionTask):
    """Fine-tune an InstructPix2Pix UNet (initialised from a text-to-image UNet + 4 zero input channels)."""

    name = "ip2p"
    pixel_keys = ("original_pixel_values", "edited_pixel_values")
    pipeline_kind = "ip2p"

    def __init__(self, settings: InstructPix2PixSettings) -> None:
        if not settings.pretrained_model:
            raise InvalidRequestError(
                "InstructPix2Pix training starts from a pretrained pipeline: pass pretrained_model, a text-to-image "
                "pipeline folder (e.g. the output of `instructedit train text2image`) or a hub id such as "
                "stable-diffusion-v1-5/stable-diffusion-v1-5.",
                field="pretrained_model",
            )
        if not 0 <= settings.conditioning_dropout <= 1 / 3:
            raise InvalidRequestError(
                "conditioning dropout must be in [0, 1/3] (it is applied three ways), got "
                f"{settings.conditioning_dropout}.",
                field="conditioning_dropout",
            )
        dataset = EditTripletDataset(
            settings.data_dir,
            settings.resolution,
            EditTripletColumns(
                input_image=settings.input_image_column,
                edit_prompt=settings.edit_prompt_column,
                edited_image=settings.edited_image_column,
            ),
            resize=settings.resize,
        )
        components = load_trainable_components(settings.pretrained_model)
        expand_unet_for_ip2p(components.unet)
        if settings.train_text_encoder is None:
            settings.train_text_encoder = False
        super().__init__(settings, components, dataset)

    def compute_loss(
        self, modules: dict[str, torch.nn.Module], batch: dict, generator: torch.Generator, accelerator: Accelerator
    ) -> torch.Tensor:
        device = accelerator.device
        noisy, timesteps, target = self.noised_latents(batch, "edited_pixel_values", generator, device)
        image_latents = posterior_mode(self.posterior_parameters(batch, "original_pixel_values", device))
        drop_text, drop_image = ip2p_dropout_masks(len(batch["text"]), self.settings.conditioning_dropout, generator)
        keep_image = (~drop_image).to(device, image_latents.dtype).reshape(-1, 1, 1, 1)
        model_input = torch.cat([noisy, image_latents * keep_image], dim=1)
        text = self.encode_text(modules, dropped_prompts(batch["text"], drop_text), device)
        return self.unet_loss(modules, model_input, target, timesteps, text, accelerator)


def dropped_prompts(texts: list[str], drop: torch.Tensor) -> list[str]:
    """``texts`` with the empty (unconditional) prompt where the boolean mask ``drop`` is set."""
    return ["" if d else t for t, d in zip(texts, drop.tolist(), strict=True)]


def build_text2image_components(settings: Text2ImageSettings, captions: list[str]) -> Components:
    """New components around a trained VAE: a text encoder (new small CLIP or pretrained) and a small UNet."""
    if not settings.vae:
        raise InvalidRequestError(
            "training a text-to-image model from scratch needs a trained VAE: pass vae (e.g. the output of "
            "`instructedit train vae`), or start from a pipeline with pretrained_model.",
            field="vae",
        )
    vae = load_vae(settings.vae)
    if settings.text_encoder == "new":
        corpus = list(captions)
        if settings.text_corpus is not None:
            corpus += read_text_corpus(settings.text_corpus)
        tokenizer, text_encoder = build_clip_text_encoder(
            corpus,
            vocab_size=settings.text_vocab_size,
            model_max_length=settings.max_text_length,
            hidden_size=settings.text_hidden_size,
            num_hidden_layers=settings.text_layers,
        )
    else:
        tokenizer, text_encoder = load_text_encoder(settings.text_encoder, model_max_length=settings.max_text_length)
    unet = small_unet(
        cross_attention_dim=text_encoder.config.hidden_size,
        sample_size=settings.resolution // vae_downsample_factor(vae),
        in_channels=vae.config.latent_channels,
        out_channels=vae.config.latent_channels,
        block_out_channels=tuple(settings.unet_channels),
        layers_per_block=settings.unet_layers_per_block,
    )
    return Components(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=make_noise_scheduler(settings.prediction_type or "epsilon"),
    )


def read_text_corpus(path: Path) -> list[str]:
    """Lines of a text file, or the captions/edit prompts of a dataset folder's metadata.jsonl."""
    path = Path(path)
    if path.is_dir():
        path = path / "metadata.jsonl"
    if not path.is_file():
        raise InvalidRequestError(f"text corpus '{path}' does not exist: pass a text file or a dataset folder.",
                                  field="text_corpus")
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix != ".jsonl":
        return [line for line in lines if line.strip()]
    texts = []
    for line in lines:
        if line.strip():
            obj = json.loads(line)
            texts += [v for k, v in obj.items() if k in ("text", "edit_prompt", "caption") and isinstance(v, str)]
    return texts
