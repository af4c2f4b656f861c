"""Loading whole diffusers pipelines (FLUX.1 Kontext, FLUX.2, Qwen-Image-Edit, LEDITS++ ...) once, with the
memory options that make large models fit: offload, VAE tiling and slicing, attention slicing, quantised weights.

The editors that wrap a pipeline (``methods/pipeline.py``) need nothing of our shared steps, only the pipeline
loaded the way a user with internet loads it (``DiffusionPipeline.from_pretrained`` by hub id or folder), its
denoiser (to count network calls) and the revision it came from (to record it).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidModelError, ModelNotFoundError
from ..hub import load_pretrained, looks_like_local_path
from .memory import OFFLOAD_MODES, QUANTIZATIONS, MemoryOptions, require_cuda  # noqa: F401 - re-exported


def pipeline_config(name: str) -> dict[str, Any]:
    """``model_index.json`` of the pipeline ``name`` (hub id or folder): its ``_class_name`` and components."""
    from diffusers import DiffusionPipeline

    path = Path(name).expanduser()
    if path.is_dir() and not (path / "model_index.json").is_file():
        raise InvalidModelError(
            f"'{name}' is not a diffusers pipeline folder: it has no model_index.json (save one with "
            "pipe.save_pretrained(DIR), or download it with `huggingface-cli download OWNER/NAME --local-dir DIR`)",
            field="model",
        )
    return dict(load_pretrained(name, DiffusionPipeline.load_config, what="pipeline"))


def model_class_name(name: str) -> str | None:
    """The pipeline class ``model_index.json`` of ``name`` names (a local folder, or a hub id already in the
    cache or reachable); ``None`` when it cannot be read, so callers fall back to loading as usual."""
    index = Path(name).expanduser() / "model_index.json"
    try:
        if not index.is_file():
            if looks_like_local_path(name):
                return None
            from huggingface_hub import hf_hub_download

            index = Path(hf_hub_download(name, "model_index.json"))
        return json.loads(index.read_text()).get("_class_name")
    except Exception:  # noqa: BLE001 - unreadable here means "load it and let the loader say what is wrong"
        return None


_SNAPSHOT = re.compile(r"/snapshots/([0-9a-f]{40})(/|$)")


def model_revision(name: str, folder: str | Path | None = None) -> str:
    """Where the weights came from, exactly: the hub commit of a downloaded snapshot, or for a local folder a
    digest of its configs and of its weight files' names and sizes (cheap for 20B models, and changes when a
    file is replaced by another)."""
    where = str(Path(folder or name).expanduser())
    found = _SNAPSHOT.search(where.replace("\\", "/"))
    if found:
        return found.group(1)
    path = Path(where)
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            relative = file.relative_to(path).as_posix()
            digest.update(relative.encode())
            if file.suffix == ".json":
                digest.update(file.read_bytes())
            else:
                digest.update(str(file.stat().st_size).encode())
        return "local:" + digest.hexdigest()[:16]
    if not looks_like_local_path(name):
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, "model_index.json")
            if isinstance(cached, str):
                found = _SNAPSHOT.search(cached.replace("\\", "/"))
                if found:
                    return found.group(1)
        except Exception:  # noqa: BLE001 - a revision we cannot read is recorded as unknown, never fatal
            pass
    return "unknown"


def denoiser_of(pipe) -> torch.nn.Module:
    """The network a pipeline calls once per step (its ``transformer`` or ``unet``)."""
    for name in ("transformer", "unet"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise InvalidModelError(f"{type(pipe).__name__} has neither a transformer nor a unet to run", field="model")


_QUANTIZATION_PACKAGES = {"bnb-4bit": "bitsandbytes", "bnb-8bit": "bitsandbytes", "torchao-int8": "torchao"}


def _require(package: str, what: str, field: str) -> None:
    import importlib.util

    if importlib.util.find_spec(package) is None:
        raise InvalidModelError(f"{what} needs the '{package}' package, which is not installed: `pip install "
                                f"{package}` (on a CUDA machine), or leave {field} out", field=field)


def _quantization_config(options: MemoryOptions, denoiser_name: str):
    """diffusers' quantisation of the denoiser alone (the text encoders keep their dtype)."""
    if options.quantization == "none":
        return None
    _require(_QUANTIZATION_PACKAGES[options.quantization], f"quantization='{options.quantization}'",
             "quantization")
    from diffusers import BitsAndBytesConfig, PipelineQuantizationConfig, TorchAoConfig

    config = {
        "bnb-4bit": lambda: BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                               bnb_4bit_compute_dtype=torch.bfloat16),
        "bnb-8bit": lambda: BitsAndBytesConfig(load_in_8bit=True),
        "torchao-int8": lambda: TorchAoConfig("int8wo"),
    }[options.quantization]()
    return PipelineQuantizationConfig(quant_mapping={denoiser_name: config})


