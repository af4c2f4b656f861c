"""instructedit: edit images with words."""

from __future__ import annotations

from .errors import InstructEditError
from .types import EditRecord, EditRequest, EditResult
from .version import __version__


def __getattr__(name: str):
    # The engine imports torch and diffusers; keep `import instructedit` light until it is needed.
    if name == "Editor":
        from .editor import Editor

        return Editor
    if name == "edit":
        return _edit
    raise AttributeError(name)


def _edit(image, instruction: str | None = None, **kwargs) -> EditResult:
    """One-off edit: ``instructedit.edit("in.png", "make it red", method="ip2p", seed=0)``."""
    from .editor import Editor

    options = {k: kwargs.pop(k) for k in ("device", "dtype", "progress", "max_pixels") if k in kwargs}
    return Editor(**options).edit(EditRequest(image=image, instruction=instruction, **kwargs))


__all__ = ["EditRecord", "EditRequest", "EditResult", "Editor", "InstructEditError", "__version__", "edit"]
