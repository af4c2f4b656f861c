"""FLUX.1 Kontext (Black Forest Labs, 2025): a 12B flow-matching transformer that reads the input image as
context tokens beside the text, distilled with guidance as an input (``guidance_scale``).

Wraps diffusers' ``FluxKontextPipeline`` under its own parameter names and defaults; with a mask,
``FluxKontextInpaintPipeline`` on the same loaded models (``strength`` applies there). The pipeline resizes the
input to the nearest resolution the model was trained at (``auto_resize``, within ``max_area`` pixels); the
editor returns the output at the input's size.
"""

from __future__ import annotations

from typing import Any

from .base import Param
from .pipeline import PipelineMethod, text_param


class Kontext(PipelineMethod):
    def arguments(self, texts: dict[str, str | None], params: dict[str, Any]) -> dict[str, Any]:
        kwargs = super().arguments(texts, params)
        kwargs["_auto_resize"] = kwargs.pop("auto_resize")
        return kwargs


METHOD = Kontext(
    name="kontext",
    description="FLUX.1 Kontext: flow-matching transformer with the image as context (diffusers pipeline)",
    needs=frozenset({"instruction"}),
    params=(
        Param("num_inference_steps", 28, "number of denoising steps", 1, 1000),
        Param("guidance_scale", 3.5, "guidance strength the distilled model takes as an input", 0, 100),
        Param("true_cfg_scale", 1.0, "real classifier-free guidance against negative_prompt; above 1 (with a "
              "negative_prompt) it doubles the transformer calls", 1, 100),
        text_param("negative_prompt", None, "what to steer away from, with true_cfg_scale > 1"),
        Param("max_sequence_length", 512, "T5 tokens of the instruction", 1, 512),
        Param("max_area", 1024**2, "pixels of the working resolution the input is resized to", 64, 4096**2),
        Param("auto_resize", True, "resize the input to the nearest resolution the model was trained at"),
        Param("strength", 1.0, "with a mask: how far the masked region departs from the input", 0, 1),
    ),
    model_kind="kontext",
    default_model="black-forest-labs/FLUX.1-Kontext-dev",
    pipelines={"FluxKontextPipeline": "FluxKontextPipeline"},
    inpaint_pipelines={"FluxKontextPipeline": "FluxKontextInpaintPipeline"},
    mask_only_params=("strength",),
    strength_param="strength",
    aliases=("flux-kontext", "flux.1-kontext"),
)
