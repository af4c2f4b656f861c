"""The editor: one entry point that validates a request, runs a method and records how the output was made."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import torch
from PIL import Image

from . import __version__
from .engine.blending import mask_to_pixels
from .engine.components import ComponentCache, Components, resolve_device, resolve_dtype
from .engine.guidance import UNetCounter
from .engine.latents import decode, image_to_tensor, mask_to_tensor, tensor_to_image
from .engine.prompts import PromptEncoder
from .errors import InvalidModelError, InvalidRequestError
from .io import crop_to, load_image, load_mask, pad_to_multiple, validate_text
from .methods import get_method
from .methods.base import EditContext, Method
from .types import EditRecord, EditRequest, EditResult

ProgressFactory = Callable[[int], object]


def tqdm_progress(description: str = "denoising") -> ProgressFactory:
    """A progress factory drawing one tqdm bar per denoising (or inversion) loop."""
    from tqdm.auto import tqdm

    return lambda total: tqdm(total=total, desc=description, leave=False)


class Editor:
    """Edits images with any registered method, loading each model once and reusing it.

    >>> editor = Editor()                                  # CPU fp32, or CUDA fp16 when present
    >>> result = editor.edit(EditRequest(image="cat.png", instruction="make it a tiger"))
    >>> result.image.save("tiger.png"); result.record.unet_calls
    """

    def __init__(
        self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
        progress: ProgressFactory | bool = False, default_models: dict[str, str] | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.progress = tqdm_progress() if progress is True else (progress or None)
        self.default_models = dict(default_models or {})
        self._models = ComponentCache()
        self._prompt_encoders: dict[int, PromptEncoder] = {}
        self._lock = threading.Lock()

    def add_model(self, components: Components) -> None:
        """Use ``components`` built in memory whenever a request names ``components.name``."""
        self._models.put(components)

    def model_for(self, method: Method, requested: str | None) -> str:
        """The model a request runs on: the one asked for, else this editor's default for the method's kind."""
        if requested:
            return requested
        from .models.builtin import builtin_model

        return self.default_models.get(method.model_kind) or builtin_model(method.model_kind) or method.default_model

    def load(self, name: str) -> Components:
        """The components of model ``name``, loaded on first use."""
        return self._models.get(name, self.device, self.dtype)

    def _prompts(self, components: Components) -> PromptEncoder:
        key = id(components.text_encoder)
        if key not in self._prompt_encoders:
            self._prompt_encoders[key] = PromptEncoder(components.tokenizer, components.text_encoder)
        return self._prompt_encoders[key]

    def edit(self, request: EditRequest) -> EditResult:
        """Run ``request``; the result holds the edited image, the mask used or produced, and the record."""
        start = time.perf_counter()
        method = get_method(request.method)
        texts = _validate_texts(method, request)
        image = load_image(request.image)
        mask = load_mask(request.mask, size=image.size) if request.mask is not None else None
        if mask is not None and not method.accepts_mask:
            raise InvalidRequestError(f"{method.name} does not take a mask: drop --mask or choose another method")
        model = self.model_for(method, request.model)
        components = self.load(model)
        _check_model_kind(method, components)
        params = method.resolve(dict(request.params or {}), components.defaults.get(method.name))
        seed = request.seed if request.seed is not None else random.randrange(2**32)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise InvalidRequestError(f"seed must be an integer from 0 to 2**64-1, got {seed!r}: pass e.g. --seed 0")

        padded, original_size = pad_to_multiple(image, components.vae_scale_factor)
        ctx = EditContext(
            components=components,
            prompts=self._prompts(components),
            image=image_to_tensor(padded).to(components.device, components.dtype),
            generator=torch.Generator(components.device).manual_seed(seed),
            mask=mask_to_tensor(pad_to_multiple(mask, components.vae_scale_factor)[0]).to(components.device)
            if mask is not None else None,
            progress=self.progress,
            **texts,
        )
        with self._lock, torch.inference_mode(), UNetCounter(components.unet_forward) as counter:
            output = method.run(ctx, **params)
            pixels = decode(components.vae, output.latents)
        edited = crop_to(tensor_to_image(pixels), original_size)
        out_mask = None
        if output.mask is not None:
            full = mask_to_pixels(output.mask, padded.size[::-1])[0, 0]
            out_mask = crop_to(Image.fromarray((full.cpu().numpy() * 255).astype("uint8"), "L"), original_size)
        record = EditRecord(
            method=method.name, model=model, params=params, seed=seed,
            instruction=texts.get("instruction"), source=texts.get("source"), target=texts.get("target"),
            image_size=original_size, wall_time_s=round(time.perf_counter() - start, 4),
            unet_calls=counter.calls, unet_evals=counter.evals,
            mask_source=None if out_mask is None else ("produced" if output.produced_mask else "user"),
            device=str(components.device), dtype=str(components.dtype).removeprefix("torch."), version=__version__,
        )
        return EditResult(image=edited, record=record, mask=out_mask)


_TEXT_NAMES = {"instruction": "instruction", "source": "source caption", "target": "target caption"}
_MISSING_HINTS = {
    "instruction": "give an instruction such as 'make the circle red'",
    "target": "give a target caption (--target) describing the edited image, and ideally a --source caption",
    "source": "give a source caption (--source) describing the input image",
}


def _validate_texts(method: Method, request: EditRequest) -> dict[str, str | None]:
    texts = {}
    for key, what in _TEXT_NAMES.items():
        raw = getattr(request, key)
        # A text the method needs may not be blank; a blank optional one means "not given".
        texts[key] = validate_text(raw, what=what, required=key in method.needs and raw is not None)
    for need in sorted(method.needs):
        if texts[need] is None:
            extra = ""
            if need == "target" and texts["instruction"]:
                extra = " (an instruction alone is not enough for this method: use --method ip2p, or give captions)"
            article = "an" if _TEXT_NAMES[need][0] in "aeiou" else "a"
            what = f"{article} {_TEXT_NAMES[need]}"
            raise InvalidRequestError(f"{method.name} needs {what}{extra}: {_MISSING_HINTS[need]}")
    return texts


def _check_model_kind(method: Method, components: Components) -> None:
    if method.model_kind == "ip2p" and not components.is_instruct:
        raise InvalidModelError(
            f"{method.name} needs an InstructPix2Pix model (UNet with {2 * components.latent_channels} input "
            f"channels), but '{components.name}' has {components.unet.config.in_channels}: pass --model "
            "timbrooks/instruct-pix2pix or another InstructPix2Pix checkpoint"
        )
    if method.model_kind == "t2i" and components.is_instruct:
        raise InvalidModelError(
            f"{method.name} needs a text-to-image model, but '{components.name}' is an InstructPix2Pix model: pass "
            "--model stable-diffusion-v1-5/stable-diffusion-v1-5 or another text-to-image checkpoint"
        )
