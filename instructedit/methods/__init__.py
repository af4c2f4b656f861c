"""The editing methods, one module each, behind one interface (:class:`~instructedit.methods.base.Method`)."""

from __future__ import annotations

from ..errors import UnknownMethodError
from .base import EditContext, Method, MethodOutput, Param
from .dac import METHOD as DAC
from .diffedit import METHOD as DIFFEDIT
from .encode_decode import METHOD as ENCODE_DECODE
from .flux2 import METHOD as FLUX2
from .instruct_pix2pix import METHOD as INSTRUCT_PIX2PIX
from .ip2p_xl import METHOD as INSTRUCT_PIX2PIX_XL
from .kontext import METHOD as KONTEXT
from .ledits_pp import METHOD as LEDITS_PP
from .longcat_edit import METHOD as LONGCAT_EDIT
from .prompt_to_prompt import METHOD as PROMPT_TO_PROMPT
from .qwen_edit import METHOD as QWEN_EDIT
from .sdedit import METHOD as SDEDIT

_METHODS: dict[str, Method] = {
    m.name: m for m in (INSTRUCT_PIX2PIX, SDEDIT, ENCODE_DECODE, DIFFEDIT, PROMPT_TO_PROMPT, DAC, LEDITS_PP,
                        INSTRUCT_PIX2PIX_XL, KONTEXT, QWEN_EDIT, FLUX2, LONGCAT_EDIT)
}
_ALIASES = {alias: m.name for m in _METHODS.values() for alias in m.aliases}


def available_methods() -> list[Method]:
    """Every registered method, the default (``ip2p``) first."""
    return list(_METHODS.values())


def get_method(name: str) -> Method:
    """The method called ``name`` (or one of its aliases); a clear error listing the choices otherwise."""
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in _METHODS:
        raise UnknownMethodError(f"unknown method '{name}': choose one of {', '.join(_METHODS)}",
                                 field="method")
    return _METHODS[key]


__all__ = ["EditContext", "Method", "MethodOutput", "Param", "available_methods", "get_method"]
