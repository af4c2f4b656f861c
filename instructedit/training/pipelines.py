"""Reading and writing trained models as standard diffusers pipeline folders.

Text-to-image models are saved in the ``StableDiffusionPipeline`` layout and InstructPix2Pix models in the
``StableDiffusionInstructPix2PixPipeline`` layout (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``), so they load with ``DiffusionPipeline.from_pretrained(folder)`` — the code path
used for hub models.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from diffusers import StableDiffusionInstructPix2PixPipeline, StableDiffusionPipeline

from ..engine.components import Components, load_components
from ..errors import InvalidModelError, InvalidRequestError

SAVE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def load_trainable_components(name: str) -> Components:
    """The components of a diffusers pipeline (hub id or local folder) ready to train.

    They are loaded by the editor's loader, :func:`instructedit.engine.components.load_components` (so a folder
    exported with an external text encoder loads too), in float32 on the CPU — the accelerator places them and
    mixed precision autocasts — with every parameter trainable again: each task freezes what it does not train.
    Works for Stable Diffusion text-to-image and InstructPix2Pix pipelines; safety checkers are not loaded.
    """
    components = load_components(name, device="cpu", dtype="float32")
    for module in (components.unet, components.vae, components.text_encoder):
        module.requires_grad_(True)
    return components


def save_pipeline(
    components: Components, output_dir: str | Path, kind: str = "text2image", save_dtype: str = "fp32"
) -> Path:
    """Save ``components`` as a ``StableDiffusionPipeline`` (``kind="text2image"``) or
    ``StableDiffusionInstructPix2PixPipeline`` (``kind="ip2p"``) folder with safetensors weights.

    ``save_dtype`` ("fp32", "fp16", "bf16") sets the dtype of the stored weights (half precision halves the size;
    load with a float32 dtype, as :func:`load_trainable_components` does, to compute in full precision). The
    in-memory models are not changed.
    """
    classes = {"text2image": StableDiffusionPipeline, "ip2p": StableDiffusionInstructPix2PixPipeline}
    if kind not in classes:
        raise ValueError(f"unknown pipeline kind '{kind}': use one of {sorted(classes)}")
    if kind == "ip2p" and components.unet.config.in_channels != 2 * components.unet.config.out_channels:
        raise InvalidModelError(
            f"an InstructPix2Pix UNet needs {2 * components.unet.config.out_channels} input channels, this one has "
            f"{components.unet.config.in_channels}."
        )
    models = {"vae": components.vae, "text_encoder": components.text_encoder, "unet": components.unet}
    models = {name: cast_for_saving(module, save_dtype) for name, module in models.items()}
    pipe = classes[kind](
        **models,
        tokenizer=components.tokenizer,
        scheduler=components.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    output_dir = Path(output_dir)
    pipe.save_pretrained(output_dir, safe_serialization=True)
    write_legacy_clip_vocab(components.tokenizer, output_dir / "tokenizer")
    return output_dir


def cast_for_saving(module: torch.nn.Module, save_dtype: str) -> torch.nn.Module:
    """``module`` itself for "fp32", else a copy in the requested dtype (the original is left untouched)."""
    if save_dtype not in SAVE_DTYPES:
        raise InvalidRequestError(f"save dtype '{save_dtype}' is not supported: use one of {sorted(SAVE_DTYPES)}.",
                                  field="save_dtype")
    dtype = SAVE_DTYPES[save_dtype]
    if all(p.dtype == dtype for p in module.parameters()):
        return module
    return copy.deepcopy(module).to(dtype)


def write_legacy_clip_vocab(tokenizer: object, folder: Path) -> None:
    """Also write ``vocab.json``/``merges.txt`` for a byte-level BPE tokenizer, so older transformers releases
    (whose slow ``CLIPTokenizer`` reads only those files) load the folder too. Other tokenizers are left alone."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return
    model = json.loads(backend.to_str())["model"]
    if model.get("type") != "BPE":
        return
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def folder_size_mb(folder: str | Path) -> float:
    """Total size of the weight files (``*.safetensors``) under ``folder`` in MB."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*.safetensors")) / 1e6