def load_pipeline(name: str, class_name: str | None = None, *, device: torch.device, dtype: torch.dtype,
                  memory: MemoryOptions | None = None, config: dict[str, Any] | None = None):
    """``<class_name>.from_pretrained(name)`` (default: the class the model names) in ``dtype``, with
    ``memory``'s options applied, on ``device``.

    ``config`` is the pipeline's ``model_index.json`` when already read. Offline or missing weights give
    :class:`~instructedit.errors.ModelNotFoundError` saying how to fetch them; a missing quantisation library
    names the package to install.
    """
    import diffusers

    from ..models.external import EXTERNAL_FILE, materialize_text_encoder

    memory = memory or MemoryOptions()
    config = config if config is not None else pipeline_config(name)
    cls = getattr(diffusers, class_name or config["_class_name"], None) or diffusers.DiffusionPipeline
    denoiser_name = "transformer" if "transformer" in config else "unet"
    kwargs: dict[str, Any] = {"torch_dtype": dtype}
    quantization = _quantization_config(memory, denoiser_name)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    if memory.gguf_file:
        kwargs[denoiser_name] = _gguf_denoiser(memory.gguf_file, config, denoiser_name, name, dtype)

    def load(source: str):
        return cls.from_pretrained(source, **kwargs)

    source = name
    if (Path(name).expanduser() / "text_encoder" / EXTERNAL_FILE).is_file():
        source = str(materialize_text_encoder(Path(name).expanduser()))
    pipe = load_pretrained(source, load, what="pipeline")
    place(pipe, device, memory)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _gguf_denoiser(gguf_file: str, config: dict[str, Any], denoiser_name: str, name: str, dtype: torch.dtype):
    import diffusers
    from diffusers import GGUFQuantizationConfig

    library, class_name = config[denoiser_name]
    cls = getattr(diffusers, class_name)
    if not Path(gguf_file).expanduser().exists() and not str(gguf_file).startswith(("http://", "https://")):
        raise ModelNotFoundError(f"GGUF file '{gguf_file}' does not exist: give a local path or its URL")
    _require("gguf", "gguf_file", "gguf_file")
    return cls.from_single_file(str(Path(gguf_file).expanduser()) if Path(gguf_file).expanduser().exists()
                                else gguf_file, quantization_config=GGUFQuantizationConfig(compute_dtype=dtype),
                                config=name, subfolder=denoiser_name, torch_dtype=dtype)


def place(pipe, device: torch.device, memory: MemoryOptions) -> None:
    """Put ``pipe`` on ``device`` the way ``memory`` asks (offload needs a CUDA device)."""
    require_cuda(memory, device)
    if memory.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif memory.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    vae = getattr(pipe, "vae", None)
    if memory.vae_tiling:
        if vae is None or not hasattr(vae, "enable_tiling"):
            raise InvalidModelError(f"{type(pipe).__name__}'s VAE cannot decode in tiles: leave vae_tiling off",
                                    field="vae_tiling")
        vae.enable_tiling()
    if memory.vae_slicing and vae is not None and hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
    if memory.attention_slicing:
        if not hasattr(pipe, "enable_attention_slicing"):
            raise InvalidModelError(f"{type(pipe).__name__} has no attention slicing: leave attention_slicing off",
                                    field="attention_slicing")
        pipe.enable_attention_slicing()


def variant(pipe, class_name: str):
    """``pipe`` as the pipeline class ``class_name`` (an inpainting variant, LEDITS++ on a Stable Diffusion
    pipeline), sharing its loaded models through diffusers' ``from_pipe``; made once per class and kept on ``pipe``."""
    import diffusers

    if type(pipe).__name__ == class_name:
        return pipe
    variants = pipe.__dict__.setdefault("_instructedit_variants", {})
    if class_name not in variants:
        converted = getattr(diffusers, class_name).from_pipe(pipe)
        converted.set_progress_bar_config(disable=True)
        variants[class_name] = converted
    return variants[class_name]


@dataclass
class LoadedPipeline:
    """A pipeline with what its record needs: the name it was asked for and the revision it came from."""

    pipe: Any
    name: str
    revision: str
    memory: MemoryOptions

    @property
    def class_name(self) -> str:
        return type(self.pipe).__name__

    @property
    def denoiser(self) -> torch.nn.Module:
        return denoiser_of(self.pipe)

    @property
    def device(self) -> torch.device:
        return getattr(self.pipe, "_execution_device", None) or self.denoiser.device

    @property
    def dtype(self) -> torch.dtype:
        return self.denoiser.dtype


class PipelineCache:
    """Loaded pipelines keyed by (name, class, device, dtype, memory options): each is loaded once and reused.

    A pipeline added in memory (:meth:`put`) serves every request naming it; run as another class (LEDITS++ on
    a Stable Diffusion pipeline) it is converted once (:func:`variant`), sharing its models.
    """

    def __init__(self) -> None:
        self._items: dict[tuple[str, str, str, str, str], LoadedPipeline] = {}
        self._added: dict[str, LoadedPipeline] = {}
        self._lock = threading.Lock()

    def get(self, name: str, class_name: str, device: torch.device, dtype: torch.dtype, memory: MemoryOptions,
            config: dict[str, Any] | None = None) -> LoadedPipeline:
        key = (name, class_name, str(device), str(dtype), memory.key)
        with self._lock:
            if key not in self._items:
                pipe = load_pipeline(name, class_name, device=device, dtype=dtype, memory=memory, config=config)
                self._items[key] = LoadedPipeline(pipe, name, model_revision(name), memory)
            return self._items[key]

    def added(self, name: str) -> LoadedPipeline | None:
        """The pipeline added in memory under ``name``, if any."""
        with self._lock:
            return self._added.get(name)

    def as_class(self, loaded: LoadedPipeline, class_name: str) -> LoadedPipeline:
        """``loaded`` run as ``class_name`` (itself when it is one already; see :func:`variant`)."""
        if loaded.class_name == class_name:
            return loaded
        with self._lock:
            return LoadedPipeline(variant(loaded.pipe, class_name), loaded.name, loaded.revision, loaded.memory)

    def put(self, pipe, name: str, revision: str = "in-memory") -> LoadedPipeline:
        """Register a pipeline built in memory (tests, notebooks) under ``name``."""
        pipe.set_progress_bar_config(disable=True)
        loaded = LoadedPipeline(pipe, name, revision, MemoryOptions())
        with self._lock:
            self._added[name] = loaded
        return loaded
