"""LongCat-Image-Edit (Meituan, 2025): a 6B flow-matching transformer conditioned on Qwen2.5-VL, strong for its
size on GEdit-Bench.

Wraps diffusers' ``LongCatImageEditPipeline`` under its parameter names and defaults. It does not inpaint: with
a mask the input is put back outside it.
"""

from __future__ import annotations

from .base import Param
from .pipeline import PipelineMethod, text_param

METHOD = PipelineMethod(
    name="longcat-edit",
    description="LongCat-Image-Edit: 6B flow-matching transformer conditioned on Qwen2.5-VL (diffusers pipeline)",
    needs=frozenset({"instruction"}),
    params=(
        Param("num_inference_steps", 50, "number of denoising steps", 1, 1000),
        Param("guidance_scale", 4.5, "classifier-free guidance scale", 0, 100),
        text_param("negative_prompt", None, "what to steer away from"),
    ),
    model_kind="longcat-edit",
    default_model="meituan-longcat/LongCat-Image-Edit",
    pipelines={"LongCatImageEditPipeline": "LongCatImageEditPipeline"},
    aliases=("longcat", "longcat-image-edit"),
)
