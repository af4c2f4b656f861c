"""Per-row metrics of the benchmark: which metric compares what, and computing them for one edit.

Names say what is compared: ``<metric>_input`` compares the output with the image the method was given,
``<metric>_target`` with the ground-truth edit, ``..._unedited`` only outside the dataset's edit mask
(PIE-Bench's "unedit part": both images multiplied by ``1 - mask``). A metric whose inputs a sample lacks (no
ground truth, no mask, no caption) is left out of that row. Groups name several metrics at once:

=========  ===============================================================================================
pixel      l1/l2/psnr/ssim to the input (whole and unedited region: l1, mse, psnr, ssim) and to the target
mask       mask_iou: IoU of the mask a method produced (DiffEdit) with the dataset's edit mask
oracle     the reference domain's oracle (domain samples only): oracle_edit_applied (1/0),
           oracle_preservation_l1, oracle_preservation_psnr (outside the edit mask)
lpips      lpips_input, lpips_input_unedited, lpips_target (weights: torchvision backbone + lpips heads;
           AlexNet, or SqueezeNet on PIE-Bench as PIE-Bench does)
clip       clip_i_input, clip_i_target, clip_t (MagicBrush, ViT-B/32: the turn's local description, the target
           caption where a sample has none), clip_t_global (the same with the global target caption),
           clip_dir (InstructPix2Pix, ViT-L/14), clip_score, clip_score_edited (PIE-Bench CLIPScore, ViT-L/14)
dino       dino_input, dino_target (MagicBrush, DINO ViT-S/16)
structure  structure_input (PIE-Bench structure distance, DINO ViT-B/8)
judge      judge_semantics, judge_quality, judge_overall: a vision-language judge's VIEScore (GEdit-Bench), 0-10,
           through an OpenAI-compatible endpoint (:mod:`~instructedit.evaluation.metrics.judge`; none ships)
=========  ===============================================================================================

``default`` = ``pixel,mask,oracle``: cheap and offline. Model-based groups need their weights (hub id or
local folder, set per metric with ``models``, e.g. ``{"clip": "/models/clip-vit-base-patch32"}``); they are
loaded once, before the first edit, so missing weights fail fast.

A benchmark's own settings are the defaults on its datasets (:data:`BENCHMARK_METRIC_MODELS`): a PIE-Bench run
computes LPIPS with SqueezeNet (PIE-Bench's ``LearnedPerceptualImagePatchSimilarity(net_type='squeeze')``) unless
``models`` says otherwise. Its other settings are already every dataset's defaults: CLIPScore with CLIP
ViT-L/14, structure distance with DINO ViT-B/8, PSNR/SSIM with data range 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InstructEditError, InvalidRequestError


@dataclass
class ScoringInput:
    """What a row's metrics look at. ``source`` is the image the method was given; ``mask`` is the dataset's
    edit mask (``L``, white = edit); ``produced_mask`` the one the method made, if any."""

    output: Image.Image
    source: Image.Image
    target: Image.Image | None = None
    mask: Image.Image | None = None
    produced_mask: Image.Image | None = None
    instruction: str | None = None
    source_caption: str | None = None
    target_caption: str | None = None
    sample: Any = None
    local_description: str | None = None
    """The turn's local description (MagicBrush ``local_descriptions.json``, the reference domain), if any."""

    @property
    def clip_t_caption(self) -> str | None:
        """The text CLIP-T compares with: the local description (MagicBrush's), else the target caption."""
        return self.local_description or self.target_caption


@dataclass
class MetricOptions:
    """Device and weights the model-based metrics use (``models``: metric or group name -> hub id/folder)."""

    device: str = "cpu"
    models: dict[str, str] = field(default_factory=dict)
    judge: Any = None  # a metrics.judge.VLMJudge; None = one configured from the environment when needed

    def model(self, metric: RowMetric) -> str | None:
        """The weights for ``metric``: its own entry, else its group's, else ``None`` (the metric's default)."""
        return self.models.get(metric.name) or self.models.get(metric.group)


Compute = Callable[[ScoringInput, "RowMetric", MetricOptions], float | None]


