"""Planning a benchmark: what to run (:class:`BenchmarkConfig`) and the list of jobs it makes on a dataset.

A job is one output: a sample, a method, its requested parameters (fixed ones and one setting of the sweep
grid), a seed and a model. Its ``key`` hashes the fields that define it, so reruns recognise finished jobs. A
swept or fixed parameter only goes to the methods that have it (see :mod:`~instructedit.evaluation.sweep`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError
from .datasets import EditDataset, EditSample
from .sweep import Sweep, check_sweeps, method_grid, unknown_parameters

if TYPE_CHECKING:
    from ..methods.base import Method

MULTI_TURN_MODES = ("independent", "iterative")


@dataclass
class BenchmarkConfig:
    """What to run. ``methods``: names (looked up with :func:`~instructedit.methods.get_method`) or method
    objects (:class:`~instructedit.methods.base.Method`, or anything with ``name``, ``needs``, ``defaults`` and
    optionally ``accepts_mask`` and ``model_kind``).

    ``params``: fixed parameters, given to the methods that have them. ``models``: weights per method name,
    per model kind (``t2i``/``ip2p``) or for all (``*``); unset = the engine's default for the method.
    ``metrics``/``metric_models``: see :class:`~instructedit.evaluation.scoring.Scorer`. ``use_masks``: give
    the dataset's edit mask to methods that accept one (default: mask-free editing).
    """

    methods: Sequence[Any]
    sweeps: Sequence[Sweep] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    models: Mapping[str, str] = field(default_factory=dict)
    metrics: str | Sequence[str] = "default"
    metric_models: Mapping[str, str] = field(default_factory=dict)
    seeds: Sequence[int] = (0,)
    use_masks: bool = False
    multi_turn: str = "independent"
    save_images: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-ready data (written to ``run.json``); methods by name."""
        return {
            "methods": [_method_name(m) for m in self.methods],
            "sweeps": {s.name: list(s.values) for s in self.sweeps},
            "params": dict(self.params),
            "models": dict(self.models),
            "metrics": self.metrics if isinstance(self.metrics, str) else list(self.metrics),
            "metric_models": dict(self.metric_models),
            "seeds": list(self.seeds),
            "use_masks": self.use_masks,
            "multi_turn": self.multi_turn,
        }


def _method_name(method: Any) -> str:
    return method if isinstance(method, str) else method.name


def resolve_method(method: Any) -> Method:
    """A method name (looked up with :func:`~instructedit.methods.get_method`) -> that :class:`Method`; a method
    object (a :class:`Method`, or anything with ``name``, ``needs`` and ``defaults``) is returned as it is."""
    if isinstance(method, str):
        from ..methods import get_method

        return get_method(method)
    return method


def method_parameters(method: Any) -> frozenset[str]:
    """The names of ``method``'s parameters (the keys of ``method.defaults``)."""
    return frozenset(method.defaults)


def _accepts_mask(method: Any) -> bool:
    return bool(getattr(method, "accepts_mask", True))


@dataclass(frozen=True)
class Job:
    """One output to produce. ``group``: the sharding unit; ``previous``: key of the turn before (iterative)."""

    key: str
    group: int
    sample: EditSample
    method: Method
    params: dict[str, Any]
    swept: dict[str, Any]
    seed: int
    model: str | None
    use_mask: bool
    multi_turn: str
    previous: str | None = None
    skip_reason: str | None = None

    @property
    def setting(self) -> str:
        """A label of the swept values, e.g. ``strength=0.5``; ``default`` when nothing is swept."""
        return ",".join(f"{k}={v}" for k, v in self.swept.items()) or "default"


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return float(value)  # 5 and 5.0 are the same setting


def job_key(sample_id: str, method: str, model: str | None, params: Mapping[str, Any], seed: int,
            use_mask: bool, multi_turn: str) -> str:  # fmt: skip
    """The stable identity of a job: 16 hex digits of a SHA-256 over its defining fields."""
    payload = {
        "sample": sample_id,
        "method": method,
        "model": model,
        "params": {k: _canonical(v) for k, v in sorted(params.items())},
        "seed": seed,
        "mask": use_mask,
        "turns": multi_turn,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


_TEXT_OF_NEED = {"instruction": "instruction", "source": "source_caption", "target": "target_caption"}


def _model_for(method: Any, models: Mapping[str, str]) -> str | None:
    for key in (method.name, getattr(method, "model_kind", None), "*"):
        if key and key in models:
            return models[key]
    return None


def plan_jobs(dataset: EditDataset, config: BenchmarkConfig) -> list[Job]:
    """Every job of ``config`` on ``dataset``, in run order (sample-major; sessions in turn order)."""
    if not config.methods:
        raise InvalidRequestError("no methods given: pass at least one, e.g. --methods sdedit,ip2p.")
    if config.multi_turn not in MULTI_TURN_MODES:
        modes = ", ".join(MULTI_TURN_MODES)
        raise InvalidRequestError(f"multi_turn must be one of {modes}, got '{config.multi_turn}'.")
    if not config.seeds:
        raise InvalidRequestError("no seeds given: pass at least one seed.")
    methods = [resolve_method(m) for m in config.methods]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise InvalidRequestError(f"method listed twice in {', '.join(names)}.")
    check_sweeps(config.sweeps)
    parameters = {m.name: method_parameters(m) for m in methods}
    unknown = unknown_parameters([s.name for s in config.sweeps] + list(config.params), parameters)
    if unknown:
        known = ", ".join(f"{n}: {', '.join(sorted(p))}" for n, p in parameters.items())
        raise InvalidRequestError(f"no selected method has parameter(s) {', '.join(unknown)} ({known}).")
    iterative = config.multi_turn == "iterative"
    jobs: list[Job] = []
    groups: dict[tuple, int] = {}
    previous: dict[tuple, str] = {}
    for sample in dataset:
        for method in methods:
            fixed = {k: v for k, v in config.params.items() if k in parameters[method.name]}
            missing = [_TEXT_OF_NEED[n] for n in sorted(method.needs) if not getattr(sample, _TEXT_OF_NEED[n], None)]
            for swept in method_grid(parameters[method.name], config.sweeps):
                params = {**fixed, **swept}
                for seed in config.seeds:
                    model = _model_for(method, config.models)
                    use_mask = config.use_masks and _accepts_mask(method) and sample.mask is not None
                    key = job_key(
                        sample.id,
                        method.name,
                        model,
                        params,
                        seed,
                        use_mask,
                        config.multi_turn if iterative and sample.num_turns > 1 else "independent",
                    )
                    chain = (sample.session_id or sample.id, method.name, model, json.dumps(params, sort_keys=True),
                             seed)  # fmt: skip
                    unit = chain if iterative else (key,)
                    group = groups.setdefault(unit, len(groups))
                    prior = previous.get(chain) if iterative and sample.turn > 1 else None
                    previous[chain] = key
                    jobs.append(Job(
                        key=key, group=group, sample=sample, method=method, params=params, swept=dict(swept),
                        seed=seed, model=model, use_mask=use_mask, multi_turn=config.multi_turn, previous=prior,
                        skip_reason=f"{method.name} needs a {', '.join(missing)} the sample lacks" if missing else None,
                    ))  # fmt: skip
    return jobs
