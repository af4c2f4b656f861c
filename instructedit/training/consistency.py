"""Latent consistency distillation (Luo et al. 2023, LCM) of an InstructPix2Pix model into a few-step editor.

The recipe of diffusers' ``train_lcm_distill_sd_wds.py``, for InstructPix2Pix's dual guidance:

- a skipping-step DDIM grid of ``num_ddim_timesteps`` (50: the grid ``LCMScheduler`` samples from) with skip
  ``k = 1000 / 50``; each sample draws an index ``n`` and is noised to ``t_{n+k}``;
- the frozen teacher, with the guidance the student is to absorb (text ``guidance_scale`` and
  ``image_guidance_scale``, three branches as InstructPix2Pix samples), takes one DDIM step ``t_{n+k} -> t_n``;
- the student's consistency function ``f(x, t) = c_skip(t) x + c_out(t) x0(x, t)`` (LCM's boundary scalings,
  ``sigma_data`` 0.5, timestep scaling 10, exactly what ``LCMScheduler`` applies at inference) at ``t_{n+k}`` is
  pulled towards the target network's at ``(x_{t_n}, t_n)`` with the pseudo-Huber loss (c = 0.001);
- the target network is an exponential moving average of the student (decay 0.95), updated before each step.

The guidance is fixed rather than sampled and embedded: the built-in UNet has no guidance input (as with LCM-LoRA,
whose UNet has none either), so the student learns the teacher's default guidance and runs with one branch
(``guidance_scale=1``), a third of the teacher's evaluations per step, in 4 steps instead of 20.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator

from .diffusion_task import InstructPix2PixSettings, InstructPix2PixTask
from .latents import posterior_mode, posterior_sample


@dataclass
class ConsistencySettings(InstructPix2PixSettings):
    """Distillation settings; ``pretrained_model`` is the InstructPix2Pix teacher (and the student's start)."""

    num_ddim_timesteps: int = 50
    guidance_scale: float = 5.0  # the teacher's guidance the student absorbs (the built-in's tuned defaults)
    image_guidance_scale: float = 1.5
    target_ema_decay: float = 0.95
    huber_c: float = 0.001
    num_inference_steps: int = 4  # written as the distilled model's default


def boundary_scalings(timesteps: torch.Tensor, sigma_data: float = 0.5, timestep_scaling: float = 10.0):
    """LCM's ``c_skip``, ``c_out`` (as ``LCMScheduler.get_scalings_for_boundary_condition_discrete``), shaped to
    broadcast over latents."""
    scaled = timesteps.float() * timestep_scaling
    c_skip = sigma_data**2 / (scaled**2 + sigma_data**2)
    c_out = scaled / (scaled**2 + sigma_data**2) ** 0.5
    return c_skip.reshape(-1, 1, 1, 1), c_out.reshape(-1, 1, 1, 1)


def split_prediction(output: torch.Tensor, sample: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str):
    """(x0, noise) from a model output of ``prediction_type`` at ``sample``, cumulative alpha ``alpha_bar``."""
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    if prediction_type == "epsilon":
        return (sample - s * output) / a, output
    return a * sample - s * output, a * output + s * sample  # v_prediction


class LatentConsistencyTask(InstructPix2PixTask):
    """Distil the ``pretrained_model`` InstructPix2Pix pipeline into a few-step one (see the module docstring)."""

    name = "lcd-ip2p"

    def __init__(self, settings: ConsistencySettings) -> None:
        super().__init__(settings)
        unet = self.components.unet.eval().requires_grad_(False)
        self.teacher = copy.deepcopy(unet)
        self.target = copy.deepcopy(unet)
        unet.requires_grad_(True)
        alphas = self.noise_scheduler.alphas_cumprod
        total = self.noise_scheduler.config.num_train_timesteps
        self.skip = total // settings.num_ddim_timesteps
        self.ddim_timesteps = torch.arange(1, settings.num_ddim_timesteps + 1) * self.skip - 1
        self.alphas = alphas
        self.prediction_type = self.noise_scheduler.config.prediction_type

    def prepare(self, accelerator: Accelerator) -> None:
        super().prepare(accelerator)
        self.teacher.to(accelerator.device)
        self.target.to(accelerator.device)
        accelerator.register_for_checkpointing(self.target)  # a resumed run continues the same target network

    @torch.no_grad()
    def _update_target(self, student: torch.nn.Module) -> None:
        decay = self.settings.target_ema_decay
        for target, param in zip(self.target.parameters(), student.parameters(), strict=True):
            target.mul_(decay).add_(param.detach(), alpha=1 - decay)

    def compute_loss(
        self, modules: dict[str, torch.nn.Module], batch: dict, generator: torch.Generator, accelerator: Accelerator
    ) -> torch.Tensor:
        device = accelerator.device
        student = modules["unet"]
        self._update_target(accelerator.unwrap_model(student))
        scale = self.components.vae.config.scaling_factor
        latents = posterior_sample(self.posterior_parameters(batch, "edited_pixel_values", device), generator) * scale
        image = posterior_mode(self.posterior_parameters(batch, "original_pixel_values", device))
        batch_size = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator).to(device)
        index = torch.randint(0, self.settings.num_ddim_timesteps, (batch_size,), generator=generator)
        start = self.ddim_timesteps[index]
        end = (start - self.skip).clamp(min=0)
        alpha_start = self.alphas[start].reshape(-1, 1, 1, 1).to(device)
        alpha_end = self.alphas[end].reshape(-1, 1, 1, 1).to(device)
        start, end = start.to(device), end.to(device)
        noisy = alpha_start.sqrt() * latents + (1 - alpha_start).sqrt() * noise
        text = self.encode_text(modules, batch["text"], device)
        null = self.encode_text(modules, [""] * batch_size, device)

        c_skip_start, c_out_start = boundary_scalings(start)
        c_skip_end, c_out_end = boundary_scalings(end)
        with accelerator.autocast():
            output = student(torch.cat([noisy, image], dim=1), start, text).sample
        x0, _ = split_prediction(output, noisy, alpha_start, self.prediction_type)
        prediction = c_skip_start * noisy + c_out_start * x0

        with torch.no_grad():
            three = torch.cat([torch.cat([noisy] * 3), torch.cat([image, image, torch.zeros_like(image)])], dim=1)
            out = self.teacher(three, start.repeat(3), torch.cat([text, null, null])).sample
            full, image_only, uncond = out.chunk(3)
            s = self.settings
            guided = uncond + s.guidance_scale * (full - image_only) + s.image_guidance_scale * (image_only - uncond)
            teacher_x0, teacher_noise = split_prediction(guided, noisy, alpha_start, self.prediction_type)
            previous = alpha_end.sqrt() * teacher_x0 + (1 - alpha_end).sqrt() * teacher_noise  # one DDIM step
            target_out = self.target(torch.cat([previous, image], dim=1), end, text).sample
            target_x0, _ = split_prediction(target_out, previous, alpha_end, self.prediction_type)
            target = c_skip_end * previous + c_out_end * target_x0
        c = self.settings.huber_c
        return (((prediction.float() - target.float()) ** 2 + c**2).sqrt() - c).mean()

    def save_final(self, modules: dict[str, torch.nn.Module], output_dir: Path) -> Path:
        folder = super().save_final(modules, output_dir)
        # the distilled model's defaults: LCM's sampler, one guidance branch, few steps
        defaults = {"ip2p": {"scheduler": "lcm", "num_inference_steps": self.settings.num_inference_steps,
                             "guidance_scale": 1.0}}
        info = folder / "instructedit.json"
        data = json.loads(info.read_text()) if info.exists() else {}
        data["defaults"] = defaults
        data.setdefault("distilled", {}).update({
            "recipe": "latent consistency distillation (instructedit.training.consistency)",
            "teacher": str(self.settings.pretrained_model),
            "teacher_guidance_scale": self.settings.guidance_scale,
            "teacher_image_guidance_scale": self.settings.image_guidance_scale,
            "num_ddim_timesteps": self.settings.num_ddim_timesteps,
            "target_ema_decay": self.settings.target_ema_decay,
        })
        info.write_text(json.dumps(data, indent=2) + "\n")
        return folder
