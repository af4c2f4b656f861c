"""FLUX.2 (Black Forest Labs, 2025): a flow-matching transformer that edits from reference images; [dev]
(32B, Mistral text encoder, ``Flux2Pipeline``) and [klein] (4B/9B, Qwen3 text encoder, ``Flux2KleinPipeline``).

Wraps whichever pipeline the model names, under its parameter names and defaults, with the input image as the
reference. Neither pipeline inpaints: with a mask the input is put back outside it.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequestError
from .base import Param
from .pipeline import PipelineMethod, text_param


class Flux2(PipelineMethod):
    def arguments(self, texts: dict[str, str | None], params: dict[str, Any]) -> dict[str, Any]:
        kwargs = super().arguments(texts, params)
        layers = kwargs.pop("text_encoder_out_layers").strip()
        if layers:
            try:
                kwargs["text_encoder_out_layers"] = tuple(int(part) for part in layers.split(","))
            except ValueError:
                raise InvalidRequestError(f"flux2: text_encoder_out_layers={layers!r} must be comma-separated "
                                          "layer numbers such as '10,20,30'", field="params.text_encoder_out_layers"
                                          ) from None
        return kwargs


METHOD = Flux2(
    name="flux2",
    description="FLUX.2 [dev]/[klein]: flow-matching transformer editing from the image as reference (diffusers "
                "pipeline)",
    needs=frozenset({"instruction"}),
    params=(
        Param("num_inference_steps", 50, "number of denoising steps (klein's distilled models use 4)", 1, 1000),
        Param("guidance_scale", 4.0, "guidance ([dev]: embedded; klein base: classifier-free)", 0, 100),
        Param("max_sequence_length", 512, "tokens of the instruction", 1, 1024),
        text_param("text_encoder_out_layers", "", "text-encoder layers whose states make the prompt embedding, "
                   "e.g. '10,20,30' (default: the pipeline's)"),
    ),
    model_kind="flux2",
    default_model="black-forest-labs/FLUX.2-dev",
    pipelines={"Flux2Pipeline": "Flux2Pipeline", "Flux2KleinPipeline": "Flux2KleinPipeline"},
    aliases=("flux.2", "flux2-klein"),
)
