"""What every editing method shares: its description, its parameters, and the context it runs in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..engine.names import SCHEDULER_KINDS
from ..errors import InvalidModelError, InvalidRequestError

if TYPE_CHECKING:  # declarations stay importable without torch (`instructedit methods`, the service's checks)
    import torch

    from ..engine.cache import EditCache
    from ..engine.components import Components
    from ..engine.guidance import CFGDenoiser
    from ..engine.prompts import PromptEncoder
    from ..engine.sampling import Progress

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
    kind: type | None = None  # the value's type when the default is None ("not set")

    @property
    def type(self) -> type:
        return self.kind or type(self.default)

    def describe(self) -> dict[str, Any]:
        """The parameter as JSON-ready data (for ``instructedit methods --json``, the service and the page)."""
        return {"name": self.name, "type": self.type.__name__, "default": self.default, "help": self.help,
                "minimum": self.minimum, "maximum": self.maximum,
                "choices": list(self.choices) if self.choices is not None else None}

    def coerce(self, value: Any, method: str) -> Any:
        """``value`` converted to the default's type and checked against the range; a clear error otherwise."""
        kind = self.type
        if value is None and self.default is None:
            return None
        field = f"params.{self.name}"
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
                f"{method}: {self.name}={value!r} is not a valid {kind.__name__} ({self.help})", field=field
            ) from None
        if self.choices is not None and value not in self.choices:
            choices = ", ".join(map(str, self.choices))
            raise InvalidRequestError(f"{method}: {self.name}={value!r} must be one of {choices}", field=field)
        # written with `not` so NaN, which compares false with everything, is out of range too
        if (self.minimum is not None and not value >= self.minimum) or (
            self.maximum is not None and not value <= self.maximum
        ):
            raise InvalidRequestError(
                f"{method}: {self.name}={value} is out of range [{self.minimum}, {self.maximum}] ({self.help})",
                field=field,
            )
        return value


