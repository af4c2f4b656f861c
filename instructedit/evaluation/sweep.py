"""Parameter sweeps for the benchmark: ``strength=0.3:0.9:0.1`` (inclusive range) or ``scheduler=ddim,dpm`` (list).

Several sweeps form a grid (their Cartesian product). A swept parameter applies only to the methods that have
a parameter of that name; the others run once with their default for it (see :func:`method_grid`).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequestError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_VALUES = 10_000


def parse_value(text: str) -> Any:
    """``"7"`` -> 7, ``"7.5"`` / ``"1e-3"`` -> float, ``"true"``/``"false"`` -> bool, anything else the string."""
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return text
    if not math.isfinite(value):
        raise InvalidRequestError(f"parameter value '{text}' is not a finite number.")
    return value


def _split_assignment(spec: str, what: str, example: str) -> tuple[str, str]:
    name, sep, rest = spec.partition("=")
    name = name.strip()
    if not sep or not _NAME.fullmatch(name) or not rest.strip():
        raise InvalidRequestError(f"{what} '{spec}' is not NAME=VALUES: write e.g. {example}.")
    return name, rest.strip()


def parse_param(spec: str) -> tuple[str, Any]:
    """``"guidance_scale=7.5"`` -> ``("guidance_scale", 7.5)``."""
    name, value = _split_assignment(spec, "parameter", "--param guidance_scale=7.5")
    return name, parse_value(value)


def _range(name: str, text: str) -> list[Any]:
    parts = text.split(":")
    if len(parts) != 3:
        raise InvalidRequestError(f"sweep {name}={text}: a range is START:STOP:STEP, e.g. {name}=0.3:0.9:0.1.")
    values = [parse_value(p) for p in parts]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise InvalidRequestError(f"sweep {name}={text}: START, STOP and STEP must be numbers.")
    start, stop, step = values
    if step == 0 or (stop - start) * step < 0:
        raise InvalidRequestError(f"sweep {name}={text}: STEP must be non-zero and lead from START to STOP.")
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count > _MAX_VALUES:
        raise InvalidRequestError(f"sweep {name}={text} has {count} values; use a larger STEP.")
    if all(isinstance(v, int) for v in values):
        return [start + i * step for i in range(count)]
    decimals = max(_decimals(p) for p in parts)
    return [round(start + i * step, decimals + 6) for i in range(count)]


def _decimals(text: str) -> int:
    text = text.strip().lower()
    if "e" in text:
        mantissa, _, exponent = text.partition("e")
        return max(0, _decimals(mantissa) - int(exponent))
    return len(text.partition(".")[2])


@dataclass(frozen=True)
class Sweep:
    """One swept parameter and its values, in order, without duplicates."""

    name: str
    values: tuple[Any, ...]

    def __str__(self) -> str:
        return f"{self.name}={','.join(map(str, self.values))}"


def parse_sweep(spec: str) -> Sweep:
    """``"strength=0.3:0.9:0.1"`` (START:STOP:STEP, STOP included) or ``"scheduler=ddim,dpm"`` (a list)."""
    name, text = _split_assignment(spec, "sweep", "--sweep strength=0.3:0.9:0.1 or --sweep guidance_scale=5,7.5")
    if ":" in text:
        values = _range(name, text)
    else:
        values = [parse_value(v) for v in text.split(",") if v.strip()]
    if not values:
        raise InvalidRequestError(f"sweep '{spec}' has no values.")
    return Sweep(name, tuple(dict.fromkeys(values)))


def check_sweeps(sweeps: Sequence[Sweep]) -> None:
    """Each parameter may be swept once."""
    names = [s.name for s in sweeps]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidRequestError(f"parameter(s) {', '.join(repeated)} swept twice; give one --sweep per parameter.")


def method_grid(parameters: Iterable[str], sweeps: Sequence[Sweep]) -> list[dict[str, Any]]:
    """The grid of swept values for a method whose parameter names are ``parameters``.

    Sweeps of parameters the method lacks are ignored, so a method with none of the swept parameters gets one
    empty setting (it runs once, with its defaults).
    """
    known = set(parameters)
    applicable = [s for s in sweeps if s.name in known]
    combos = itertools.product(*(s.values for s in applicable))
    return [dict(zip((s.name for s in applicable), combo, strict=True)) for combo in combos]


def unknown_parameters(names: Iterable[str], method_params: Mapping[str, Iterable[str]]) -> list[str]:
    """The ``names`` that no method of ``method_params`` (method name -> its parameter names) has."""
    every = set().union(*(set(p) for p in method_params.values())) if method_params else set()
    return sorted(set(names) - every)
