"""DAC, Doubly Abductive Counterfactual inference (Song et al., CVPR 2024), on any Stable-Diffusion-style model.

Abduction 1 fits a UNet LoRA to the single input image with the source caption (it "encodes all the image
details"); abduction 2 fits a text-encoder LoRA to the same image with the *target* caption while the UNet LoRA is
applied with the annealed scale w(t) = (1 - eta)(t - T)^2 / T^2 + eta; prediction samples from noise with the
target caption, the text-encoder LoRA at weight -1 (the counterfactual: its inversion reverts pre-edit to
post-edit) and the same annealed UNet LoRA. Defaults in :class:`DacSettings` follow the authors' repository
(xuesong39/DAC). LoRAs are peft adapters, removed from the shared model after each edit, and can be saved in the
layout diffusers' ``load_lora_weights`` reads.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InvalidModelError, NumericalError
from .objective import noisy_latents_and_target
from .prompts import encode_text

UNET_ADAPTER, TEXT_ADAPTER = "dac_unet", "dac_text"
# the authors' UNet LoRA covers attention, feed-forward, resnet convolutions, time embeddings and resamplers
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
                "conv2", "conv_shortcut", "time_emb_proj", "conv"]
TEXT_TARGETS = {"clip": ["q_proj", "k_proj", "v_proj", "out_proj"],
                "bert": ["query", "key", "value", "attention.output.dense"]}


@dataclass(frozen=True)
class DacSettings:
    """The two abductions' settings (the authors': ranks 512 and 4, 1000 steps each at learning rate 1e-4)."""

    unet_rank: int = 512
    text_rank: int = 4
    unet_steps: int = 1000
    text_steps: int = 1000
    learning_rate: float = 1e-4
    annealing: float = 0.8


def annealed_scale(t: float, eta: float, last: int = 999) -> float:
    """The UNet LoRA's weight at timestep ``t``: ``eta`` at the noisiest step, 1 at the cleanest."""
    return (1.0 - eta) * (float(t) - last) ** 2 / last**2 + eta


def require_peft() -> None:
    try:
        import peft  # noqa: F401
    except ImportError:
        raise InvalidModelError(
            "DAC trains LoRAs with peft, which is not installed: pip install 'instructedit[dac]'"
        ) from None


def set_lora_scale(model: torch.nn.Module, adapter: str, scale: float) -> None:
    """Weight ``scale`` on ``adapter`` in every LoRA layer of ``model`` (negative subtracts it)."""
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if isinstance(module, LoraLayer) and adapter in module.scaling:
            module.set_scale(adapter, scale)


def text_targets(text_encoder: torch.nn.Module) -> list[str]:
    names = {name.rsplit(".", 1)[-1] for name, _ in text_encoder.named_modules()}
    return TEXT_TARGETS["clip"] if "q_proj" in names else TEXT_TARGETS["bert"]


