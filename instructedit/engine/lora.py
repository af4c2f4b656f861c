"""A LoRA fused into a copy of a model's components: few-step adapters (LCM-LoRA, TCD-LoRA), styles, DAC's own.

Loaded with diffusers' ``load_lora_weights`` (every format it reads: diffusers/peft keys, kohya, the hub repos'
``pytorch_lora_weights.safetensors``), then fused at ``scale`` and the adapter layers removed, as diffusers
documents for inference (``fuse_lora`` + ``unload_lora_weights``): the UNet stays a plain UNet, so the traced
replay and every attention processor work unchanged, and each step costs what the base model's does. The base
components are never modified: the UNet and text encoder are copied first (the VAE and tokenizer are shared).
"""

from __future__ import annotations

import copy
import dataclasses
import math

from ..errors import InvalidRequestError, ModelNotFoundError
from ..hub import load_pretrained
from .components import Components


class _NotALora(Exception):
    """Carries a loading failure past :func:`load_pretrained`, which reads ValueErrors as "not found"."""


def check_lora_scale(scale: object) -> float:
    """``scale`` as a finite float, or a clear error naming the ``lora_scale`` field."""
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise InvalidRequestError(f"lora_scale must be a finite number (1 applies the LoRA as trained), got {scale!r}",
                                  field="lora_scale")
    return float(scale)


def lora_name(base: str, source: str, scale: float) -> str:
    """How components with a LoRA fused in are named (records, caches)."""
    return f"{base}+lora:{source}@{scale:g}"


def with_lora(components: Components, source: str, scale: float = 1.0, weight_name: str | None = None
              ) -> Components:
    """A copy of ``components`` with the LoRA at ``source`` (hub id, folder or ``.safetensors`` file) fused in at
    ``scale``. A hub id that cannot be fetched, or a file that is no LoRA of this model, is a clear error
    naming the ``lora`` field."""
    from diffusers import StableDiffusionPipeline

    scale = check_lora_scale(scale)
    unet, text_encoder = copy.deepcopy(components.unet), copy.deepcopy(components.text_encoder)
    pipe = StableDiffusionPipeline(
        vae=components.vae, text_encoder=text_encoder, tokenizer=components.tokenizer, unet=unet,
        scheduler=components.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    kwargs = {"weight_name": weight_name} if weight_name else {}

    def load(where: str) -> None:
        try:
            pipe.load_lora_weights(where, adapter_name="instructedit", **kwargs)
        except OSError:
            raise  # not found / offline: load_pretrained says how to fetch it
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            if "offline" in str(exc).lower():  # diffusers cannot search a hub repo for its weight file offline
                raise OSError(str(exc)) from exc
            raise _NotALora(exc) from exc

    try:
        load_pretrained(source, load, what="LoRA")
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(str(exc), field="lora") from exc.__cause__
    except _NotALora as wrapped:
        exc = wrapped.args[0]
        raise InvalidRequestError(
            f"'{source}' is not a LoRA of {components.name} ({type(exc).__name__}: {str(exc)[:200]}): give a LoRA "
            "trained for this base model (diffusers' load_lora_weights format)", field="lora",
        ) from exc
    if not any(getattr(module, "_hf_peft_config_loaded", False) for module in (unet, text_encoder)):
        raise InvalidRequestError(f"'{source}' holds no LoRA weights for this model's UNet or text encoder",
                                  field="lora")
    pipe.fuse_lora(lora_scale=scale, adapter_names=["instructedit"])
    pipe.unload_lora_weights()
    for module in (unet, text_encoder):
        module.eval().requires_grad_(False)
    return dataclasses.replace(components, unet=unet, text_encoder=text_encoder,
                               name=lora_name(components.name, source, scale))
