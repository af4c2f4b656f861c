"""Typed errors. Every message says what is wrong and how to fix it, on one line."""

from __future__ import annotations


class InstructEditError(Exception):
    """Base class of every error instructedit raises on purpose.

    ``field`` names the request field or API argument at fault (``"mask"``, ``"seed"``, ``"params.strength"``,
    ``"max_pixels"``...), so that each interface can point at its own spelling of it: the CLI adds its flag, the
    service its form field. Messages name the field as the Python API spells it, never a CLI flag. ``suggest``
    holds the values the message proposes (``{"seed": 0}``, ``{"overwrite": True}``), for the same purpose.
    """

    def __init__(self, message: str = "", *, field: str | None = None, suggest: dict | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.suggest = dict(suggest or {})


class InvalidImageError(InstructEditError, ValueError):
    """An input image cannot be read or is not usable (empty, truncated, too large, bad mode)."""


class InvalidMaskError(InstructEditError, ValueError):
    """A mask has the wrong size, mode or content."""


class InvalidRequestError(InstructEditError, ValueError):
    """An edit request is malformed: empty or overlong text, missing captions, unknown parameters."""


class UnknownMethodError(InvalidRequestError):
    """The requested editing method does not exist."""


class ModelNotFoundError(InstructEditError, FileNotFoundError):
    """Model weights cannot be found locally or downloaded."""


class InvalidModelError(InstructEditError, ValueError):
    """Model weights were found but do not fit the method (wrong channels, missing components)."""


class DatasetError(InstructEditError, ValueError):
    """A dataset or one of its samples is malformed; the message names the sample."""


class NumericalError(InstructEditError, RuntimeError):
    """A computation produced NaN or infinite values."""