STEPS = Param("num_inference_steps", 50, "number of denoising steps", 1, 1000)
GUIDANCE = Param("guidance_scale", 7.5, "classifier-free guidance scale on the text; 1 turns guidance off", 0, 100)
ETA = Param("eta", 0.0, "DDIM eta (0 is deterministic); TCD's gamma with scheduler=tcd (0.3 in its examples)", 0, 1)
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
    cache: EditCache | None = None  # results reusable by the next edit of this image (inversions)

    @property
    def unet(self):
        return self.components.unet_forward

    @property
    def vae(self):
        return self.components.vae

    def encode(self):
        """The VAE posterior of the input image (a ``DiagonalGaussianDistribution``), from the edit cache when
        this VAE already encoded these pixels: a sweep over one image encodes it once. Draws from it still come
        from the request's generator, so outputs are identical either way."""
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

        from ..engine.cache import digest
        from ..engine.latents import encode_distribution

        if self.cache is None:
            return encode_distribution(self.vae, self.image)
        owner = self.vae
        key = digest("vae-posterior", self.components.name, id(owner), self.image)
        cached = self.cache.trajectory(key, 1, owner)
        if cached:
            return DiagonalGaussianDistribution(cached[0])
        distribution = encode_distribution(self.vae, self.image)
        self.cache.store(key, [distribution.parameters], owner)
        return distribution

    def cached_with_generator(self, key_parts: tuple, compute) -> torch.Tensor:
        """``compute()`` (a tensor that draws from the request's generator), from the edit cache when the same
        inputs met the same generator state before; on a hit the generator is put where ``compute`` would have
        left it, so the rest of the edit draws exactly what it would have."""
        from ..engine.cache import digest

        if self.cache is None:
            return compute()
        owner = self.components.unet
        key = digest(*key_parts, self.generator.get_state())
        cached = self.cache.trajectory(key, 2, owner)
        if len(cached) == 2:
            self.generator.set_state(cached[1].clone())
            return cached[0]
        value = compute()
        self.cache.store(key, [value, self.generator.get_state()], owner)
        return value

    def text_denoiser(self, text: str, guidance_scale: float) -> CFGDenoiser:
        """A classifier-free-guided denoiser on ``text`` (the empty prompt is the unconditional branch)."""
        from ..engine.guidance import CFGDenoiser

        uncond = self.prompts("") if guidance_scale > 1.0 else None
        return CFGDenoiser(self.unet, self.prompts(text), uncond, guidance_scale)

    def invert(self, text: str, guidance_scale: float, latents: torch.Tensor, num_inference_steps: int,
               strength: float) -> list[torch.Tensor]:
        """DDIM inversion of clean ``latents`` with ``text`` at ``guidance_scale`` up to ``strength``
        (:func:`~instructedit.engine.inversion.ddim_invert`), taken from the edit cache as far as this model
        already inverted these latents with this text and schedule, and stored there."""
        from ..engine.cache import digest
        from ..engine.inversion import ddim_invert
        from ..engine.sampling import steps_for_strength

        denoiser = self.text_denoiser(text, guidance_scale)
        template = self.components.scheduler
        if self.cache is None:
            return ddim_invert(denoiser, template, latents, num_inference_steps, strength, progress=self.progress)
        owner = self.components.unet
        key = digest("ddim-inversion", self.components.name, id(owner), latents, self.prompts(text), guidance_scale,
                     num_inference_steps, sorted(dict(template.config).items()))
        steps = steps_for_strength(num_inference_steps, strength)
        cached = self.cache.trajectory(key, steps, owner)
        if len(cached) == steps:
            return cached
        trajectory = ddim_invert(denoiser, template, latents, num_inference_steps, strength, progress=self.progress,
                                 prefix=cached)
        self.cache.store(key, trajectory, owner)
        return trajectory

    def null_text(self, text: str, guidance_scale: float, latents: torch.Tensor, trajectory: list[torch.Tensor],
                  **options) -> list[torch.Tensor]:
        """Null-text inversion's per-step unconditional embeddings for ``latents`` inverted along ``trajectory``
        with ``text`` (:func:`~instructedit.engine.inversion.null_text_optimise`; ``options`` are its
        keyword settings), from the edit cache when this model already optimised them, and stored there."""
        from ..engine.cache import digest
        from ..engine.inversion import null_text_optimise

        cond, uncond = self.prompts(text), self.prompts("")

        def optimise() -> list[torch.Tensor]:
            return null_text_optimise(self.unet, self.components.scheduler, latents, trajectory, cond, uncond,
                                      guidance_scale, progress=self.progress, **options)

        if self.cache is None:
            return optimise()
        owner = self.components.unet
        key = digest("null-text", self.components.name, id(owner), latents, trajectory[-1], cond, uncond,
                     guidance_scale, sorted(options.items()), sorted(dict(self.components.scheduler.config).items()))
        cached = self.cache.trajectory(key, len(trajectory), owner)
        if len(cached) == len(trajectory):
            return cached
        embeddings = optimise()
        self.cache.store(key, embeddings, owner)
        return embeddings

    def latent_mask(self, latent_size) -> torch.Tensor | None:
        """The user's mask at latent resolution (``None`` without one)."""
        from ..engine.blending import mask_to_latent

        if self.mask is None:
            return None
        return mask_to_latent(self.mask, tuple(latent_size)).to(self.image.device)

    def denoise_outside_kept(
        self, denoiser, scheduler, latents: torch.Tensor, timesteps, *, eta: float, original_at,
        mask: torch.Tensor | None = None, produced_mask: bool = False, start_step: int = 0,
    ) -> MethodOutput:
        """Denoise ``latents`` over ``timesteps``; where ``mask`` (default: the user's) is 0, put back
        ``original_at(i)`` after every step i from ``start_step`` on (see :class:`KeepOutsideMask`)."""
        from ..engine.sampling import denoise

        if mask is None:
            mask = self.latent_mask(latents.shape[-2:])
        keep = KeepOutsideMask(mask, original_at, start_step) if mask is not None else None
        latents = denoise(
            denoiser, scheduler, latents, timesteps,
            generator=self.generator, eta=eta, after_step=keep, progress=self.progress,
        )
        return MethodOutput(latents, mask, produced_mask=produced_mask)


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

    def __init__(self, mask: torch.Tensor, original_at, start_step: int = 0) -> None:
        self.mask, self.original_at, self.start_step = mask, original_at, start_step

    def __call__(self, i: int, t, latents: torch.Tensor) -> torch.Tensor:
        from ..engine.blending import blend

        if i < self.start_step:
            return latents
        return blend(latents, self.original_at(i), self.mask)


