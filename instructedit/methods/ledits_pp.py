"""LEDITS++ (Brack et al., CVPR 2024): edit-friendly DDPM inversion, then semantic guidance per concept, each
confined to an implicit mask from its attention and noise estimate; several concepts at once, each added or
removed ("reverse" direction).

Wraps diffusers' ``LEditsPPPipelineStableDiffusion`` (``…XL`` for SDXL checkpoints), run on any Stable
Diffusion checkpoint: ``invert`` with the source caption, then the call with the concepts. The request's captions
give the concepts unless ``editing_prompt`` names them: the target's new words are added, the source's lost
words removed ("a blue circle" -> "a red circle": add "red", remove "blue"). A user mask multiplies the edit
guidance at latent resolution (the pipeline's ``user_mask``).

One deliberate difference: the pipeline accepts a DDIM scheduler but then fails in its inversion (it indexes
``alphas_cumprod`` with float timesteps), so a checkpoint with DDIM runs with the scheduler the pipeline picks
for every other one, ``DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", solver_order=2)``, the
LEDITS++ authors' choice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError
from .base import SD_MODEL, Param
from .pipeline import PipelineMethod, text_param

if TYPE_CHECKING:
    import torch
    from PIL import Image


def concepts(editing_prompt: str, source: str | None, target: str) -> tuple[list[str], list[bool]]:
    """The concepts to edit and whether each is removed: from ``editing_prompt`` ("red; -blue": a leading
    ``-`` removes) or, when it is empty, from the words the captions do not share."""
    from ..engine.alignment import changed_words

    if editing_prompt.strip():
        items = [item.strip() for item in editing_prompt.split(";") if item.strip()]
        pairs = [(item.removeprefix("-").strip(), item.startswith("-")) for item in items]
        if any(not concept for concept, _ in pairs):
            raise InvalidRequestError(f"ledits++: editing_prompt={editing_prompt!r} has an empty concept: write "
                                      "e.g. 'red; -blue'", field="params.editing_prompt")
    else:
        removed, added = changed_words(source, target) if source else ([], [target])
        pairs = [(" ".join(words), reverse) for words, reverse in ((added, False), (removed, True)) if words]
        if not pairs:
            raise InvalidRequestError("ledits++: the source and target captions are the same, so there is no "
                                      "concept to edit: change the target, or name concepts in editing_prompt",
                                      field="target")
    return [concept for concept, _ in pairs], [reverse for _, reverse in pairs]


class LeditsPlusPlus(PipelineMethod):
    def call(self, pipe, *, image: Image.Image, mask: Image.Image | None, texts: dict[str, str | None],
             params: dict[str, Any], generator: torch.Generator) -> Image.Image:
        import numpy as np
        import torch

        from ..engine.blending import mask_to_latent

        editing, reverse = concepts(params["editing_prompt"], texts["source"], texts["target"])
        ensure_dpm_solver(pipe)
        pipe.invert(image=image, source_prompt=texts["source"] or "",
                    source_guidance_scale=params["source_guidance_scale"],
                    num_inversion_steps=params["num_inversion_steps"], skip=params["skip"], generator=generator)
        user_mask = None
        if mask is not None:
            pixels = torch.from_numpy(np.asarray(mask.convert("L"), dtype=np.float32) / 255.0)[None, None]
            latent = pipe.init_latents.shape[-2:]
            user_mask = mask_to_latent((pixels > 0.5).float(), tuple(latent)).to(pipe.device)
        out = pipe(editing_prompt=editing, reverse_editing_direction=reverse,
                   edit_guidance_scale=params["edit_guidance_scale"], edit_threshold=params["edit_threshold"],
                   edit_warmup_steps=params["edit_warmup_steps"], use_intersect_mask=params["use_intersect_mask"],
                   use_cross_attn_mask=params["use_cross_attn_mask"], guidance_rescale=params["guidance_rescale"],
                   user_mask=user_mask, generator=generator, output_type="pil")
        return out.images[0]


def ensure_dpm_solver(pipe) -> None:
    """Give ``pipe`` the multistep SDE-DPM-Solver++ the pipeline picks for any scheduler but DDIM (see above)."""
    from diffusers import DPMSolverMultistepScheduler

    if not isinstance(pipe.scheduler, DPMSolverMultistepScheduler):
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config,
                                                                 algorithm_type="sde-dpmsolver++", solver_order=2)


METHOD = LeditsPlusPlus(
    name="ledits++",
    description="LEDITS++: edit-friendly DDPM inversion + semantic guidance per concept with implicit masks "
                "(diffusers pipeline, any Stable Diffusion checkpoint)",
    needs=frozenset({"target"}),
    params=(
        text_param("editing_prompt", "", "concepts to edit, ';'-separated, '-' in front removes one (default: "
                   "the target's new words added, the source's lost words removed)"),
        Param("num_inversion_steps", 30, "steps of the edit-friendly DDPM inversion", 1, 1000),
        Param("skip", 0.15, "share of the first inversion steps skipped (higher keeps more of the input)", 0, 0.99),
        Param("source_guidance_scale", 3.5, "guidance on the source caption while inverting", 0, 100),
        Param("edit_guidance_scale", 5.0, "semantic guidance per concept", 0, 100),
        Param("edit_threshold", 0.9, "quantile of the implicit mask: higher edits a smaller region", 0, 1),
        Param("edit_warmup_steps", 0, "steps before the edit guidance starts", 0, 1000),
        Param("use_intersect_mask", True, "intersect the attention mask with the noise-estimate mask"),
        Param("use_cross_attn_mask", False, "use the attention mask alone"),
        Param("guidance_rescale", 0.0, "rescale of the guided noise (Lin et al.)", 0, 1),
    ),
    model_kind="t2i",
    default_model=SD_MODEL,
    pipelines={"StableDiffusionPipeline": "LEditsPPPipelineStableDiffusion",
               "LEditsPPPipelineStableDiffusion": "LEditsPPPipelineStableDiffusion",
               "StableDiffusionXLPipeline": "LEditsPPPipelineStableDiffusionXL",
               "LEditsPPPipelineStableDiffusionXL": "LEditsPPPipelineStableDiffusionXL"},
    aliases=("ledits", "leditspp", "ledits-pp"),
)
