"""What every ``instructedit`` command shares: one-line errors that name the option to fix them.

Library errors name the API argument or request field at fault (``exc.field``, ``exc.suggest``); here each is
spelled as the running command spells it, read from the command's own parameters, so every sub-command names
its own flags without a table of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import typer

from .errors import InstructEditError


def option_hint(exc: InstructEditError, ctx: Any = None,
                aliases: Mapping[str, str] | None = None) -> str:
    """`` (on the command line: --overwrite)``: the options of the running command that fix ``exc``, or "".

    ``exc.field`` and the names in ``exc.suggest`` are looked up among the command's parameters, through
    ``aliases`` where the command spells one differently (``params.num_inference_steps`` -> ``steps``). A method
    parameter without an option of its own is written ``--param NAME=VALUE``. A suggested ``False`` for a boolean
    flag names its ``--no-…`` form; any other suggested value is written after the option.
    """
    ctx = ctx or _current_context()
    params = {p.name: p for p in ctx.command.params} if ctx is not None else {}
    aliases = aliases or {}

    def spell(name: str, value: object = None) -> str:
        param = params.get(aliases.get(name, name))
        if param is None:
            if name.startswith("params.") and "param" in params:
                return f"--param {name.removeprefix('params.')}" + ("" if value is None else f"={json.dumps(value)}")
            return ""
        if param.param_type_name == "argument":
            return str(param.name).upper()
        if getattr(param, "is_flag", False):
            if value is False and param.secondary_opts:
                return param.secondary_opts[0]
            return param.opts[0]
        return param.opts[0] if value is None else f"{param.opts[0]} {value}"

    named = [spell(name, value) for name, value in exc.suggest.items()]
    if exc.field and exc.field not in exc.suggest:
        named.insert(0, spell(exc.field))
    named = [n for n in dict.fromkeys(named) if n]
    return f" (on the command line: {', '.join(named)})" if named else ""


def _current_context() -> Any:
    """The running command's context (typer vendors click from 0.2x on; older typer uses click itself)."""
    try:
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - depends on the typer version
        from click import get_current_context
    return get_current_context(silent=True)


def fail(exc: BaseException | str, ctx: Any = None,
         aliases: Mapping[str, str] | None = None) -> typer.Exit:
    """Print ``exc`` as one ``error:`` line (with :func:`option_hint` for our errors); return the exit (status 2)
    to raise."""
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, InstructEditError):
        text += option_hint(exc, ctx, aliases)
    typer.echo(f"error: {text}", err=True)
    return typer.Exit(code=2)