@dataclass(frozen=True)
class ModelKind:
    """A family of models a method runs on, how to recognise one, and a checkpoint to suggest."""

    name: str
    description: str
    example: str
    fits: Callable[[Components], bool]


MODEL_KINDS = {
    "t2i": ModelKind("t2i", "a text-to-image model", SD_MODEL, lambda c: not c.is_instruct),
    "ip2p": ModelKind("ip2p", "an InstructPix2Pix model", IP2P_MODEL, lambda c: c.is_instruct),
}


@dataclass
class Method:
    """An editing method: a name, the texts it needs, its parameters, and ``run``.

    Besides ``run``, a method declares what the CLI, the editor, the benchmark runner and the service need to
    know of it, so that none of them tests a method's name: the texts it ``needs``, whether it
    ``accepts_mask`` and ``produces_mask`` (finds the edit region itself), which parameter is its
    ``strength_param`` (how far it may depart from the input), and the ``model_kind`` it runs on.
    """

    name: str
    description: str
    needs: frozenset[str]
    params: tuple[Param, ...]
    model_kind: str = "t2i"  # a MODEL_KINDS key, or a pipeline method's own family
    default_model: str = SD_MODEL
    accepts_mask: bool = True
    produces_mask: bool = False
    strength_param: str | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def describe(self) -> dict[str, Any]:
        """The declaration as JSON-ready data: what a CLI, a service or a web page needs to offer the method."""
        return {
            "name": self.name, "aliases": list(self.aliases), "description": self.description,
            "needs": sorted(self.needs), "accepts_mask": self.accepts_mask, "produces_mask": self.produces_mask,
            "strength_param": self.strength_param, "model_kind": self.model_kind, "default_model": self.default_model,
            "params": [p.describe() for p in self.params],
        }

    @property
    def runs_pipeline(self) -> bool:
        """True for methods that call a whole diffusers pipeline (:mod:`instructedit.methods.pipeline`) rather
        than composing our shared steps on loaded components."""
        return False

    @property
    def takes_instruction(self) -> bool:
        """True when an instruction drives the method; caption methods need a target caption instead."""
        return "instruction" in self.needs

    def uses_mask(self, mask_given: bool) -> bool:
        """Whether an edit with (or without) a user mask comes back with a mask."""
        return self.produces_mask or (mask_given and self.accepts_mask)

    def check_model(self, components: Components) -> None:
        """A clear error, naming the ``model`` field, when ``components`` are not of this method's model kind."""
        kind = MODEL_KINDS[self.model_kind]
        if kind.fits(components):
            return
        if self.model_kind == "ip2p":
            detail = (f"(UNet with {2 * components.latent_channels} input channels), but '{components.name}' has "
                      f"{components.unet.config.in_channels}")
        else:
            other = next(k for k in MODEL_KINDS.values() if k.fits(components))
            detail = f"but '{components.name}' is {other.description}"
        raise InvalidModelError(
            f"{self.name} needs {kind.description} {detail}: give model='{kind.example}' or another such checkpoint",
            field="model", suggest={"model": kind.example},
        )

    def resolve(self, given: dict[str, Any], model_defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults, then the model's own defaults, then ``given``; unknown names and bad values are errors."""
        specs = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(specs))
        if unknown:
            raise InvalidRequestError(
                f"{self.name} has no parameter {', '.join(unknown)}: its parameters are {', '.join(specs)}",
                field=f"params.{unknown[0]}",
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
