"""The editor: one entry point that validates a request, runs a method and records how the output was made."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from .engine.blending import mask_to_pixels
from .engine.components import ComponentCache, Components, read_model_defaults, resolve_device, resolve_dtype
from .engine.geometry import crop_to, pad_to_multiple
from .engine.guidance import UNetCounter
from .engine.latents import decode, image_to_tensor, mask_to_tensor, tensor_to_image
from .engine.prompts import PromptEncoder
from .errors import InvalidModelError, InvalidRequestError
from .inputs import DEFAULT_MAX_PIXELS, read_inputs, validate_text
from .methods import available_methods, get_method
from .methods.base import EditContext, Method
from .types import EditRecord, EditRequest, EditResult
from .version import __version__

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

    Edits may come from several threads: edits on one model run one at a time (a model's UNet, its traces and
    its attention processors are not safe to share), edits on different models run at the same time.
    ``max_pixels`` bounds the input images (a decompression-bomb guard; ``None`` removes it). ``planner`` turns
    instructions into edit plans (default: the rule-based planner; see :mod:`instructedit.instructions`), and
    ``default_grounder`` names the grounding backend a request with ``ground="auto"`` uses (a phrase naming a
    person — "the man", "her" — goes to the ``person`` backend instead). ``captioner`` (a
    :class:`~instructedit.captioning.Captioner` or its name, e.g. ``"builtin"`` or ``"blip"``) captions the
    source image when a caption method is given only an instruction, so each plan edits the whole image's
    caption; without one (or when the request has its own ``source``) the plan's local captions are used.
    ``cache_bytes`` bounds the :class:`~instructedit.engine.cache.EditCache` of results later edits of the same
    image reuse (DDIM inversions: a sweep of strengths inverts once); 0 turns it off. Outputs are the same either
    way. ``memory`` (:class:`~instructedit.engine.memory.MemoryOptions`: model or sequential CPU offload, VAE
    tiling and slicing, attention slicing) applies to every method, its quantised weights to the methods that wrap
    a whole diffusers pipeline (Kontext, Qwen-Image-Edit ...), which on CUDA run in bfloat16 unless ``dtype`` is
    given (``dtype="bfloat16"`` also speeds up the Stable-Diffusion-style methods on a CPU).
    """

    def __init__(
        self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
        progress: ProgressFactory | bool = False, default_models: dict[str, str] | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS, planner=None, default_grounder: str = "builtin",
        captioner=None, cache_bytes: int = 512 * 2**20, memory=None,
    ) -> None:
        from .engine.cache import EditCache
        from .engine.memory import MemoryOptions
        from .engine.pipelines import PipelineCache

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        # the large pipeline editors are published in bfloat16: on CUDA they get it unless a dtype is given
        self.pipeline_dtype = self.dtype if dtype is not None or self.device.type != "cuda" else torch.bfloat16
        self.memory = memory if memory is not None else MemoryOptions()
        self._pipelines = PipelineCache()
        self._family_checked: set[str] = set()
        self.progress = tqdm_progress() if progress is True else (progress or None)
        self.default_models = dict(default_models or {})
        self.max_pixels = max_pixels
        self.planner = planner  # an instructions.Planner; None = the rule-based planner
        self.default_grounder = default_grounder  # the backend request.ground="auto" uses
        self.captioner = captioner  # a captioning.Captioner, its name, or None
        self._grounders: dict[tuple, object] = {}
        self._added_grounders: dict[str, object] = {}
        self._models = ComponentCache()
        self._prompt_encoders: dict[int, PromptEncoder] = {}
        self._model_locks: dict[int, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self.cache = EditCache(cache_bytes) if cache_bytes else None  # inversions reused by later edits

    def add_model(self, components: Components) -> None:
        """Use ``components`` built in memory whenever a request names ``components.name``."""
        self._models.put(components)

    def add_pipeline(self, pipe, name: str) -> None:
        """Use the diffusers pipeline ``pipe`` built in memory whenever a pipeline method's request names
        ``name``."""
        self._pipelines.put(pipe, name)

    def load_pipeline(self, method: Method, name: str):
        """The :class:`~instructedit.engine.pipelines.LoadedPipeline` ``method`` runs model ``name`` as, loaded
        on first use (a clear error naming the ``model`` field when the model is of another family)."""
        from .engine.pipelines import pipeline_config

        added = self._pipelines.added(name)
        if added is not None:
            return self._pipelines.as_class(added, method.pipeline_for(added.class_name))
        config = pipeline_config(name)
        run_as = method.pipeline_for(str(config.get("_class_name")))
        return self._pipelines.get(name, run_as, self.device, self.pipeline_dtype, self.memory, config)

    def _check_family(self, method: Method, model: str) -> None:
        """A clear error, before loading, when ``model`` is a pipeline only a pipeline method runs (an SDXL
        InstructPix2Pix, a FLUX or Qwen editor) and ``method`` composes Stable-Diffusion components."""
        if model in self._family_checked:
            return
        from .engine.pipelines import model_class_name
        from .methods.base import MODEL_KINDS

        class_name = model_class_name(model)
        fitting = [m for m in available_methods() if m.runs_pipeline and class_name in getattr(m, "pipelines", {})]
        if fitting and not any(m.model_kind in MODEL_KINDS for m in fitting):
            raise InvalidModelError(
                f"'{model}' is a {class_name}, which {method.name} cannot run: use method='{fitting[0].name}' for "
                f"it, or give {method.name} a model='{method.default_model}'-style checkpoint",
                field="model", suggest={"method": fitting[0].name},
            )
        self._family_checked.add(model)

    def add_grounder(self, grounder, default: bool = False) -> None:
        """Use ``grounder`` (any :class:`~instructedit.grounding.Grounder`) when a request grounds with its
        ``name``; with ``default=True`` also for ``ground="auto"``."""
        self._added_grounders[grounder.name] = grounder
        if default:
            self.default_grounder = grounder.name

    def model_for(self, method: Method, requested: str | None) -> str:
        """The model a request runs on: the one asked for, else this editor's default for the method's kind."""
        if requested:
            return requested
        from .models.builtin import builtin_model

        return self.default_models.get(method.model_kind) or builtin_model(method.model_kind) or method.default_model

    def load(self, name: str, lora: str | None = None, lora_scale: float = 1.0) -> Components:
        """The components of model ``name``, loaded on first use; with ``lora`` (hub id, folder or file), a copy
        with that LoRA fused in at ``lora_scale`` (see :mod:`instructedit.engine.lora`)."""
        return self._models.get(name, self.device, self.dtype, lora, lora_scale, self.memory)

    def _prompts(self, components: Components) -> PromptEncoder:
        key = id(components.text_encoder)
        with self._locks_lock:
            if key not in self._prompt_encoders:
                self._prompt_encoders[key] = PromptEncoder(components.tokenizer, components.text_encoder)
            return self._prompt_encoders[key]

    def _lock_for(self, components: Components) -> threading.Lock:
        return self._lock_for_module(components.unet)

    def _lock_for_module(self, module) -> threading.Lock:
        with self._locks_lock:
            return self._model_locks.setdefault(id(module), threading.Lock())

    def edit(self, request: EditRequest) -> EditResult:
        """Run ``request``; the result holds the edited image, the mask used or produced, and the record.

        An instruction is planned (:mod:`instructedit.instructions`) when ``request.plan`` is true, or, when it
        is ``None``, where a method cannot run without it: a caption method given only an instruction (the plan
        supplies the captions) and a grounded edit (the plan names the entity to ground). Instruction methods
        read the user's words as given unless ``plan=True`` (then they read each plan's canonical wording, which
        learned editors follow best, and a compound request becomes one turn per plan), so by default they equal
        the reference pipelines on the same text. Each plan is one turn, applied to the previous turn's output;
        the record keeps the user's words, the plans and the turns.
        """
        method = get_method(request.method)
        if self._wants_plan(method, request):
            return self._edit_planned(method, request)
        return self._edit_once(method, request)

    def check(self, request: EditRequest) -> None:
        """Raise the error :meth:`edit` would raise for ``request``'s own fields (method, texts, image, mask,
        params, seed), without loading a model or running anything: what a service answers before queueing."""
        method = get_method(request.method)
        if self._wants_plan(method, request):
            validate_text(request.instruction, what="instruction")
            read_inputs(request, needs=(), accepts_mask=method.accepts_mask, method=method.name,
                        max_pixels=self.max_pixels)
        else:
            read_inputs(request, needs=method.needs, accepts_mask=method.accepts_mask, method=method.name,
                        max_pixels=self.max_pixels,
                        instruction_methods=[m.name for m in available_methods() if m.takes_instruction])
        _check_seed(request.seed)
        method.resolve(dict(request.params or {}))

    def _wants_plan(self, method: Method, request: EditRequest) -> bool:
        if request.plan is False or request.instruction is None or not str(request.instruction).strip():
            if request.plan is False and _grounded(request):
                raise InvalidRequestError("grounding needs a planned instruction to find the entity: drop plan=False "
                                          "or ground", field="ground")
            return False
        if request.plan is True or _grounded(request):
            return True
        return not method.takes_instruction and request.target is None

    def _captioner(self):
        if isinstance(self.captioner, str):
            from .captioning import make_captioner

            self.captioner = make_captioner(self.captioner)
        return self.captioner

    def _planner(self):
        if self.planner is None:
            from .instructions import RuleBasedPlanner

            self.planner = RuleBasedPlanner()
        return self.planner

    def _edit_planned(self, method: Method, request: EditRequest) -> EditResult:
        from .instructions.captions import local_captions

        start = time.perf_counter()
        instruction = validate_text(request.instruction, what="instruction")
        planner = self._planner()
        current = read_inputs(request, needs=(), accepts_mask=method.accepts_mask, method=method.name,
                              max_pixels=self.max_pixels)
        image, user_mask = current.image, current.mask
        caption, captioner = request.source, None
        if caption is None and self.captioner is not None and not method.takes_instruction:
            captioner = self._captioner()
            caption = captioner.caption(image)
        try:
            plans = planner.plan(instruction, caption=caption)
        except InvalidRequestError:
            if method.takes_instruction and not _grounded(request):
                return self._edit_once(method, request)  # the editor may still understand what the planner did not
            raise
        if request.seed is None:  # one seed for every turn, recorded
            request = replace(request, seed=random.randrange(2**32))
        turns, results = [], []
        for plan in plans:
            if method.takes_instruction:
                texts = {"instruction": plan.instruction, "source": None, "target": None}
            elif request.target is not None and len(plans) == 1:  # the user's own captions win
                texts = {"instruction": None, "source": request.source, "target": request.target}
            else:
                source, target = local_captions(plan)
                texts = {"instruction": None, "source": source, "target": target}
            mask, grounding = user_mask, None
            if _grounded(request):
                grounding = self._ground(method, request, image, plan)
                mask = grounding.mask if grounding is not None else user_mask
            turn = replace(request, image=image, mask=mask, plan=False, ground=None, **texts)
            result = self._edit_once(method, turn, mask_source="grounded" if grounding is not None else None)
            if grounding is not None and grounding.details.get("paste_back"):
                from .grounding import paste_outside

                result = replace(result, image=paste_outside(image, result.image, grounding.mask,
                                                             feather=grounding.details["feather"]))
            image = result.image
            results.append(result)
            turns.append({**{k: v for k, v in result.record.to_dict().items()
                             if k in ("instruction", "source", "target", "params", "mask_source", "unet_calls",
                                      "unet_evals", "wall_time_s")},
                          "plan": plan.to_dict(), "grounding": grounding.to_record() if grounding else None})
        last = results[-1].record
        masks = [r.mask for r in results if r.mask is not None]
        union = None
        if masks:
            union = Image.fromarray(np.maximum.reduce([np.asarray(m) for m in masks]).astype("uint8"), "L")
        record = replace(
            last, instruction=instruction, source=request.source, target=request.target,
            wall_time_s=round(time.perf_counter() - start, 4), unet_calls=sum(r.record.unet_calls for r in results),
            unet_evals=sum(r.record.unet_evals for r in results),
            mask_source=_combined({r.record.mask_source for r in results}),
            planner=getattr(planner, "name", type(planner).__name__), plans=[p.to_dict() for p in plans],
            turns=turns, captioner=getattr(captioner, "name", None),
        )
        return EditResult(image=image, record=record, mask=union)

    def _ground(self, method: Method, request: EditRequest, image: Image.Image, plan):
        """The dilated mask of ``plan``'s entity, or ``None`` for a whole-image edit; a clear error when the
        entity is not found."""
        from .grounding import DEFAULT_THRESHOLD, Grounding, dilate
        from .grounding.regions import edit_region, location_mask

        if not plan.is_local:
            return None
        options = dict(request.ground_options or {})
        dilation = int(options.pop("dilation", DEFAULT_DILATION))
        threshold = float(options.pop("min_score", DEFAULT_THRESHOLD))
        paste_back = bool(options.pop("paste_back", True))
        feather = float(options.pop("feather", DEFAULT_FEATHER))
        if not 0 <= feather <= 16:
            raise InvalidRequestError(f"ground_options feather must be 0 to 16 pixels, got {feather!r}",
                                      field="ground_options.feather")
        phrase = plan.entity or ("the background" if plan.type == "background" else None)
        if phrase is None:  # an addition: the place it names, else the whole image
            region = location_mask(plan.location, image.size)
            if region is None:
                return None
            found = Grounding(plan.location, region, 1.0, "location")
        else:
            found = self._grounder(method, request, options, phrase).ground(image, phrase)
        if not found.found or found.score < threshold:
            raise InvalidRequestError(
                f"could not find '{phrase}' in the image ({found.backend} score {found.score:.2f} < {threshold}): "
                "name it as it appears, choose another grounding backend, or edit without grounding (ground='off')",
                field="ground", suggest={"ground": "off"},
            )
        region = edit_region(plan, found.mask) if phrase is not None and plan.type != "background" else found.mask
        if region is None:
            return None  # a relative move: the whole image
        found.mask = dilate(region, dilation)
        found.details["dilation"] = dilation
        found.details["paste_back"] = paste_back
        found.details["feather"] = feather
        return found

    def _grounder(self, method: Method, request: EditRequest, options: dict, phrase: str):
        from .grounding import make_grounder
        from .grounding.person import names_person

        name = request.ground
        if name == "auto":  # people are the selfie segmenter's; everything else the editor's default backend
            name = "person" if names_person(phrase) else self.default_grounder
        if name in self._added_grounders:
            return self._added_grounders[name]
        key = (name, request.model or "", json.dumps(options, sort_keys=True, default=str))
        if key not in self._grounders:
            components = None
            if name in ("attention", "noise-difference"):
                t2i = next(m for m in available_methods() if m.model_kind == "t2i")
                model = request.model if method.model_kind == "t2i" and request.model else self.model_for(t2i, None)
                components = self.load(model)
            self._grounders[key] = make_grounder(name, components=components, **options)
        return self._grounders[key]

    def _prepare(self, method: Method, request: EditRequest):
        """The request's checked inputs, its seed (drawn when unset) and the model it runs on."""
        inputs = read_inputs(
            request, needs=method.needs, accepts_mask=method.accepts_mask, method=method.name,
            max_pixels=self.max_pixels, instruction_methods=[m.name for m in available_methods()
                                                             if m.takes_instruction],
        )
        seed = _check_seed(request.seed if request.seed is not None else random.randrange(2**32))
        if request.lora is not None:
            from .engine.lora import check_lora_scale

            if not isinstance(request.lora, str) or not request.lora.strip():
                raise InvalidRequestError("lora must name a LoRA (hub id, folder or .safetensors file), or be left "
                                          "out", field="lora")
            check_lora_scale(request.lora_scale)
        return inputs, seed, self.model_for(method, request.model)

    def _edit_pipeline(self, method: Method, request: EditRequest, mask_source: str | None = None) -> EditResult:
        start = time.perf_counter()
        inputs, seed, model = self._prepare(method, request)
        if request.lora is not None:
            raise InvalidRequestError(
                f"{method.name} runs a diffusers pipeline, which takes its LoRA on the pipeline: call "
                "pipe.load_lora_weights(...) and give it to Editor.add_pipeline(pipe, name), then request that "
                "name as the model; leave the request's lora out", field="lora")
        loaded = self.load_pipeline(method, model)
        params = method.resolve(dict(request.params or {}), read_model_defaults(model).get(method.name))
        # a CPU generator: the pipelines draw their noise on the CPU from it, so a seed means the same on any device
        generator = torch.Generator("cpu").manual_seed(seed)
        with self._lock_for_module(loaded.denoiser), torch.inference_mode(), UNetCounter(loaded.denoiser) as counter:
            edited = method.call(loaded.pipe, image=inputs.image, mask=inputs.mask, texts=inputs.texts, params=params,
                                 generator=generator)
        if edited.size != inputs.image.size:  # the pipelines work at their own resolutions; answer at the input's
            edited = edited.resize(inputs.image.size, Image.Resampling.LANCZOS)
        texts = inputs.texts
        record = EditRecord(
            method=method.name, model=model, params=params, seed=seed,
            instruction=texts.get("instruction"), source=texts.get("source"), target=texts.get("target"),
            image_size=inputs.image.size, wall_time_s=round(time.perf_counter() - start, 4),
            unet_calls=counter.calls, unet_evals=counter.evals,
            mask_source=None if inputs.mask is None else (mask_source or "user"),
            device=str(loaded.device), dtype=str(loaded.dtype).removeprefix("torch."), version=__version__,
            model_revision=loaded.revision, memory=loaded.memory.to_dict(),
        )
        return EditResult(image=edited.convert("RGB"), record=record, mask=inputs.mask)

    def _edit_once(self, method: Method, request: EditRequest, mask_source: str | None = None) -> EditResult:
        if method.runs_pipeline:
            return self._edit_pipeline(method, request, mask_source)
        start = time.perf_counter()
        inputs, seed, model = self._prepare(method, request)
        image, mask, texts = inputs.image, inputs.mask, inputs.texts
        self._check_family(method, model)
        components = self.load(model, request.lora, request.lora_scale)
        method.check_model(components)
        params = method.resolve(dict(request.params or {}), components.defaults.get(method.name))

        padded, original_size = pad_to_multiple(image, components.vae_scale_factor)
        ctx = EditContext(
            components=components,
            prompts=self._prompts(components),
            image=image_to_tensor(padded).to(components.device, components.dtype),
            generator=torch.Generator(components.device).manual_seed(seed),
            mask=mask_to_tensor(pad_to_multiple(mask, components.vae_scale_factor)[0]).to(components.device)
            if mask is not None else None,
            progress=self.progress,
            cache=self.cache,
            **texts,
        )
        with self._lock_for(components), torch.inference_mode(), UNetCounter(components.unet_forward) as counter:
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
            mask_source=None if out_mask is None else (
                "produced" if output.produced_mask else (mask_source or "user")),
            device=str(components.device), dtype=str(components.dtype).removeprefix("torch."), version=__version__,
            lora=request.lora, lora_scale=None if request.lora is None else float(request.lora_scale),
            memory=None if components.memory is None else components.memory.to_dict(),
        )
        return EditResult(image=edited, record=record, mask=out_mask)


DEFAULT_DILATION = 2
"""Pixels a grounded mask grows by before editing (see :func:`instructedit.grounding.dilate`)."""
DEFAULT_FEATHER = 0.0
"""Pixels of soft seam (inside the mask) where a grounded edit's result meets the pasted-back input. 0: a hard
seam, which lies in the dilation margin (background on both sides); a 1-pixel feather cost SDEdit 2 of 140
edits on the 64-pixel domain, whose small objects reach that margin."""


def _check_seed(seed: object) -> object:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
        raise InvalidRequestError(f"seed must be an integer from 0 to 2**64-1, got {seed!r}: give e.g. seed=0",
                                  field="seed", suggest={"seed": 0})
    return seed


def _grounded(request: EditRequest) -> bool:
    return request.ground not in (None, "", "off")


def _combined(sources: set[str | None]) -> str | None:
    sources.discard(None)
    if not sources:
        return None
    return sources.pop() if len(sources) == 1 else "mixed"
