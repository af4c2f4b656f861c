"""What every editing method shares: its description, its parameters, and the context it runs in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..engine.blending import blend
from ..engine.components import Components
from ..engine.guidance import CFGDenoiser
from ..engine.prompts import PromptEncoder
from ..engine.sampling import SCHEDULER_KINDS, Progress
from ..errors import InvalidRequestError

Need = Literal["instruction", "source", "target"]

SD_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
IP2P_MODEL = "timbrooks/instruct-pix2pix"


@dataclass(frozen=True)
class Param:
    """One method parameter, named as the field names it, with its default and valid range."""

    name: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None

    def coerce(self, value: Any, method: str) -> Any:
        """``value`` converted to the default's type and checked against the range; a clear error otherwise."""
        kind = type(self.default)
        try:
            if kind is bool and isinstance(value, str):
                if value.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                value = value.lower() in {"true", "1", "yes"}
            elif kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            else:
                value = kind(value)
        except (TypeError, ValueError):
            raise InvalidRequestError(
                f"{method}: {self.name}={value!r} is not a valid {kind.__name__} ({self.help})"
            ) from None
        if self.choices is not None and value not in self.choices:
            choices = ", ".join(map(str, self.choices))
            raise InvalidRequestError(f"{method}: {self.name}={value!r} must be one of {choices}")
        # written with `not` so NaN, which compares false with everything, is out of range too
        if (self.minimum is not None and not value >= self.minimum) or (
            self.maximum is not None and not value <= self.maximum
        ):
            raise InvalidRequestError(
                f"{method}: {self.name}={value} is out of range [{self.minimum}, {self.maximum}] ({self.help})"
            )
        return value


STEPS = Param("num_inference_steps", 50, "number of denoising steps", 1, 1000)
GUIDANCE = Param("guidance_scale", 7.5, "classifier-free guidance scale on the text; 1 turns guidance off", 0, 100)
ETA = Param("eta", 0.0, "DDIM eta: 0 is deterministic", 0, 1)
INVERSION_GUIDANCE = Param(
    "inversion_guidance_scale", 1.0, "guidance scale while inverting; 1 (no guidance) keeps inversion faithful", 0, 100
)


def scheduler_param(default: str) -> Param:
    return Param("scheduler", default, "sampler: " + ", ".join(SCHEDULER_KINDS), choices=SCHEDULER_KINDS)


@dataclass
class EditContext:
    """Everything a method reads: the loaded model, the prepared image, the texts, the seed's generator."""

    components: Components
    prompts: PromptEncoder
    image: torch.Tensor  # 1x3xHxW in [-1, 1], sides multiples of the VAE factor
    generator: torch.Generator
    instruction: str | None = None
    source: str | None = None
    target: str | None = None
    mask: torch.Tensor | None = None  # 1x1xHxW of 0/1 at image resolution, white = edit
    progress: Progress | None = None

    @property
    def unet(self):
        return self.components.unet_forward

    @property
    def vae(self):
        return self.components.vae

    def text_denoiser(self, text: str, guidance_scale: float) -> CFGDenoiser:
        """A classifier-free-guided denoiser on ``text`` (the empty prompt is the unconditional branch)."""
        uncond = self.prompts("") if guidance_scale > 1.0 else None
        return CFGDenoiser(self.unet, self.prompts(text), uncond, guidance_scale)


@dataclass
class MethodOutput:
    """Final latents, and the mask the method produced or used (1x1xhxw, any resolution), if any."""

    latents: torch.Tensor
    mask: torch.Tensor | None = None
    produced_mask: bool = False


class KeepOutsideMask:
    """After each step, put back the original latent at the same noise level wherever the mask is 0.

    ``original_at(i)`` gives the original at the noise level the latents have after step ``i``.
    """

    def __init__(self, mask: torch.Tensor, original_at) -> None:
        self.mask, self.original_at = mask, original_at

    def __call__(self, i: int, t, latents: torch.Tensor) -> torch.Tensor:
        return blend(latents, self.original_at(i), self.mask)


@dataclass
class Method:
    """An editing method: a name, the texts it needs, its parameters, and ``run``."""

    name: str
    description: str
    needs: frozenset[str]
    params: tuple[Param, ...]
    model_kind: Literal["t2i", "ip2p"] = "t2i"
    default_model: str = SD_MODEL
    accepts_mask: bool = True
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def resolve(self, given: dict[str, Any], model_defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults, then the model's own defaults, then ``given``; unknown names and bad values are errors."""
        specs = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(specs))
        if unknown:
            raise InvalidRequestError(
                f"{self.name} has no parameter {', '.join(unknown)}: its parameters are {', '.join(specs)}"
            )
        merged = {**self.defaults, **{k: v for k, v in (model_defaults or {}).items() if k in specs}, **given}
        return {name: specs[name].coerce(value, self.name) for name, value in merged.items()}

    def run(self, ctx: EditContext, **params: Any) -> MethodOutput:  # pragma: no cover - abstract
        raise NotImplementedError


def noised_original(scheduler, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor):
    """``original_at(i)``: ``original`` forward-noised to the level after step ``i``, clean after the last step."""

    def original_at(i: int) -> torch.Tensor:
        if i + 1 >= len(timesteps):
            return original
        return scheduler.add_noise(original, noise, timesteps[i + 1 : i + 2])

    return original_at


def trajectory_original(trajectory: list[torch.Tensor], original: torch.Tensor):
    """``original_at(i)`` from a DDIM inversion trajectory (least noisy first), clean after the last step."""
    descending = trajectory[::-1]

    def original_at(i: int) -> torch.Tensor:
        return descending[i + 1] if i + 1 < len(descending) else original

    return original_at
