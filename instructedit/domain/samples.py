"""Edit samples: source scene, instruction, target scene, exact mask, fully determined by (split, seed, index).

Held-out test split, two ways:
  * scenes: every caption falls in a fixed bucket by hash (``caption_split``); training samples use only
    "train"-bucket captions for both source and target, test samples have a "test"-bucket source caption.
    So no test source scene (nor any scene with the same caption) is ever seen in training, whatever the
    seeds; the random streams of the two splits are also independent (split code in the seed sequence).
  * phrasings: training samples only use ``phrasings(t, "train")`` (plus ``phrasings(t, "paraphrase")``
    when generated with ``paraphrases=True``); a test sample uses a held-out
    ``phrasings(t, "test")`` template with probability ``heldout_fraction`` (flag ``heldout_phrasing``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from instructedit.errors import DatasetError, InvalidRequestError

from .captions import caption
from .edits import EDIT_TYPES, Edit, apply_edit, edit_mask, local_description, sample_edit, template_values
from .phrasings import fill, phrasings
from .render import check_size, render_scene
from .scene import Scene, _pick, sample_scene

SPLITS: tuple[str, ...] = ("train", "test")
_SPLIT_CODES = {"train": 0x7A11, "test": 0x7E57}
TEST_BUCKETS = 8  # one caption in TEST_BUCKETS belongs to the test split
MAX_ATTEMPTS = 10_000


def caption_split(text: str) -> str:
    """ "test" for the held-out caption bucket (1 in TEST_BUCKETS, by SHA-256 of the caption), else "train"."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "test" if int.from_bytes(digest[:8], "big") % TEST_BUCKETS == 0 else "train"


