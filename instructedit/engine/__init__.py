"""The shared steps every method is built from: encode, guide, invert, blend, decode; and model loading."""

from .components import Components, load_components

__all__ = ["Components", "load_components"]
