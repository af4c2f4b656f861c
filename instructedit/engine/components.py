"""Loading a latent diffusion model's components once, from a hub id or a local diffusers folder."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidModelError, ModelNotFoundError
from ..hub import load_pretrained
from ..models.external import EXTERNAL_FILE, materialize_text_encoder
from .traced import TracedUNet


@dataclass
class Components:
    """The parts of a Stable-Diffusion-style model that every method composes.

    ``scheduler`` is a template: methods build fresh schedulers from its config so that concurrent edits never
    share scheduler state. ``defaults`` holds per-model parameter defaults read from ``instructedit.json`` in the
    model folder (a small model may want fewer steps than Stable Diffusion's defaults).
    """

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    name: str = "in-memory"
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    execution_device: torch.device | None = None  # set once offloaded: the weights then live on the CPU
    memory: Any = None  # the MemoryOptions applied (engine.memory.place_components)
    _forward: TracedUNet | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def unet_forward(self) -> TracedUNet:
        """The UNet as the methods call it: replayed from a trace where that is exact (CPU inference, see
        :mod:`instructedit.engine.traced`), the module itself otherwise."""
        if self._forward is None or self._forward.unet is not self.unet:
            self._forward = TracedUNet(self.unet)
        return self._forward

    @property
    def device(self) -> torch.device:
        return self.execution_device or self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def is_instruct(self) -> bool:
        """True for InstructPix2Pix-style UNets, which read the image latents as extra input channels."""
        return int(self.unet.config.in_channels) == 2 * self.latent_channels

    @property
    def prediction_type(self) -> str:
        return str(self.scheduler.config.prediction_type)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA when present, else CPU; an unavailable CUDA request is a clear error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidModelError("device 'cuda' was asked for but no CUDA GPU is available: use device='cpu'",
                                field="device", suggest={"device": "cpu"})
    return device


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None`` means fp32 on CPU and fp16 on CUDA, the usual choices for Stable Diffusion."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise InvalidModelError(f"unknown dtype '{dtype}': use one of {', '.join(sorted(_DTYPES))}", field="dtype")
    return _DTYPES[dtype]


def read_model_defaults(name: str) -> dict[str, dict[str, Any]]:
    """Per-method parameter defaults from ``instructedit.json`` in a model folder (``{}`` elsewhere)."""
    path = Path(name).expanduser() / "instructedit.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text()).get("defaults", {})


def load_components(name: str, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
                    ) -> Components:
    """Load UNet, VAE, text encoder, tokenizer and scheduler of a diffusers-layout model.

    ``name`` is a hub id (``stable-diffusion-v1-5/stable-diffusion-v1-5``, ``timbrooks/instruct-pix2pix``,
    ``stabilityai/stable-diffusion-2-1-base``) or a local folder holding ``model_index.json``. Each component is
    loaded from its subfolder, so safety checkers and feature extractors are never fetched.
    """
    from .imports import defer_package_inits

    defer_package_inits()
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler
    from transformers import AutoModel, AutoTokenizer

    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)

    def load_all(source: str) -> Components:
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=torch_dtype)
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=torch_dtype)
        text_encoder = AutoModel.from_pretrained(source, subfolder="text_encoder", dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(source, subfolder="tokenizer")
        scheduler = DDIMScheduler.from_pretrained(source, subfolder="scheduler")
        for module in (unet, vae, text_encoder):
            module.to(device).eval().requires_grad_(False)
        return Components(unet, vae, text_encoder, tokenizer, scheduler, name=name,
                          defaults=read_model_defaults(source))

    source = name
    if (Path(name).expanduser() / "text_encoder" / EXTERNAL_FILE).is_file():
        source = str(materialize_text_encoder(Path(name).expanduser()))
    try:
        return load_pretrained(source, load_all, what="model")
    except ModelNotFoundError:
        raise
    except (KeyError, AttributeError, TypeError) as exc:
        raise InvalidModelError(
            f"'{name}' is not a Stable-Diffusion-style model folder ({type(exc).__name__}: {exc}): it needs unet/, "
            "vae/, text_encoder/, tokenizer/ and scheduler/ subfolders in diffusers layout"
        ) from exc


class ComponentCache:
    """Loaded models keyed by (name, device, dtype): each model is loaded once and reused across edits."""

    def __init__(self) -> None:
        self._items: dict[tuple, Components] = {}
        self._lock = threading.Lock()

    def get(self, name: str, device: str | torch.device | None, dtype: str | torch.dtype | None,
            lora: str | None = None, lora_scale: float = 1.0, memory=None) -> Components:
        """Model ``name``'s components; with ``lora``, a copy with that LoRA fused in at ``lora_scale`` (the base
        stays cached and untouched); with ``memory`` (:class:`~instructedit.engine.memory.MemoryOptions`), placed
        and switched as it asks (offloaded models are loaded on the CPU)."""
        from .memory import place_components

        resolved = resolve_device(device)
        offloaded = memory is not None and memory.offload != "none"
        if offloaded and lora is not None:
            raise InvalidModelError("a LoRA cannot yet be fused into an offloaded model: use offload='none', or fuse "
                                    "it once and save the model (pipe.fuse_lora(); pipe.save_pretrained(DIR))",
                                    field="offload", suggest={"offload": "none"})
        torch_dtype = resolve_dtype(dtype, resolved)
        key = (name, str(resolved), str(torch_dtype))
        with self._lock:
            if key not in self._items:
                self._items[key] = load_components(name, "cpu" if offloaded else resolved, torch_dtype)
            found = self._items[key]
            if lora is not None:
                from .lora import check_lora_scale, with_lora

                lora_key = (*key, lora, check_lora_scale(lora_scale))
                if lora_key not in self._items:
                    self._items[lora_key] = with_lora(found, lora, lora_scale)
                found = self._items[lora_key]
            if memory is not None:
                place_components(found, memory, resolved)
            return found

    def put(self, components: Components) -> None:
        """Register components built in memory (tests, notebooks) under their ``name``."""
        with self._lock:
            self._items[(components.name, str(components.device), str(components.dtype))] = components
