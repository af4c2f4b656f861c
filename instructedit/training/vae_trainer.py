"""Training an AutoencoderKL: reconstruction MSE (+ optional L1) + a small KL term, on full images or random
crops; at the end the latent scaling factor is measured on the data and written into the VAE config.

Crops are cheaper but not equivalent to full images: the VAE's GroupNorm layers normalise over the whole spatial
extent, so statistics of a crop differ from those of the image it is later used on. Measured on the built-in
domain (64×64, 3000 steps on 32×32 crops): 30 dB on crops but only 24 dB on full images. Train on full images
unless they are too large to fit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import AutoencoderKL
from torch.utils.data import DataLoader, Dataset, Subset

from ..errors import InvalidRequestError
from ..hub import load_pretrained
from .data import ImageCaptionColumns, ImageCaptionDataset, collate
from .latents import (
    encode_parameters,
    latent_std,
    posterior_mode,
    posterior_sample,
    scaling_factor_for,
    standardize_vae,
)
from .loop import TrainingTask
from .models import small_vae, vae_downsample_factor
from .pipelines import cast_for_saving

VAE_FOLDER = "vae"
METRICS_FILE = "vae_metrics.json"


@dataclass
class VAESettings:
    """What to train and how (see ``instructedit train vae --help``)."""

    data_dir: Path
    resolution: int = 64
    image_column: str = "file_name"
    resize: bool = False
    pretrained_vae: str | None = None
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    latent_channels: int = 4
    mid_block_attention: bool = True
    norm_num_groups: int | None = None  # None: min(32, smallest channel count), as in small_vae
    standardize_latents: bool = True  # fold per-channel latent mean/std into the VAE (see standardize_latent_space)
    kl_weight: float = 1e-6
    l1_weight: float = 0.0
    crop_size: int | None = None
    scale_samples: int = 1024
    eval_data_dir: Path | None = None
    eval_samples: int = 256
    save_dtype: str = "fp32"


def load_vae(name: str) -> AutoencoderKL:
    """Load an AutoencoderKL from a VAE folder, a pipeline folder (its ``vae/``) or a hub id."""
    path = Path(name).expanduser()
    subfolder = "vae" if (path / "model_index.json").is_file() or (path / "vae" / "config.json").is_file() else None

    def loader(n: str) -> AutoencoderKL:
        return AutoencoderKL.from_pretrained(n, subfolder=subfolder, torch_dtype=torch.float32)

    return load_pretrained(name, loader, what="VAE")


class VAETask(TrainingTask):
    """Train (or fine-tune) an AutoencoderKL on the images of an image–caption folder."""

    name = "vae"

    def __init__(self, settings: VAESettings) -> None:
        self.settings = settings
        if settings.crop_size is not None and not 8 <= settings.crop_size <= settings.resolution:
            raise InvalidRequestError(f"crop size must be in [8, {settings.resolution}], got {settings.crop_size}.",
                                      field="crop_size")
        self._dataset = ImageCaptionDataset(
            settings.data_dir,
            settings.resolution,
            ImageCaptionColumns(image=settings.image_column, caption=None),
            resize=settings.resize,
        )
        if settings.pretrained_vae:
            self.vae = load_vae(settings.pretrained_vae)
        else:
            self.vae = small_vae(
                settings.block_out_channels,
                settings.latent_channels,
                sample_size=settings.resolution,
                mid_block_attention=settings.mid_block_attention,
                norm_num_groups=settings.norm_num_groups,
            )
        factor = vae_downsample_factor(self.vae)
        if settings.resolution % factor or (settings.crop_size or factor) % factor:
            raise InvalidRequestError(
                f"resolution {settings.resolution} and crop size must be multiples of the VAE's downsampling {factor}.",
                field="resolution",
            )

    def dataset(self) -> Dataset:
        return self._dataset

    def trainable_modules(self) -> dict[str, torch.nn.Module]:
        return {"vae": self.vae}

    def compute_loss(
        self, modules: dict[str, torch.nn.Module], batch: dict, generator: torch.Generator, accelerator: Accelerator
    ) -> torch.Tensor:
        pixels = batch["pixel_values"]
        if self.settings.crop_size:
            pixels = random_crops(pixels, self.settings.crop_size, generator)
        pixels = pixels.to(accelerator.device)
        vae = modules["vae"]
        with accelerator.autocast():
            inner = accelerator.unwrap_model(vae)  # encode/decode are not the forward a DDP wrapper exposes
            parameters = inner.encode(pixels).latent_dist.parameters
            latents = posterior_sample(parameters, generator)
            reconstruction = inner.decode(latents).sample
        return vae_loss(reconstruction, pixels, parameters, self.settings.kl_weight, self.settings.l1_weight)

    def save_final(self, modules: dict[str, torch.nn.Module], output_dir: Path) -> Path:
        return save_vae(modules["vae"], self._dataset, self.settings, output_dir)

    def describe(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in vars(self.settings).items()}


def save_vae(vae: AutoencoderKL, dataset: Dataset, settings: VAESettings, output_dir: Path) -> Path:
    """Finish a trained VAE — standardise its latent space (or only set the scaling factor), measure
    reconstruction PSNR on the training and evaluation images — and save it to ``output_dir/vae`` with
    ``output_dir/vae_metrics.json``."""
    if settings.standardize_latents:
        metrics: dict = standardize_vae(vae, dataset, max_samples=settings.scale_samples)
    else:
        std = latent_std(vae, dataset, max_samples=settings.scale_samples)
        vae.register_to_config(scaling_factor=scaling_factor_for(std))
        metrics = {"latent_std": std, "scaling_factor": vae.config.scaling_factor}
    metrics["train_psnr_db"] = reconstruction_psnr(vae, dataset, settings.eval_samples)
    if settings.eval_data_dir is not None:
        eval_set = ImageCaptionDataset(
            settings.eval_data_dir,
            settings.resolution,
            ImageCaptionColumns(image=settings.image_column, caption=None),
            resize=settings.resize,
        )
        metrics["eval_psnr_db"] = reconstruction_psnr(vae, eval_set, settings.eval_samples)
    output_dir = Path(output_dir)
    folder = output_dir / VAE_FOLDER
    cast_for_saving(vae, settings.save_dtype).save_pretrained(folder, safe_serialization=True)
    (output_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    return folder


def vae_loss(
    reconstruction: torch.Tensor,
    target: torch.Tensor,
    posterior_parameters: torch.Tensor,
    kl_weight: float,
    l1_weight: float = 0.0,
) -> torch.Tensor:
    """MSE (+ ``l1_weight``·L1) per pixel + ``kl_weight``·KL(q(z|x) ‖ N(0, I)) per latent element."""
    mean, logvar = torch.chunk(posterior_parameters.float(), 2, dim=1)
    logvar = torch.clamp(logvar, -30.0, 20.0)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
    loss = F.mse_loss(reconstruction.float(), target.float()) + kl_weight * kl
    if l1_weight:
        loss = loss + l1_weight * F.l1_loss(reconstruction.float(), target.float())
    return loss


def random_crops(pixels: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """One random ``size``×``size`` crop per image, positions drawn from ``generator``."""
    _, _, height, width = pixels.shape
    tops = torch.randint(0, height - size + 1, (pixels.shape[0],), generator=generator).tolist()
    lefts = torch.randint(0, width - size + 1, (pixels.shape[0],), generator=generator).tolist()
    return torch.stack([img[:, t : t + size, s : s + size] for img, t, s in zip(pixels, tops, lefts, strict=True)])


@torch.no_grad()
def reconstruction_psnr(vae: AutoencoderKL, dataset: Dataset, max_samples: int = 256, batch_size: int = 64) -> float:
    """Mean PSNR (dB, images in [0, 1]) of encode (posterior mode) → decode over the first ``max_samples``."""
    subset = Subset(dataset, range(min(len(dataset), max_samples)))
    psnrs = []
    for batch in DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=collate):
        pixels = batch["pixel_values"].to(vae.device, vae.dtype)
        decoded = vae.decode(posterior_mode(encode_parameters(vae, pixels))).sample
        mse = ((decoded.float().clamp(-1, 1) - pixels.float()) / 2).pow(2).mean(dim=(1, 2, 3))
        psnrs.extend((10 * torch.log10(1.0 / mse.clamp_min(1e-10))).tolist())
    return float(sum(psnrs) / len(psnrs)) if psnrs else math.nan
