"""What the editors that wrap a whole diffusers pipeline share (FLUX.1 Kontext, FLUX.2, Qwen-Image-Edit, ...).

These models are multimodal diffusion transformers with their own text encoders and samplers: none of our
shared steps applies, so a :class:`PipelineMethod` calls the pipeline itself, under the pipeline's own
parameter names and defaults, and the editor records it as fully as our own methods (parameters, seed, time,
denoiser calls counted by a hook, the weights' revision). A mask is honoured by the pipeline's inpainting
variant where diffusers has one (``inpaint_pipelines``), else by putting the input back outside it (every pixel
outside the mask is the input's), or refused (``accepts_mask=False``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidModelError
from .base import Method, Param

if TYPE_CHECKING:
    import torch
    from PIL import Image


@dataclass
class PipelineMethod(Method):
    """A method that is one diffusers pipeline call.

    ``pipelines`` maps the pipeline class a model's ``model_index.json`` names to the class this method runs
    it as (the same class, or e.g. LEDITS++ on a Stable Diffusion checkpoint); ``inpaint_pipelines`` maps a
    class run to its inpainting variant, used with a mask.
    """

    pipelines: dict[str, str] = field(default_factory=dict)
    inpaint_pipelines: dict[str, str] = field(default_factory=dict)
    mask_only_params: tuple[str, ...] = ()  # parameters that only the inpainting variant takes

    @property
    def runs_pipeline(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pipelines": sorted(set(self.pipelines.values())),
                "inpaint_pipelines": sorted(set(self.inpaint_pipelines.values()))}

    def check_model(self, components) -> None:  # pipeline methods check the pipeline class instead
        return None

    def pipeline_for(self, class_name: str) -> str:
        """The pipeline class to run a model of ``class_name`` as; a clear error naming the ``model`` field (and
        the method that fits) for a model this method cannot run."""
        if class_name in self.pipelines:
            return self.pipelines[class_name]
        from . import available_methods

        fitting = next((m.name for m in available_methods() if class_name in getattr(m, "pipelines", {})), None)
        hint = f"use method='{fitting}' for it, or " if fitting else ""
        raise InvalidModelError(
            f"{self.name} runs {' or '.join(sorted(set(self.pipelines)))} models, but the model is a {class_name}: "
            f"{hint}give model='{self.default_model}' or another such checkpoint",
            field="model", suggest={"method": fitting} if fitting else {"model": self.default_model},
        )

    def arguments(self, texts: dict[str, str | None], params: dict[str, Any]) -> dict[str, Any]:
        """The pipeline's keyword arguments besides ``image`` and ``generator``: by default the instruction as
        ``prompt`` and every parameter under its own name (the inpaint-only ones dropped)."""
        kwargs = {name: value for name, value in params.items() if name not in self.mask_only_params}
        kwargs["prompt"] = texts["instruction"]
        return kwargs

    def call(self, pipe, *, image: Image.Image, mask: Image.Image | None, texts: dict[str, str | None],
             params: dict[str, Any], generator: torch.Generator) -> Image.Image:
        """Run the pipeline once on ``image`` (and ``mask``, white = edit); the edited image."""
        kwargs = self.arguments(texts, params)
        inpaint = self.inpaint_pipelines.get(type(pipe).__name__) if mask is not None else None
        if inpaint is not None:
            from ..engine.pipelines import variant

            pipe = variant(pipe, inpaint)
            kwargs.update({name: params[name] for name in self.mask_only_params}, mask_image=mask)
        edited = pipe(image=image, generator=generator, output_type="pil", **kwargs).images[0]
        if mask is not None and inpaint is None:
            from ..inputs import paste_outside

            edited = paste_outside(image, edited.resize(image.size), mask, feather=0.0)
        return edited


def text_param(name: str, default: str, help: str) -> Param:
    return Param(name, default, help, kind=str)