def add_lora(model: torch.nn.Module, adapter: str, rank: int, targets: list[str], seed: int = 0
             ) -> list[torch.nn.Parameter]:
    """Add a LoRA ``adapter`` (alpha = rank, so weight 1 is the plain LoRA), initialised from ``seed``, and return
    its trainable parameters.

    peft's ``inject_adapter_in_model`` works on any module, without the diffusers/transformers integrations (the
    latter pins a newer peft than the registry has)."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=targets)
    with torch.random.fork_rng(devices=[]):  # peft initialises from the global generator
        torch.manual_seed(seed)
        inject_adapter_in_model(config, model, adapter_name=adapter)
    params = [p for n, p in model.named_parameters() if f".{adapter}." in n]
    for p in params:
        p.requires_grad_(True)
    return params


def lora_state(model: torch.nn.Module, adapter: str) -> dict[str, torch.Tensor]:
    """``adapter``'s weights under peft's state-dict names (``...to_q.lora_A.weight``)."""
    return {n.replace(f".{adapter}.", "."): p.detach().clone() for n, p in model.named_parameters()
            if f".{adapter}." in n}


def diffusion_loss(unet, scheduler, latents: torch.Tensor, hidden: torch.Tensor, generator: torch.Generator,
                   on_timestep=None) -> torch.Tensor:
    """The denoising loss at one random timestep and noise (:func:`~instructedit.engine.objective.
    noisy_latents_and_target`; ``generator`` on the CPU); ``on_timestep(t)`` runs before the UNet sees it."""
    noisy, t, target = noisy_latents_and_target(latents, scheduler, generator)
    if on_timestep is not None:
        on_timestep(int(t))
    pred = unet(noisy, t, encoder_hidden_states=hidden, return_dict=False)[0]
    return F.mse_loss(pred.float(), target.float())


def _fit(params, loss_at, steps: int, learning_rate: float, what: str, progress) -> None:
    optimiser = torch.optim.AdamW(params, lr=learning_rate)
    bar = progress(steps) if progress else None
    for step in range(steps):
        loss = loss_at()
        if not math.isfinite(loss.item()):
            raise NumericalError(f"DAC {what} diverged at step {step} (loss {loss.item()}): lower the learning rate "
                                 "(params.dac_learning_rate)")
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()


@dataclass
class DacLoras:
    """The two abducted LoRAs as peft state dicts (name -> tensor), with the settings that made them."""

    unet: dict[str, torch.Tensor]
    text_encoder: dict[str, torch.Tensor]
    settings: DacSettings

    def save(self, directory: str | Path) -> Path:
        """Write ``pytorch_lora_weights.safetensors`` with diffusers' ``save_lora_weights`` (``unet.`` keys in
        peft's naming, which diffusers reads as it is; ``text_encoder.`` keys converted to diffusers' naming), so
        ``pipe.load_lora_weights(directory)`` loads both exactly (tested); ranks and annealing go in
        ``dac.json``."""
        import json

        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers

        directory = Path(directory)
        StableDiffusionPipeline.save_lora_weights(
            directory, unet_lora_layers=self.unet,
            text_encoder_lora_layers=convert_state_dict_to_diffusers(self.text_encoder))
        (directory / "dac.json").write_text(json.dumps(asdict(self.settings), indent=2) + "\n")
        return directory


def abduct(unet, text_encoder, tokenizer, scheduler, latents: torch.Tensor, source: str, target: str,
           settings: DacSettings, generator: torch.Generator, progress=None,
           unet_lora: list[torch.Tensor] | None = None, forward=None) -> DacLoras:
    """Both abductions on clean ``latents`` (``unet_lora``: the UNet LoRA's values of a first abduction already
    made for this image and source caption, reused). ``forward`` calls the UNet (default: ``unet`` itself; the
    editor passes its counted wrapper). Leaves the adapters on the models; :func:`remove` takes them off."""
    forward = forward or unet
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    with torch.inference_mode(False), torch.enable_grad():
        latents = latents.clone()
        unet_params = add_lora(unet, UNET_ADAPTER, settings.unet_rank, UNET_TARGETS, seed)
        if unet_lora is not None:
            _load(unet, UNET_ADAPTER, unet_lora)
        else:
            with torch.no_grad():
                source_hidden = encode_text(tokenizer, text_encoder, source).clone()
            _fit(unet_params, lambda: diffusion_loss(forward, scheduler, latents, source_hidden, generator),
                 settings.unet_steps, settings.learning_rate, "abduction 1 (UNet LoRA)", progress)
        for p in unet_params:
            p.requires_grad_(False)
        text_params = add_lora(text_encoder, TEXT_ADAPTER, settings.text_rank, text_targets(text_encoder), seed + 1)

        def text_loss() -> torch.Tensor:
            hidden = encode_text(tokenizer, text_encoder, target)
            return diffusion_loss(forward, scheduler, latents, hidden, generator, on_timestep=lambda t: set_lora_scale(
                unet, UNET_ADAPTER, annealed_scale(t, settings.annealing, scheduler.config.num_train_timesteps - 1)))

        _fit(text_params, text_loss, settings.text_steps, settings.learning_rate, "abduction 2 (text-encoder LoRA)",
             progress)
        for p in text_params:
            p.requires_grad_(False)
        set_lora_scale(unet, UNET_ADAPTER, 1.0)
        return DacLoras(lora_state(unet, UNET_ADAPTER), lora_state(text_encoder, TEXT_ADAPTER), settings)


def _load(model, adapter: str, values: list[torch.Tensor]) -> list[torch.Tensor]:
    """Copy ``values`` into ``adapter``'s weights in their order; return the values left over."""
    params = [p for n, p in model.named_parameters() if f".{adapter}." in n]
    with torch.no_grad():
        for param, value in zip(params, values, strict=False):
            param.copy_(value)
    return values[len(params):]


def attach(unet, text_encoder, settings: DacSettings, values: list[torch.Tensor]) -> None:
    """Put cached LoRAs (the UNet's state values, then the text encoder's) back on the models."""
    add_lora(unet, UNET_ADAPTER, settings.unet_rank, UNET_TARGETS)
    rest = _load(unet, UNET_ADAPTER, values)
    add_lora(text_encoder, TEXT_ADAPTER, settings.text_rank, text_targets(text_encoder))
    _load(text_encoder, TEXT_ADAPTER, rest)
    for model in (unet, text_encoder):
        model.requires_grad_(False)


def remove(unet, text_encoder) -> None:
    """Take every LoRA layer off the shared models, putting the original layers back (no-op where none is)."""
    from peft.tuners.lora import LoraLayer

    for model in (unet, text_encoder):
        for name, module in list(model.named_modules()):
            if isinstance(module, LoraLayer):
                parent_name, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
        if hasattr(model, "peft_config"):
            del model.peft_config
        model.requires_grad_(False)


class AnnealedUNet:
    """The UNet with DAC's UNet LoRA at the annealed weight of each call's timestep."""

    def __init__(self, unet, call, eta: float, last: int = 999) -> None:
        self.unet, self.call, self.eta, self.last = unet, call, eta, last

    def __call__(self, sample, t, **kwargs):
        set_lora_scale(self.unet, UNET_ADAPTER, annealed_scale(float(t), self.eta, self.last))
        return self.call(sample, t, **kwargs)
