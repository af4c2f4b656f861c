"""The shared steps every method is built from: encode, guide, invert, blend, decode; and model loading."""

from .components import Components, load_components


def __getattr__(name: str):
    # The editor sits above the methods, which build on this package: import it lazily to avoid a cycle.
    if name == "Editor":
        from ..editor import Editor

        return Editor
    raise AttributeError(name)


__all__ = ["Components", "Editor", "load_components"]
