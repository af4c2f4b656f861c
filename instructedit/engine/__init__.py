"""The shared steps every method is built from (encode, guide, invert, blend, decode) and the editor."""

from .components import Components, load_components
from .editor import Editor

__all__ = ["Components", "Editor", "load_components"]
