"""Importing one diffusers model without the ~150 others its package's ``__init__`` imports eagerly.

``diffusers.models.unets``, ``.autoencoders`` and ``.transformers`` import every model they hold when first
touched (``unet_2d_blocks`` alone pulls in all transformer models), about a third of the diffusers import a cold
edit pays. :func:`defer_package_inits` registers those packages with their ``__init__`` not yet run, so importing
``diffusers.models.unets.unet_2d_condition`` loads only that module and what it needs; the first attribute asked
of a deferred package (``from diffusers.models.unets import UNetMotionModel``, or diffusers' own lazy top-level
names) runs its real ``__init__`` then, so nothing else changes.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType

DEFERRED = ("diffusers.models.autoencoders", "diffusers.models.unets", "diffusers.models.transformers")
_lock = threading.RLock()


def _deferred(name: str) -> ModuleType | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return None
    module = importlib.util.module_from_spec(spec)  # __path__ set, __init__ not run
    ran = False

    def __getattr__(attr: str):  # noqa: N807 - the module-level hook (PEP 562)
        nonlocal ran
        with _lock:
            if ran or attr.startswith("__"):
                raise AttributeError(f"module {name!r} has no attribute {attr!r}")
            ran = True  # before running: the __init__'s own lookups must not re-enter
            spec.loader.exec_module(module)
        return getattr(module, attr)

    module.__getattr__ = __getattr__
    return module


def defer_package_inits() -> None:
    """Register :data:`DEFERRED` packages un-initialised (a no-op for any already imported)."""
    import diffusers.models  # noqa: F401 - the parent must exist before its subpackages are registered

    with _lock:
        for name in DEFERRED:
            if name not in sys.modules:
                module = _deferred(name)
                if module is not None:
                    sys.modules[name] = module
                    setattr(sys.modules[name.rpartition(".")[0]], name.rpartition(".")[2], module)
