"""Quality of models on the reference domain's held-out split, measured by its exact oracles.

    python -m instructedit.evaluation.builtin_quality [--samples 140] [--t2i MODEL] [--ip2p MODEL] [--json OUT]

Reports, per method and per edit type, the share of edits the oracle finds applied (also on held-out
phrasings), PSNR and L1 against the input outside the edit mask, seconds per edit; and for the text-to-image
model, the share of held-out captions whose objects the detector finds with the right colour and shape.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..types import EditRequest

CAPTION_METHODS = ("sdedit", "encode-decode", "diffedit")


@dataclass
class MethodQuality:
    """Oracle figures of one method over a set of held-out samples."""

    method: str
    applied: float
    applied_by_type: dict[str, float]
    applied_heldout_phrasing: float | None
    psnr_outside_mask: float
    l1_outside_mask: float
    seconds_per_edit: float
    count: int
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "rows"}
        return data


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(finite) if finite else float("nan")


def sample_request(sample, method: str, model: str | None = None, params: dict | None = None,
                   seed: int = 0) -> EditRequest:
    """The edit request of a domain sample: its instruction for InstructPix2Pix, its captions otherwise."""
    instructed = method == "ip2p"
    return EditRequest(
        image=sample.source_image(), method=method, model=model, params=dict(params or {}), seed=seed,
        instruction=sample.instruction if instructed else None,
        source=None if instructed else sample.source_caption,
        target=None if instructed else sample.target_caption,
    )


def evaluate_method(editor, samples, method: str, model: str | None = None, params: dict | None = None,
                    seed: int = 0) -> MethodQuality:
    """Run ``method`` on every sample and score each output with the domain's oracles."""
    from ..domain import edit_applied, preservation

    rows = []
    for sample in samples:
        request = sample_request(sample, method, model, params, seed)
        start = time.perf_counter()
        result = editor.edit(request)
        seconds = time.perf_counter() - start
        kept = preservation(result.image, sample.source_image(), sample.mask_image())
        rows.append({"id": sample.id, "edit_type": sample.edit_type, "heldout_phrasing": sample.heldout_phrasing,
                     "applied": bool(edit_applied(result.image, sample)), "psnr": kept["psnr"], "l1": kept["l1"],
                     "seconds": seconds})
    by_type: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        by_type[row["edit_type"]].append(row["applied"])
    heldout = [row["applied"] for row in rows if row["heldout_phrasing"]]
    psnrs = [min(row["psnr"], 100.0) for row in rows if row["psnr"] is not None]
    return MethodQuality(
        method=method,
        applied=_mean([row["applied"] for row in rows]),
        applied_by_type={k: _mean(v) for k, v in sorted(by_type.items())},
        applied_heldout_phrasing=_mean(heldout) if heldout else None,
        psnr_outside_mask=_mean(psnrs),
        l1_outside_mask=_mean([row["l1"] for row in rows if row["l1"] is not None]),
        # the median: the first edit also loads the model
        seconds_per_edit=statistics.median(row["seconds"] for row in rows) if rows else float("nan"),
        count=len(rows),
        rows=rows,
    )


@torch.inference_mode()
def generate(components, prompt: str, *, num_inference_steps: int = 20, guidance_scale: float = 5.0, seed: int = 0):
    """Text-to-image with the engine's own steps: noise, guided DDIM denoising, decoding."""
    from diffusers.utils.torch_utils import randn_tensor

    from ..engine.guidance import CFGDenoiser
    from ..engine.latents import decode, tensor_to_image
    from ..engine.prompts import PromptEncoder
    from ..engine.sampling import denoise, make_scheduler

    prompts = PromptEncoder(components.tokenizer, components.text_encoder)
    scheduler = make_scheduler(components.scheduler, "ddim")
    scheduler.set_timesteps(num_inference_steps)
    side = int(components.unet.config.sample_size)
    generator = torch.Generator(components.device).manual_seed(seed)
    noise = randn_tensor((1, components.latent_channels, side, side), generator=generator,
                         device=components.device, dtype=components.dtype)
    uncond = prompts("") if guidance_scale > 1 else None
    denoiser = CFGDenoiser(components.unet_forward, prompts(prompt), uncond, guidance_scale)
    latents = denoise(denoiser, scheduler, noise * scheduler.init_noise_sigma, scheduler.timesteps)
    return tensor_to_image(decode(components.vae, latents))


def evaluate_text_to_image(components, samples, **kwargs) -> dict[str, Any]:
    """How well images sampled from held-out source captions show them, by the domain's detector.

    ``caption_accuracy`` is the issue's bar: the share of captions whose every object is found with the right
    colour and shape. ``object_recall`` (captioned objects found) and ``background_accuracy`` (background colour
    right) say how far a model that misses the bar is from it.
    """
    from ..domain.detect import caption_report, report_satisfied

    reports = [caption_report(generate(components, s.source_caption, seed=i, **kwargs), s.source_scene)
               for i, s in enumerate(samples)]
    objects = [row["found"] for report in reports for row in report["objects"]]
    return {
        "caption_accuracy": _mean([report_satisfied(report) for report in reports]),
        "object_recall": _mean(objects),
        "background_accuracy": _mean([report["background_ok"] for report in reports]),
        "count": len(reports),
    }


def held_out_samples(count: int, seed: int = 1, size: int = 64):
    """A fixed, balanced held-out sample: ``count`` test-split edits (all seven types in turn)."""
    from ..domain import generate_samples

    return generate_samples("test", count, seed=seed, size=size)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate the built-in (or given) models and print a table; optionally write JSON."""
    from ..editor import Editor
    from ..models.builtin import builtin_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=140)
    parser.add_argument("--t2i", default=builtin_model("t2i"))
    parser.add_argument("--ip2p", default=builtin_model("ip2p"))
    parser.add_argument("--methods", default="ip2p,sdedit,encode-decode,diffedit")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    samples = held_out_samples(args.samples)
    editor = Editor(device="cpu")
    report: dict[str, Any] = {"samples": len(samples), "methods": {}}
    for method in args.methods.split(","):
        model = args.ip2p if method == "ip2p" else args.t2i
        quality = evaluate_method(editor, samples, method, model)
        report["methods"][method] = quality.summary()
        types = " ".join(f"{k}={v:.2f}" for k, v in quality.applied_by_type.items())
        print(f"{method:<14} applied {quality.applied:.3f} (held-out phrasings {quality.applied_heldout_phrasing}) "
              f"PSNR-outside {quality.psnr_outside_mask:.2f} dB  L1 {quality.l1_outside_mask:.4f}  "
              f"{quality.seconds_per_edit:.3f} s/edit\n    {types}")
    if args.t2i:
        t2i = evaluate_text_to_image(editor.load(args.t2i), samples[: max(1, args.samples // 2)])
        report["text_to_image"] = t2i
        print(f"text-to-image  caption accuracy {t2i['caption_accuracy']:.3f}, "
              f"objects found {t2i['object_recall']:.3f}, "
              f"background right {t2i['background_accuracy']:.3f} on {t2i['count']} held-out captions")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2, default=float)
    return report


if __name__ == "__main__":
    main()
