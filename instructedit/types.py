"""The request/result vocabulary shared by every method, the CLI, the benchmark runner and the service."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image


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

    image: Image.Image | str
    instruction: str | None = None
    source: str | None = None
    target: str | None = None
    mask: Image.Image | str | None = None
    method: str = "ip2p"
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = 0
    model: str | None = None  # hub id or local diffusers folder; None = the method's default model


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
    mask_source: str | None = None  # "user", "produced" or None
    device: str = "cpu"
    dtype: str = "float32"
    version: str = ""

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
        return cls(**data)


@dataclass
class EditResult:
    """The edited image, the mask used or produced (``None`` when the method uses none), and the record."""

    image: Image.Image
    record: EditRecord
    mask: Image.Image | None = None
