"""Qwen-Image-Edit (Qwen team, 2025): a 20B MMDiT conditioned on Qwen2.5-VL's reading of the image and
instruction, plus the image's VAE latents; -2509/-2511 (``QwenImageEditPlusPipeline``) take several images.

Wraps diffusers' ``QwenImageEditPipeline`` / ``QwenImageEditPlusPipeline`` (whichever the model names) under
their parameter names and defaults, with one deliberate difference: ``negative_prompt`` defaults to ``" "`` as
in the model cards, because without a negative prompt the pipeline silently turns true CFG off (users report
weaker edits: EditThinker #4). With a mask, ``QwenImageEditInpaintPipeline`` on the same models (``strength``
applies there); the Plus models, which have no inpainting variant, get the input put back outside the mask.
"""

from __future__ import annotations

from .base import Param
from .pipeline import PipelineMethod, text_param

METHOD = PipelineMethod(
    name="qwen-edit",
    description="Qwen-Image-Edit: MMDiT conditioned on Qwen2.5-VL's view of image and instruction (diffusers "
                "pipeline)",
    needs=frozenset({"instruction"}),
    params=(
        Param("num_inference_steps", 50, "number of denoising steps", 1, 1000),
        Param("true_cfg_scale", 4.0, "classifier-free guidance against negative_prompt (1 turns it off, halving "
              "the transformer calls)", 1, 100),
        text_param("negative_prompt", " ", "what to steer away from; true CFG needs one (the model cards use ' ')"),
        Param("guidance_scale", None, "for guidance-distilled checkpoints only: the embedded guidance", 0, 100,
              kind=float),
        Param("max_sequence_length", 512, "tokens of the instruction", 1, 1024),
        Param("height", None, "output height (default: about a megapixel at the input's aspect ratio)", 16, 8192,
              kind=int),
        Param("width", None, "output width (default: about a megapixel at the input's aspect ratio)", 16, 8192,
              kind=int),
        Param("strength", 0.6, "with a mask: how far the masked region departs from the input", 0, 1),
    ),
    model_kind="qwen-edit",
    default_model="Qwen/Qwen-Image-Edit-2509",
    pipelines={"QwenImageEditPipeline": "QwenImageEditPipeline",
               "QwenImageEditPlusPipeline": "QwenImageEditPlusPipeline"},
    inpaint_pipelines={"QwenImageEditPipeline": "QwenImageEditInpaintPipeline"},
    mask_only_params=("strength",),
    strength_param="strength",
    aliases=("qwen-image-edit", "qwen-image-edit-plus"),
)
