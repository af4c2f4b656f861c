"""The shared steps every method is built from: encode, guide, invert, blend, decode; and model loading.

Importing this package costs nothing: torch and diffusers load with the first module that needs them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Components", "load_components"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import components

        return getattr(components, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
