"""InstructPix2Pix on SDXL (``diffusers/sdxl-instructpix2pix-768``, CosXL Edit): the instruction-conditioned
UNet of InstructPix2Pix at SDXL scale, with its two text encoders and size conditioning.

Wraps diffusers' ``StableDiffusionXLInstructPix2PixPipeline`` under its parameter names and defaults (guidance
5.0, image guidance 1.5, 100 steps). It does not inpaint: with a mask the input is put back outside it.
"""

from __future__ import annotations

from .base import ETA, Param
from .pipeline import PipelineMethod, text_param

METHOD = PipelineMethod(
    name="ip2p-xl",
    description="InstructPix2Pix on SDXL: instruction-conditioned SDXL UNet, dual guidance (diffusers pipeline)",
    needs=frozenset({"instruction"}),
    params=(
        Param("num_inference_steps", 100, "number of denoising steps", 1, 1000),
        Param("guidance_scale", 5.0, "classifier-free guidance scale on the instruction", 0, 100),
        Param("image_guidance_scale", 1.5, "guidance towards the input image; higher keeps more of it", 0, 100),
        text_param("negative_prompt", None, "what to steer away from"),
        ETA,
    ),
    model_kind="ip2p-xl",
    default_model="diffusers/sdxl-instructpix2pix-768",
    pipelines={"StableDiffusionXLInstructPix2PixPipeline": "StableDiffusionXLInstructPix2PixPipeline"},
    aliases=("sdxl-ip2p", "instruct-pix2pix-xl"),
)