@dataclass
class DomainSample:
    """One edit example. Paths are None for in-memory samples; the image accessors then render the scenes
    (renders are deterministic, so they equal the files a dataset folder holds)."""

    id: str
    split: str
    index: int
    seed: int
    size: int
    edit_type: str
    instruction: str
    template: str
    heldout_phrasing: bool
    source_caption: str
    target_caption: str
    local_description: str
    source_scene: Scene
    target_scene: Scene
    edit: Edit
    source_path: Path | None = None
    target_path: Path | None = None
    mask_path: Path | None = None

    def source_image(self) -> Image.Image:
        """The input image (RGB)."""
        return _load_rgb(self.source_path) if self.source_path else render_scene(self.source_scene, self.size)

    def target_image(self) -> Image.Image:
        """The ground-truth edited image (RGB)."""
        return _load_rgb(self.target_path) if self.target_path else render_scene(self.target_scene, self.size)

    def mask_array(self) -> np.ndarray:
        """Boolean (size, size) edit mask: True where the edit may change the image."""
        if self.mask_path:
            with Image.open(self.mask_path) as im:
                return np.asarray(im.convert("L")) > 127
        return edit_mask(self.source_scene, self.edit, self.size)

    def mask_image(self) -> Image.Image:
        """The edit mask as an "L" image, 255 = editable, 0 = keep."""
        return Image.fromarray(self.mask_array().astype(np.uint8) * 255)

    def to_manifest(self, root: Path | None = None) -> dict[str, Any]:
        """The manifest record; paths relative to ``root`` (the split folder)."""

        def rel(p: Path | None) -> str | None:
            if p is None:
                return None
            return Path(p).relative_to(root).as_posix() if root is not None else Path(p).as_posix()

        return {
            "id": self.id,
            "split": self.split,
            "index": self.index,
            "seed": self.seed,
            "size": self.size,
            "edit_type": self.edit_type,
            "instruction": self.instruction,
            "template": self.template,
            "heldout_phrasing": self.heldout_phrasing,
            "source_caption": self.source_caption,
            "target_caption": self.target_caption,
            "local_description": self.local_description,
            "source": rel(self.source_path),
            "target": rel(self.target_path),
            "mask": rel(self.mask_path),
            "source_scene": self.source_scene.to_dict(),
            "target_scene": self.target_scene.to_dict(),
            "edit": self.edit.to_dict(),
        }

    @classmethod
    def from_manifest(cls, data: dict[str, Any], root: Path) -> DomainSample:
        """Parse a manifest record written by ``to_manifest``; raises DatasetError naming the sample."""
        sid = data.get("id", "?") if isinstance(data, dict) else "?"
        try:
            sample = cls(
                id=str(data["id"]),
                split=str(data["split"]),
                index=int(data["index"]),
                seed=int(data["seed"]),
                size=int(data["size"]),
                edit_type=str(data["edit_type"]),
                instruction=str(data["instruction"]),
                template=str(data["template"]),
                heldout_phrasing=bool(data["heldout_phrasing"]),
                source_caption=str(data["source_caption"]),
                target_caption=str(data["target_caption"]),
                local_description=str(data["local_description"]),
                source_scene=Scene.from_dict(data["source_scene"]),
                target_scene=Scene.from_dict(data["target_scene"]),
                edit=Edit.from_dict(data["edit"]),
                source_path=root / data["source"] if data.get("source") else None,
                target_path=root / data["target"] if data.get("target") else None,
                mask_path=root / data["mask"] if data.get("mask") else None,
            )
        except DatasetError as exc:
            raise DatasetError(f"sample {sid}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"sample {sid}: missing or malformed field {exc}; regenerate the dataset") from exc
        if apply_edit(sample.source_scene, sample.edit) != sample.target_scene:
            raise DatasetError(f"sample {sid}: target_scene is not source_scene with the edit applied")
        return sample


def _load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def check_sample_args(split: str, seed: int, size: int, heldout_fraction: float, edit_types: Sequence[str] | None,
                      paraphrases: bool = False) -> tuple[tuple[str, ...], int]:
    """Validate the arguments of ``make_sample``; returns the edit types to cycle through and the image size."""
    if split not in SPLITS:
        raise InvalidRequestError(f"unknown split {split!r}; choose 'train' or 'test'", field="split")
    if paraphrases and split != "train":
        raise InvalidRequestError("paraphrases are training-data augmentation; the test split keeps its own wordings",
                                  field="paraphrases")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InvalidRequestError(f"seed must be a non-negative integer, got {seed!r}", field="seed")
    if not 0.0 <= float(heldout_fraction) <= 1.0:
        raise InvalidRequestError(f"heldout_fraction must be in [0, 1], got {heldout_fraction!r}",
                                  field="heldout_fraction")
    types = tuple(EDIT_TYPES if edit_types is None else edit_types)
    unknown = [t for t in types if t not in EDIT_TYPES]
    if unknown or not types:
        raise InvalidRequestError(f"unknown edit types {unknown or '[]'}; choose from {', '.join(EDIT_TYPES)}",
                                  field="edit_types")
    return types, check_size(size)


def _object_count(rng: np.random.Generator, edit_type: str) -> int:
    low, high = {"add": (1, 2), "remove": (2, 3)}.get(edit_type, (1, 3))
    return int(rng.integers(low, high + 1))


def make_sample(
    split: str,
    seed: int,
    index: int,
    size: int = 64,
    heldout_fraction: float = 0.5,
    edit_types: Sequence[str] | None = None,
    paraphrases: bool = False,
) -> DomainSample:
    """Sample ``index`` of (split, seed): edit type ``edit_types[index % len(edit_types)]`` (balanced),
    a random scene, a random feasible edit, a random phrasing. Depends on nothing but the arguments.

    ``paraphrases`` (train split only): draw the phrasing from the "train" and "paraphrase" templates
    together; the scene and edit are the same as without it."""
    types, size = check_sample_args(split, seed, size, heldout_fraction, edit_types, paraphrases)
    edit_type = types[index % len(types)]
    rng = np.random.default_rng(np.random.SeedSequence([_SPLIT_CODES[split], int(seed), int(index)]))
    for _ in range(MAX_ATTEMPTS):
        source = sample_scene(rng, _object_count(rng, edit_type))
        source_caption = caption(source)
        if caption_split(source_caption) != split:
            continue
        edit = sample_edit(rng, source, edit_type)
        if edit is None:
            continue
        target = apply_edit(source, edit)
        target_caption = caption(target)
        if target_caption == source_caption or (split == "train" and caption_split(target_caption) != "train"):
            continue
        break
    else:  # pragma: no cover - the acceptance rate is far above 1 / MAX_ATTEMPTS
        raise DatasetError(f"could not sample a {edit_type} edit for {split}/{seed}/{index}")
    heldout = split == "test" and float(rng.random()) < heldout_fraction
    if heldout:
        templates = phrasings(edit_type, "test")
    else:
        templates = phrasings(edit_type, "train") + (phrasings(edit_type, "paraphrase") if paraphrases else ())
    template = _pick(rng, templates)
    return DomainSample(
        id=f"{split}_{seed}_{index:06d}",
        split=split,
        index=int(index),
        seed=int(seed),
        size=size,
        edit_type=edit_type,
        instruction=fill(template, **template_values(source, edit)),
        template=template,
        heldout_phrasing=heldout,
        source_caption=source_caption,
        target_caption=target_caption,
        local_description=local_description(source, edit),
        source_scene=source,
        target_scene=target,
        edit=edit,
    )


def generate_samples(
    split: str,
    num_samples: int,
    seed: int = 0,
    size: int = 64,
    heldout_fraction: float = 0.5,
    edit_types: Sequence[str] | None = None,
    paraphrases: bool = False,
) -> list[DomainSample]:
    """Samples 0 .. num_samples - 1 of (split, seed), in memory (a prefix of a longer run is identical)."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int | np.integer) or num_samples < 0:
        raise InvalidRequestError(f"num_samples must be a non-negative integer, got {num_samples!r}",
                                  field="num_samples")
    return [make_sample(split, seed, i, size, heldout_fraction, edit_types, paraphrases)
            for i in range(int(num_samples))]
