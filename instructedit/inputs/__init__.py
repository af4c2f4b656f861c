"""What a person hands to instructedit, read and checked once: images, masks, texts; and the files written back.

* :func:`load_image` -> RGB, 8 bits per channel, EXIF orientation applied, alpha flattened on white.
* :func:`load_mask` -> mode ``"L"`` with values {0, 255}; white = edit.
* :func:`validate_text` -> a cleaned instruction or caption.
* :func:`read_inputs` -> all of a request's inputs at once, checked against what its method needs.
* :func:`paste_outside` -> an edit inside a mask, the input's own pixels outside it.
* :func:`save_image` / :func:`read_metadata` -> atomic writes with the edit record embedded in the file.

Padding to the VAE's multiple is latent geometry and lives in :mod:`instructedit.engine.geometry`.
"""

from .files import read_metadata, save_image
from .images import DEFAULT_MAX_PIXELS, ImageSource, load_image, paste_outside
from .masks import MASK_THRESHOLD, load_mask
from .request import RequestInputs, read_inputs
from .text import validate_text

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MASK_THRESHOLD",
    "ImageSource",
    "RequestInputs",
    "load_image",
    "load_mask",
    "paste_outside",
    "read_inputs",
    "read_metadata",
    "save_image",
    "validate_text",
]
