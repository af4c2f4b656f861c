"""Checking instruction and caption text: control characters removed, whitespace folded, blank or overlong refused."""

from __future__ import annotations

import unicodedata

from ..errors import InvalidRequestError

_EMPTY_HINTS = {
    "instruction": "say what to change, e.g. 'make the sky red'",
    "source": "describe the input image, e.g. 'a photo of a cat'",
    "target": "describe the wanted result, e.g. 'a photo of a dog'",
}


def validate_text(
    text: str | None, *, what: str = "instruction", required: bool = True, max_chars: int = 1000
) -> str | None:
    """Clean and check an instruction or caption; ``what`` names it in messages ("instruction", "source
    caption", "target caption"...).

    Cleaning: control characters (NUL, escape codes, DEL, C1 controls) are removed rather than refused,
    since they carry no meaning for a text encoder and arrive by accident from terminals and copied PDFs;
    tabs, newlines and other whitespace runs become one space (CLIP's tokenizer does the same), and the ends
    are stripped.

    Returns the cleaned text, or ``None`` when ``required`` is false and the text is ``None`` or blank
    (an empty optional caption means "not given").

    Raises:
        InvalidRequestError: missing or blank while required; not a ``str``; holds undecodable bytes (lone
            surrogates, from a terminal with the wrong encoding); or longer than ``max_chars`` after cleaning.
    """
    hint = next((h for key, h in _EMPTY_HINTS.items() if key in what), f"give a non-empty {what}")
    if text is None:
        if required:
            raise InvalidRequestError(f"{what} is missing: {hint}")
        return None
    if not isinstance(text, str):
        raise InvalidRequestError(f"{what} must be text, got {type(text).__name__}: pass a string")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        raise InvalidRequestError(
            f"{what} holds bytes that are not valid UTF-8: set your terminal or file encoding to UTF-8"
        )
    kept = "".join(
        " " if ch.isspace() else ch for ch in text if ch.isspace() or unicodedata.category(ch) != "Cc"
    )
    cleaned = " ".join(kept.split())
    if not cleaned:
        if required:
            raise InvalidRequestError(f"{what} is empty: {hint}")
        return None
    if len(cleaned) > max_chars:
        raise InvalidRequestError(
            f"{what} is {len(cleaned):,} characters long, over the limit of {max_chars:,}: shorten it "
            "(CLIP text encoders read only 77 tokens, about 50 words; the rest is ignored)"
        )
    return cleaned

