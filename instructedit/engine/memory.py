"""Memory and placement options for big models on small machines, as diffusers' memory guide offers them.

One :class:`MemoryOptions` serves both kinds of editor: the pipeline editors apply it through the pipeline's own
``enable_*`` methods (:func:`instructedit.engine.pipelines.place`), the Stable-Diffusion-style methods through
:func:`place_components`, which does to our :class:`~instructedit.engine.components.Components` what
``enable_model_cpu_offload``, ``enable_sequential_cpu_offload``, ``enable_vae_tiling``, ``enable_vae_slicing`` and
``enable_attention_slicing`` do to a pipeline (the same accelerate hooks and diffusers switches, so outputs equal
the pipeline's with the same option).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..errors import InvalidModelError

OFFLOAD_MODES = ("none", "model", "sequential")
QUANTIZATIONS = ("none", "bnb-4bit", "bnb-8bit", "torchao-int8")
OFFLOAD_ORDER = ("text_encoder", "unet", "vae")  # diffusers' model_cpu_offload_seq for Stable Diffusion


@dataclass(frozen=True)
class MemoryOptions:
    """How models are placed and stored.

    ``offload``: ``"model"`` moves each model to the GPU only while it runs (``enable_model_cpu_offload``),
    ``"sequential"`` each layer (``enable_sequential_cpu_offload``: least memory, slowest). ``vae_tiling`` and
    ``vae_slicing`` decode large images tile by tile / batch item by item; ``attention_slicing`` computes attention
    in slices. ``quantization`` stores a pipeline editor's denoiser in 4 or 8 bits (bitsandbytes) or int8
    (torchao); ``gguf_file`` (a path or URL of a GGUF single file) replaces it with quantised weights read by
    ``from_single_file`` (both for the pipeline editors only: the Stable-Diffusion-style methods take
    ``dtype``). All default off: outputs equal the model run plainly.
    """

    offload: str = "none"
    vae_tiling: bool = False
    vae_slicing: bool = False
    attention_slicing: bool = False
    quantization: str = "none"
    gguf_file: str | None = None

    def __post_init__(self) -> None:
        if self.offload not in OFFLOAD_MODES:
            raise InvalidModelError(f"offload={self.offload!r}: use one of {', '.join(OFFLOAD_MODES)}",
                                    field="offload", suggest={"offload": "model"})
        if self.quantization not in QUANTIZATIONS:
            raise InvalidModelError(f"quantization={self.quantization!r}: use one of {', '.join(QUANTIZATIONS)}",
                                    field="quantization", suggest={"quantization": "none"})
        if self.gguf_file and self.quantization != "none":
            raise InvalidModelError("give either quantization or gguf_file: a GGUF file is already quantised",
                                    field="quantization", suggest={"quantization": "none"})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @property
    def for_components(self) -> MemoryOptions:
        """The options a Stable-Diffusion-style method applies (quantisation belongs to the pipeline editors)."""
        return MemoryOptions(self.offload, self.vae_tiling, self.vae_slicing, self.attention_slicing)


def require_cuda(memory: MemoryOptions, device: torch.device) -> None:
    """Offloading moves models between CPU and GPU: a clear error on any other device."""
    if memory.offload != "none" and device.type != "cuda":
        raise InvalidModelError(
            f"offload='{memory.offload}' moves models between CPU and GPU, but the device is {device.type}: "
            "use offload='none' on CPU", field="offload", suggest={"offload": "none"},
        )


def execution_device(module: torch.nn.Module) -> torch.device:
    """Where ``module`` computes: its parameters' device, or, once offloaded, the device its accelerate hooks
    move it to (its parameters then live on the CPU or on ``meta``), as diffusers' ``_execution_device``."""
    if "_hf_hook" not in module.__dict__:
        return module.device
    for sub in module.modules():
        device = getattr(sub.__dict__.get("_hf_hook"), "execution_device", None)
        if device is not None:
            return torch.device(device)
    return module.device


def place_components(components, memory: MemoryOptions, device: torch.device) -> None:
    """Apply ``memory`` to ``components`` in place (once: a second call with the same options does nothing)."""
    memory = memory.for_components
    applied = getattr(components, "memory", None)
    if applied == memory:
        return
    if applied is not None and applied.offload != "none" and applied.offload != memory.offload:
        raise InvalidModelError(f"{components.name} is already offloaded ({applied.offload}); load it again for "
                                f"offload='{memory.offload}'", field="offload")
    require_cuda(memory, device)
    vae, unet = components.vae, components.unet
    for flag, switch in ((memory.vae_tiling, "tiling"), (memory.vae_slicing, "slicing")):
        if flag:
            if not hasattr(vae, f"enable_{switch}"):
                raise InvalidModelError(f"{type(vae).__name__} cannot decode with {switch}: leave vae_{switch} off",
                                        field=f"vae_{switch}")
            getattr(vae, f"enable_{switch}")()
        elif hasattr(vae, f"disable_{switch}"):
            getattr(vae, f"disable_{switch}")()
    if memory.attention_slicing:
        if not hasattr(unet, "set_attention_slice"):
            raise InvalidModelError(f"{type(unet).__name__} has no attention slicing: leave attention_slicing off",
                                    field="attention_slicing")
        unet.set_attention_slice("auto")
    if memory.offload != "none" and (applied is None or applied.offload == "none"):
        offload(components, device, memory.offload)
    components.memory = memory


def offload(components, device: torch.device, mode: str) -> None:
    """Keep the weights on the CPU and move them to ``device`` only while they run: whole models in the order
    text encoder -> UNet -> VAE (``"model"``, each offloaded when the next starts) or layer by layer
    (``"sequential"``), with accelerate's hooks exactly as diffusers' pipelines install them."""
    from accelerate import cpu_offload, cpu_offload_with_hook

    hook = None
    for name in OFFLOAD_ORDER:
        model = getattr(components, name)
        if mode == "model":
            _, hook = cpu_offload_with_hook(model.to("cpu"), device, prev_module_hook=hook)
        else:
            cpu_offload(model.to("cpu"), execution_device=device, offload_buffers=len(model._parameters) > 0)
    components.execution_device = torch.device(device)
