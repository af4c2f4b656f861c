"""The request/result vocabulary shared by every method, the CLI, the benchmark runner and the service."""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from PIL import Image

from .errors import InvalidRequestError

_DATA_URL = "data:image/png;base64,"


DEFAULT_METHOD = "ip2p"
"""The method a request without one runs (InstructPix2Pix: it needs nothing but an instruction)."""


@dataclass
class EditRequest:
    """What a person asks for.

    ``image`` is the input (a PIL image or a path). The edit is an ``instruction`` ("make the circle red"),
    and/or a ``source`` and ``target`` caption ("a blue circle" -> "a red circle"). ``mask`` (white = edit)
    restricts the edit where a method supports it. ``model`` is a hub id or a local diffusers folder; ``None``
    takes the method's default model. ``params`` holds method parameters under the field's
    names (``num_inference_steps``, ``guidance_scale``, ``image_guidance_scale``, ``strength`` ...);
    anything omitted takes the method's default.
    """

    image: Image.Image | str | bytes
    instruction: str | None = None
    source: str | None = None
    target: str | None = None
    mask: Image.Image | str | bytes | None = None
    method: str = DEFAULT_METHOD
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = 0
    model: str | None = None  # hub id or local diffusers folder; None = the method's default model
    plan: bool | None = None  # None: plan when it helps (see Editor.edit); True: always; False: never
    ground: str | None = None  # None/"off": no grounding; "auto" or a backend name: confine the edit to the entity
    ground_options: dict[str, Any] = field(default_factory=dict)  # dilation, threshold, ...
    lora: str | None = None  # hub id, folder or .safetensors file of a LoRA fused into the model (LCM-LoRA ...)
    lora_scale: float = 1.0  # how strongly the LoRA applies (1: as trained)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; an in-memory image or mask becomes a ``data:image/png;base64,`` URL, bytes too."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["params"] = dict(self.params or {})
        data["ground_options"] = dict(self.ground_options or {})
        for key in ("image", "mask"):
            data[key] = _image_field(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Any) -> EditRequest:
        """An :class:`EditRequest` from :meth:`to_dict`'s shape (a batch file line, a service request body).

        ``image``/``mask`` are paths or ``data:image/...;base64,`` URLs (read as the file's bytes). Unknown
        fields and wrong types are refused with an error naming the field.
        """
        if not isinstance(data, dict):
            raise InvalidRequestError(f"an edit request must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequestError(
                f"unknown request field {', '.join(map(repr, unknown))}: the fields are {', '.join(sorted(known))}",
                field=str(unknown[0]),
            )
        if "image" not in data or data["image"] is None:
            raise InvalidRequestError("the request has no image: give a path or a data URL in 'image'", field="image")
        kinds = {"instruction": str, "source": str, "target": str, "method": str, "model": str, "seed": int,
                 "params": dict, "plan": bool, "ground": str, "ground_options": dict, "lora": str,
                 "lora_scale": (int, float)}
        for key, kind in kinds.items():
            value = data.get(key)
            if value is not None and (not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)):
                name = "an integer" if kind is int else "a number" if isinstance(kind, tuple) else kind.__name__
                raise InvalidRequestError(
                    f"request field '{key}' must be {name}, "
                    f"got {type(value).__name__}", field=key,
                )
        values = dict(data)
        for key in ("image", "mask"):
            if values.get(key) is not None:
                values[key] = _read_image_field(values[key], key)
        for key in ("params", "ground_options"):
            if values.get(key) is None:
                values[key] = {}
        for key in ("method", "lora_scale"):
            if values.get(key) is None:
                values.pop(key, None)
        return cls(**values)


def _image_field(value: Any) -> Any:
    if isinstance(value, Image.Image):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        value = buffer.getvalue()
    if isinstance(value, bytes | bytearray):
        return _DATA_URL + base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _read_image_field(value: Any, key: str) -> str | bytes:
    if not isinstance(value, str):
        raise InvalidRequestError(f"request field '{key}' must be a path or a data URL, got {type(value).__name__}",
                                  field=key)
    if value.startswith("data:"):
        header, _, payload = value.partition(",")
        if not header.endswith(";base64") or not payload:
            raise InvalidRequestError(f"request field '{key}' is a data URL without base64 content: write it as "
                                      "data:image/png;base64,<bytes>", field=key)
        try:
            return base64.b64decode(payload, validate=True)
        except ValueError:
            raise InvalidRequestError(f"request field '{key}' holds invalid base64 data", field=key) from None
    return value


@dataclass
class EditRecord:
    """How an output was made: enough to reproduce it exactly."""

    method: str
    model: str
    params: dict[str, Any]
    seed: int | None
    instruction: str | None
    source: str | None
    target: str | None
    image_size: tuple[int, int]
    wall_time_s: float
    unet_calls: int
    unet_evals: int
    mask_source: str | None = None  # "user", "produced", "grounded" or None
    device: str = "cpu"
    dtype: str = "float32"
    version: str = ""
    planner: str | None = None  # who planned the edit ("rules", "llm:..."), None when it was not planned
    plans: list[dict[str, Any]] | None = None  # the edit plans, in the order applied
    turns: list[dict[str, Any]] | None = None  # one record per plan applied (texts, mask, grounding, calls)
    captioner: str | None = None  # who wrote the source caption the plans were read against, None = no captioner
    model_revision: str | None = None  # hub commit or local-folder digest of a pipeline method's weights
    memory: dict[str, Any] | None = None  # a pipeline method's memory options (offload, tiling, quantisation)
    lora: str | None = None  # the LoRA fused into the model, if any
    lora_scale: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["image_size"] = list(self.image_size)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditRecord:
        data = dict(data)
        data["image_size"] = tuple(data["image_size"])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class EditResult:
    """The edited image, the mask used or produced (``None`` when the method uses none), and the record."""

    image: Image.Image
    record: EditRecord
    mask: Image.Image | None = None
