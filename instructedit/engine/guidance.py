"""Classifier-free guidance as wrappers around the UNet (k-diffusion's ``CFGDenoiser`` idea).

A denoiser is called as ``denoiser(x, t)`` with latents already scaled by the scheduler, and returns the guided
model output (noise, or v for v-prediction models). All guidance branches go through the UNet in one batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def guided_predictions(
    unet, x: torch.Tensor, t, conds: Sequence[torch.Tensor], uncond: torch.Tensor | None, guidance_scale: float
) -> list[torch.Tensor]:
    """Guided outputs of ``unet`` at ``x`` for several text conditions, in one batched call.

    With ``guidance_scale > 1`` each condition ``c`` gives ``e(x, u) + s * (e(x, c) - e(x, u))``; the batch is laid
    out ``[u, c1, u, c2, ...]`` as diffusers' pipelines lay it out. Otherwise the unguided ``e(x, c)``.
    """
    guided = guidance_scale > 1.0
    hidden = []
    for cond in conds:
        hidden += [uncond.expand_as(cond), cond] if guided else [cond]
    latents = torch.cat([x] * len(hidden))
    out = unet(latents, t, encoder_hidden_states=torch.cat(hidden), return_dict=False)[0]
    if not guided:
        return list(out.chunk(len(conds)))
    parts = out.chunk(2 * len(conds))
    return [parts[2 * i] + guidance_scale * (parts[2 * i + 1] - parts[2 * i]) for i in range(len(conds))]


class CFGDenoiser:
    """Text-conditioned denoiser with classifier-free guidance ``e(x,u) + s*(e(x,c) - e(x,u))``."""

    def __init__(self, unet, cond: torch.Tensor, uncond: torch.Tensor | None, guidance_scale: float) -> None:
        self.unet, self.cond, self.uncond, self.guidance_scale = unet, cond, uncond, guidance_scale

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        return guided_predictions(self.unet, x, t, [self.cond], self.uncond, self.guidance_scale)[0]


class BatchCFGDenoiser:
    """Classifier-free guidance over a batch of latents, each row with its own text (Prompt-to-Prompt's source and
    target branches), in one UNet call laid out as the authors' code and diffusers' pipelines lay it out: every
    unconditional row, then every conditional one.

    ``uncond`` is one embedding for every step, or a mapping from timestep to embedding (null-text inversion's
    optimised ones).
    """

    def __init__(self, unet, conds: torch.Tensor, uncond: torch.Tensor | Mapping[int, torch.Tensor] | None,
                 guidance_scale: float) -> None:
        self.unet, self.conds, self.uncond, self.guidance_scale = unet, conds, uncond, guidance_scale

    @property
    def guided(self) -> bool:
        return self.guidance_scale > 1.0

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        if not self.guided:
            return self.unet(x, t, encoder_hidden_states=self.conds, return_dict=False)[0]
        uncond = self.uncond[int(t)] if isinstance(self.uncond, Mapping) else self.uncond
        hidden = torch.cat([uncond.expand_as(self.conds), self.conds])
        out = self.unet(torch.cat([x, x]), t, encoder_hidden_states=hidden, return_dict=False)[0]
        uncond_out, cond_out = out.chunk(2)
        return uncond_out + self.guidance_scale * (cond_out - uncond_out)


class InstructPix2PixDenoiser:
    """Dual guidance of InstructPix2Pix (Brooks et al., eq. 3), the three branches in one batched call.

    ``e(x,0,0) + s_T*(e(x,I,T) - e(x,I,0)) + s_I*(e(x,I,0) - e(x,0,0))``; the image condition is the latent of the
    input concatenated on the channel axis, the null image is zeros, the null text the empty prompt. Guidance is
    skipped (one branch) when ``guidance_scale <= 1`` or ``image_guidance_scale < 1``, as diffusers does.
    """

    def __init__(
        self, unet, text: torch.Tensor, null_text: torch.Tensor, image_latents: torch.Tensor,
        guidance_scale: float, image_guidance_scale: float,
    ) -> None:
        self.unet, self.text, self.null_text, self.image_latents = unet, text, null_text, image_latents
        self.guidance_scale, self.image_guidance_scale = guidance_scale, image_guidance_scale

    @property
    def guided(self) -> bool:
        return self.guidance_scale > 1.0 and self.image_guidance_scale >= 1.0

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        if not self.guided:
            inputs = torch.cat([x, self.image_latents], dim=1)
            return self.unet(inputs, t, encoder_hidden_states=self.text, return_dict=False)[0]
        image = torch.cat([self.image_latents, self.image_latents, torch.zeros_like(self.image_latents)])
        inputs = torch.cat([torch.cat([x] * 3), image], dim=1)
        hidden = torch.cat([self.text, self.null_text, self.null_text])
        text, image_only, uncond = self.unet(inputs, t, encoder_hidden_states=hidden, return_dict=False)[0].chunk(3)
        return (
            uncond
            + self.guidance_scale * (text - image_only)
            + self.image_guidance_scale * (image_only - uncond)
        )


class UNetCounter:
    """Counts forward calls (network evaluations) and the batch items they carry, via a forward pre-hook.

    Works on any ``nn.Module`` whose first input is the batch (a UNet's ``sample``, a transformer's
    ``hidden_states``), so our methods and diffusers' pipelines are measured the same way.
    """

    def __init__(self, unet) -> None:
        self.unet = unet
        self.calls = 0
        self.evals = 0
        self._handle = None

    def _hook(self, module, args, kwargs) -> None:
        sample = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
        self.calls += 1
        self.evals += int(sample.shape[0])

    def __enter__(self) -> UNetCounter:
        self._handle = self.unet.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()