@dataclass(frozen=True)
class RowMetric:
    """One per-row metric. ``needs`` lists what the row must have among ``target``, ``mask``,
    ``produced_mask``, ``source_caption``, ``target_caption``, ``clip_t_caption`` (a local description or a
    target caption), ``domain``, ``instruction``."""

    name: str
    group: str
    compute: Compute
    needs: frozenset[str] = frozenset()
    higher_is_better: bool | None = None
    help: str = ""
    prepare: Callable[[RowMetric, MetricOptions], None] | None = None

    def applies(self, item: ScoringInput) -> bool:
        """True when ``item`` has everything this metric needs."""
        have = {
            "target": item.target is not None,
            "mask": item.mask is not None,
            "produced_mask": item.produced_mask is not None,
            "source_caption": bool(item.source_caption),
            "target_caption": bool(item.target_caption),
            "clip_t_caption": bool(item.clip_t_caption),
            "domain": _domain_sample(item) is not None,
            "instruction": bool(item.instruction),
        }
        return all(have[n] for n in self.needs)


# --------------------------------------------------------------------------------------------- helpers
def _at(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` at ``size`` (bicubic), so outputs of another size are compared at the reference's size."""
    return image if image.size == size else image.convert("RGB").resize(size, Image.Resampling.BICUBIC)


def _reference(item: ScoringInput, which: str) -> Image.Image:
    return item.source if which == "input" else item.target  # type: ignore[return-value]


def _domain_sample(item: ScoringInput) -> Any:
    sample = item.sample
    extra = getattr(sample, "extra", None) or {}
    return extra.get("domain_sample")


def _pixel(fn_name: str, which: str, unedited: bool) -> Compute:
    def compute(item: ScoringInput, metric: RowMetric, options: MetricOptions) -> float | None:
        from .metrics import pixel

        reference = _reference(item, which)
        mask = item.mask if unedited else None
        return getattr(pixel, fn_name)(_at(item.output, reference.size), reference, mask)

    return compute


def _lpips(which: str, unedited: bool) -> Compute:
    def compute(item: ScoringInput, metric: RowMetric, options: MetricOptions) -> float | None:
        from .metrics.lpips import lpips_distance

        reference = _reference(item, which)
        mask = item.mask if unedited else None
        return lpips_distance(_at(item.output, reference.size), reference, mask, model=_lpips_model(options))

    return compute


def _lpips_model(options: MetricOptions) -> Any:
    from .metrics.lpips import load_lpips

    net = options.models.get("lpips", "alex")
    return load_lpips(
        net,
        backbone_path=options.models.get("lpips_backbone"),
        heads_path=options.models.get("lpips_heads"),
        device=options.device,
    )


def _model_kwargs(metric: RowMetric, options: MetricOptions) -> dict[str, Any]:
    model = options.model(metric)
    return {"device": options.device, **({"model": model} if model else {})}


def _clip_i(which: str) -> Compute:
    def compute(item: ScoringInput, metric: RowMetric, options: MetricOptions) -> float | None:
        from .metrics.clip import clip_image_similarity

        return clip_image_similarity([item.output], [_reference(item, which)], **_model_kwargs(metric, options))[0]

    return compute


def _clip_t(caption: str) -> Compute:
    def compute(item: ScoringInput, metric: RowMetric, options: MetricOptions) -> float | None:
        from .metrics.clip import clip_text_similarity

        text = getattr(item, caption)
        return clip_text_similarity([item.output], [text], **_model_kwargs(metric, options))[0]

    return compute


def _clip_dir(item: ScoringInput, metric: RowMetric, options: MetricOptions) -> float | None:
    from .metrics.clip import clip_directional_similarity

    return clip_directional_similarity(
        [item.source], [item.output], [item.source_caption], [item.target_caption], **_model_kwargs(metric, options)
    )[0]


def _clip_score(edited_part: bool) -> Compute:
    def compute(item: ScoringInput, metric: RowMetric, options: MetricOptions) -> float | None:
        from .metrics.clip import clip_score

        output = _at(item.output, item.source.size)
        masks = [item.mask] if edited_part else None
        return clip_score([output], [item.target_caption], edit_masks=masks, **_model_kwargs(metric, options))[0]

    return compute


def _dino(which: str) -> Compute:
    def compute(item: ScoringInput, metric: RowMetric, options: MetricOptions) -> float | None:
        from .metrics.dino import dino_similarity

        return dino_similarity([item.output], [_reference(item, which)], **_model_kwargs(metric, options))[0]

    return compute


def _structure(item: ScoringInput, metric: RowMetric, options: MetricOptions) -> float | None:
    from .metrics.structure import structure_distance

    output = _at(item.output, item.source.size)
    return structure_distance([output], [item.source], **_model_kwargs(metric, options))[0]


def _binary_mask(mask: Image.Image) -> np.ndarray:
    """A mask image as booleans (white = edit), 0/255 and 0/1 ``L`` images alike (see :mod:`.metrics._images`)."""
    from .metrics._images import mask_to_tensor

    grey = mask if mask.mode in ("1", "L", "F") else mask.convert("L")
    return mask_to_tensor(grey, (grey.height, grey.width))[0, 0].numpy() >= 0.5


def _mask_iou(item: ScoringInput, metric: RowMetric, options: MetricOptions) -> float | None:
    truth = _binary_mask(item.mask)  # type: ignore[arg-type]
    produced = item.produced_mask
    if produced.size != item.mask.size:  # type: ignore[union-attr]
        produced = produced.convert("L").resize(item.mask.size, Image.Resampling.NEAREST)  # type: ignore[union-attr]
    guess = _binary_mask(produced)  # type: ignore[arg-type]
    union = np.logical_or(truth, guess).sum()
    return float(np.logical_and(truth, guess).sum() / union) if union else None


def _oracle(kind: str) -> Compute:
    def compute(item: ScoringInput, metric: RowMetric, options: MetricOptions) -> float | None:
        from .datasets.domain import oracle_scores

        return oracle_scores(_domain_sample(item), item.output)[kind]

    return compute


def _judge(part: str) -> Compute:
    def compute(item: ScoringInput, metric: RowMetric, options: MetricOptions) -> float | None:
        scores = options.judge.judge(item.source, item.output, item.instruction)  # cached: one judgement per row
        return None if scores is None else float(getattr(scores, part))

    return compute


def _prepare_judge(metric: RowMetric, options: MetricOptions) -> None:
    if options.judge is None:
        from .metrics.judge import VLMJudge

        options.judge = VLMJudge()  # from the environment, or a clear error saying how to configure one


def _prepare_clip(metric: RowMetric, options: MetricOptions) -> None:
    from .metrics import clip

    defaults = {"clip_dir": clip.CLIP_DIRECTIONAL_MODEL, "clip_score": clip.CLIP_SCORE_MODEL,
                "clip_score_edited": clip.CLIP_SCORE_MODEL}  # fmt: skip
    clip.load_clip(options.model(metric) or defaults.get(metric.name, clip.CLIP_I_MODEL), options.device)


def _prepare_dino(metric: RowMetric, options: MetricOptions) -> None:
    from .metrics import dino, structure

    default = structure.STRUCTURE_MODEL if metric.group == "structure" else dino.DINO_MODEL
    dino.load_dino(options.model(metric) or default, options.device)


def _prepare_lpips(metric: RowMetric, options: MetricOptions) -> None:
    _lpips_model(options)


_T, _M = frozenset({"target"}), frozenset({"mask"})
_CAPS = frozenset({"source_caption", "target_caption"})
_TCAP = frozenset({"target_caption"})
_CLIP_T_CAP = frozenset({"clip_t_caption"})


def _catalogue() -> list[RowMetric]:
    metrics = []
    for fn, short, higher in (("l1_distance", "l1", False), ("l2_distance", "l2", False),
                              ("psnr", "psnr", True), ("ssim", "ssim", True)):  # fmt: skip
        metrics.append(RowMetric(f"{short}_input", "pixel", _pixel(fn, "input", False), higher_is_better=higher,
                                 help=f"{short} between the output and the input image"))  # fmt: skip
        metrics.append(RowMetric(f"{short}_target", "pixel", _pixel(fn, "target", False), _T, higher,
                                 help=f"{short} between the output and the ground-truth edit"))  # fmt: skip
    for fn, short, higher in (("l1_distance", "l1", False), ("mse", "mse", False),
                              ("psnr", "psnr", True), ("ssim", "ssim", True)):  # fmt: skip
        metrics.append(RowMetric(f"{short}_input_unedited", "pixel", _pixel(fn, "input", True), _M, higher,
                                 help=f"{short} to the input outside the edit mask (PIE-Bench)"))  # fmt: skip
    metrics += [
        RowMetric("mask_iou", "mask", _mask_iou, frozenset({"mask", "produced_mask"}), True,
                  "IoU of the method's own mask (DiffEdit) with the dataset's edit mask"),
        RowMetric("oracle_edit_applied", "oracle", _oracle("edit_applied"), frozenset({"domain"}), True,
                  "reference-domain oracle: the requested edit is visible in the output"),
        RowMetric("oracle_preservation_l1", "oracle", _oracle("preservation_l1"), frozenset({"domain"}), False,
                  "reference-domain oracle: L1 to the input over the pixels outside the edit mask"),
        RowMetric("oracle_preservation_psnr", "oracle", _oracle("preservation_psnr"), frozenset({"domain"}), True,
                  "reference-domain oracle: PSNR to the input over the pixels outside the edit mask"),
        RowMetric("lpips_input", "lpips", _lpips("input", False), frozenset(), False,
                  "LPIPS to the input (DiffEdit's 'distance to input')", _prepare_lpips),
        RowMetric("lpips_input_unedited", "lpips", _lpips("input", True), _M, False,
                  "LPIPS to the input outside the edit mask (PIE-Bench)", _prepare_lpips),
        RowMetric("lpips_target", "lpips", _lpips("target", False), _T, False,
                  "LPIPS to the ground-truth edit", _prepare_lpips),
        RowMetric("clip_i_input", "clip", _clip_i("input"), frozenset(), True,
                  "CLIP image similarity to the input (InstructPix2Pix's consistency axis)", _prepare_clip),
        RowMetric("clip_i_target", "clip", _clip_i("target"), _T, True,
                  "CLIP-I to the ground-truth edit (MagicBrush)", _prepare_clip),
        RowMetric("clip_t", "clip", _clip_t("clip_t_caption"), _CLIP_T_CAP, True,
                  "CLIP-T (MagicBrush): output vs the turn's local description (else the target caption)",
                  _prepare_clip),
        RowMetric("clip_t_global", "clip", _clip_t("target_caption"), _TCAP, True,
                  "CLIP-T with the global target caption instead of the local description", _prepare_clip),
        RowMetric("clip_dir", "clip", _clip_dir, _CAPS, True,
                  "CLIP directional similarity (InstructPix2Pix)", _prepare_clip),
        RowMetric("clip_score", "clip", _clip_score(False), _TCAP, True,
                  "CLIPScore of the output with the target caption (PIE-Bench 'whole')", _prepare_clip),
        RowMetric("clip_score_edited", "clip", _clip_score(True), _TCAP | _M, True,
                  "CLIPScore of the edited part (PIE-Bench 'edited')", _prepare_clip),
        RowMetric("dino_input", "dino", _dino("input"), frozenset(), True,
                  "DINO similarity to the input", _prepare_dino),
        RowMetric("dino_target", "dino", _dino("target"), _T, True,
                  "DINO similarity to the ground-truth edit (MagicBrush)", _prepare_dino),
        RowMetric("judge_semantics", "judge", _judge("semantics"), frozenset({"instruction"}), True,
                  "VLM judge: how well the instruction was carried out without over-editing (VIEScore SC, 0-10)",
                  _prepare_judge),
        RowMetric("judge_quality", "judge", _judge("quality"), frozenset({"instruction"}), True,
                  "VLM judge: naturalness and absence of artifacts (VIEScore PQ, 0-10)", _prepare_judge),
        RowMetric("judge_overall", "judge", _judge("overall"), frozenset({"instruction"}), True,
                  "VLM judge: sqrt(SC * PQ), GEdit-Bench's overall score (0-10)", _prepare_judge),
        RowMetric("structure_input", "structure", _structure, frozenset(), False,
                  "structure distance to the input (PIE-Bench)", _prepare_dino),
    ]  # fmt: skip
    return metrics


METRICS: dict[str, RowMetric] = {m.name: m for m in _catalogue()}
GROUPS: dict[str, tuple[str, ...]] = {}
for _metric in METRICS.values():
    GROUPS.setdefault(_metric.group, ())
    GROUPS[_metric.group] += (_metric.name,)
DEFAULT_GROUPS = ("pixel", "mask", "oracle")

BENCHMARK_METRIC_MODELS: dict[str, dict[str, str]] = {"piebench": {"lpips": "squeeze"}}
"""Per dataset kind, the metric settings its benchmark's own evaluation uses where they differ from ours
(PIE-Bench's ``matrics_calculator.py``: LPIPS with ``net_type='squeeze'``); ``models`` entries override them."""


def metric_models_for(dataset_kind: str | None, models: Mapping[str, str] | None = None) -> dict[str, str]:
    """The metric weights of a run on a ``dataset_kind`` dataset: its benchmark's settings, then ``models``."""
    return {**BENCHMARK_METRIC_MODELS.get(dataset_kind or "", {}), **dict(models or {})}


def register_metric(metric: RowMetric) -> None:
    """Add (or replace) a per-row metric, usable by name in ``--metrics``."""
    METRICS[metric.name] = metric
    GROUPS[metric.group] = tuple(dict.fromkeys((*GROUPS.get(metric.group, ()), metric.name)))


def resolve_metrics(spec: str | Iterable[str]) -> list[RowMetric]:
    """Metric names and groups (``"default,clip_t"``, ``"all"``, ``"none"``) -> the metrics, in order."""
    parts = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    names: list[str] = []
    for part in parts:
        if part == "none":
            continue
        if part == "all":
            names += list(METRICS)
        elif part == "default":
            names += [n for g in DEFAULT_GROUPS for n in GROUPS.get(g, ())]
        elif part in GROUPS:
            names += list(GROUPS[part])
        elif part in METRICS:
            names.append(part)
        else:
            raise InvalidRequestError(
                f"unknown metric '{part}': choose metric names or groups among default, all, none, "
                f"{', '.join(GROUPS)}, {', '.join(METRICS)}."
            )
    return [METRICS[n] for n in dict.fromkeys(names)]


class Scorer:
    """Computes the chosen metrics for one edit at a time."""

    def __init__(
        self, metrics: str | Sequence[str] = "default", *, device: str = "cpu", models: Mapping[str, str] | None = None,
        dataset_kind: str | None = None, judge=None,
    ) -> None:
        """``models``: metric or group name -> weights; ``dataset_kind`` (e.g. ``"piebench"``) adds that
        benchmark's own settings (:data:`BENCHMARK_METRIC_MODELS`) under ``models``; ``judge`` is the
        :class:`~instructedit.evaluation.metrics.judge.VLMJudge` of the ``judge`` metrics (default: configured
        from the environment when they are chosen)."""
        self.metrics = resolve_metrics(metrics)
        unknown = sorted(set(models or {}) - set(METRICS) - set(GROUPS) - {"lpips_backbone", "lpips_heads"})
        if unknown:
            raise InvalidRequestError(
                f"--metric-model {', '.join(unknown)}: not a metric or group; use one of {', '.join(GROUPS)}."
            )
        self.options = MetricOptions(device=device, models=metric_models_for(dataset_kind, models), judge=judge)

    @property
    def names(self) -> list[str]:
        """The names of the chosen metrics, in order."""
        return [m.name for m in self.metrics]

    def prepare(self) -> None:
        """Load every model the chosen metrics need (raises ModelNotFoundError now rather than mid-run)."""
        for metric in self.metrics:
            if metric.prepare is not None:
                metric.prepare(metric, self.options)

    def score(self, item: ScoringInput) -> dict[str, float | None]:
        """The applicable metrics of ``item``; undefined values (e.g. an all-edit mask) are ``None``."""
        scores: dict[str, float | None] = {}
        for metric in self.metrics:
            if metric.applies(item):
                value = metric.compute(item, metric, self.options)
                scores[metric.name] = None if value is None or not np.isfinite(value) else float(value)
        return scores

    def score_row(self, item: ScoringInput) -> tuple[dict[str, float | None], dict[str, str]]:
        """Like :meth:`score`, but a metric that fails with a typed error (e.g. an image too small for SSIM's
        window) is reported in the second dict, ``{metric: message}``, instead of stopping the run."""
        scores: dict[str, float | None] = {}
        failures: dict[str, str] = {}
        for metric in self.metrics:
            if not metric.applies(item):
                continue
            try:
                value = metric.compute(item, metric, self.options)
            except InstructEditError as exc:
                failures[metric.name] = f"{type(exc).__name__}: {exc}"
                continue
            scores[metric.name] = None if value is None or not np.isfinite(value) else float(value)
        return scores, failures
