"""One sample type for every benchmark: an edit request with its references, images read only when asked."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...errors import DatasetError, InstructEditError
from ...inputs import load_image, load_mask

ImageSource = str | Path | bytes | Image.Image | Callable[[], Image.Image]


class ImageRef:
    """A reference to an image that is read only when :meth:`open` is called (lazy loading).

    ``source`` is a file path, encoded bytes (PNG/JPEG ...), a PIL image, or a zero-argument callable
    returning a PIL image (for images decoded from annotations, e.g. PIE-Bench's RLE masks). ``convert``
    post-processes the opened image (e.g. MagicBrush's transparent-region masks into white-is-edit masks).
    """

    def __init__(
        self,
        source: ImageSource,
        *,
        convert: Callable[[Image.Image], Image.Image] | None = None,
        description: str | None = None,
    ) -> None:
        self.source = source
        self.convert = convert
        self.description = description

    @property
    def path(self) -> Path | None:
        """The file behind this image, or ``None`` when it lives in memory."""
        return Path(self.source) if isinstance(self.source, str | Path) else None

    def __repr__(self) -> str:
        if self.description:
            return self.description
        if self.path is not None:
            return str(self.path)
        return f"<{type(self.source).__name__} image>"

    def open(self) -> Image.Image:
        """Read and decode the image (raises ``OSError``/``ValueError`` on missing or corrupt data)."""
        src = self.source
        if isinstance(src, Image.Image):
            image = src.copy()
        elif isinstance(src, bytes):
            image = Image.open(io.BytesIO(src))
            image.load()
        elif isinstance(src, str | Path):
            with Image.open(src) as handle:
                handle.load()
                image = handle.copy()
        else:
            image = src()
        return self.convert(image) if self.convert is not None else image


def binary_mask_from_transparency(image: Image.Image) -> Image.Image:
    """Transparent (alpha < 128) = edit, the DALL-E 2 convention MagicBrush masks use; 0/255 ``L`` image.

    An image without transparency is read the usual way (:func:`instructedit.inputs.load_mask`: white = edit).
    """
    if "A" not in image.getbands() and "transparency" not in image.info:
        return load_mask(image)
    alpha = np.asarray(image.convert("RGBA"))[..., 3]
    return Image.fromarray(np.where(alpha < 128, 255, 0).astype(np.uint8), mode="L")


@dataclass
class EditSample:
    """One edit to evaluate.

    ``source`` is the input image; ``instruction`` and/or the captions (``source_caption`` describes the
    input, ``target_caption`` the wanted output) say what to do. ``target`` is the ground-truth edited image
    and ``mask`` the edited region (white = edit) when the benchmark has them. ``edit_type`` is the
    benchmark's category. Multi-turn benchmarks (MagicBrush) set ``session_id`` and ``turn`` (1-based) of
    ``num_turns``; the ``source`` of turn k > 1 is the ground-truth output of turn k - 1. ``extra`` keeps
    the benchmark's other annotations. Images are read lazily by :meth:`source_image`,
    :meth:`target_image` and :meth:`mask_image`, which check them and raise
    :class:`~instructedit.errors.DatasetError` naming the sample when a file is missing, unreadable or of
    a different size from the source.
    """

    id: str
    source: ImageRef
    instruction: str | None = None
    source_caption: str | None = None
    target_caption: str | None = None
    target: ImageRef | None = None
    mask: ImageRef | None = None
    edit_type: str | None = None
    session_id: str | None = None
    turn: int = 1
    num_turns: int = 1
    dataset: str = ""
    resize_mask: bool = False  # MagicBrush masks may come at another resolution: resize them (nearest)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_final_turn(self) -> bool:
        """True for single-turn samples and for the last turn of a multi-turn session."""
        return self.turn == self.num_turns

    def _read(self, ref: ImageRef, what: str, loader: Callable[..., Image.Image]) -> Image.Image:
        """Decode ``ref`` with ``loader`` (``io.load_image`` / ``io.load_mask``); errors name the sample."""
        try:
            if ref.convert is not None:
                return ref.open()
            source = ref.source
            if callable(source) and not isinstance(source, Image.Image):
                source = source()
            return loader(source)
        except DatasetError:
            raise
        except FileNotFoundError as exc:
            raise DatasetError(
                f"sample '{self.id}': {what} file '{ref}' is missing: restore it or drop the sample."
            ) from exc
        except InstructEditError as exc:
            raise DatasetError(f"sample '{self.id}': {what} '{ref}' is unusable: {exc}") from exc
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatasetError(
                f"sample '{self.id}': cannot read {what} '{ref}' ({reason[:160]}): replace it with a valid "
                "PNG/JPEG file."
            ) from exc

    def source_image(self) -> Image.Image:
        """The input image, RGB (read by :func:`instructedit.inputs.load_image`: EXIF applied, alpha on white)."""
        return self._read(self.source, "source image", load_image).convert("RGB")

    def target_image(self, size: tuple[int, int] | None = None) -> Image.Image | None:
        """The ground-truth output, RGB, or ``None``; checked to have the source's size (or ``size``)."""
        if self.target is None:
            return None
        image = self._read(self.target, "target image", load_image).convert("RGB")
        expected = size if size is not None else self.source_image().size
        if image.size != expected:
            raise DatasetError(
                f"sample '{self.id}': target image '{self.target}' is {image.width}x{image.height} but the "
                f"source is {expected[0]}x{expected[1]}: the two must have the same size."
            )
        return image

    def mask_image(self, size: tuple[int, int] | None = None) -> Image.Image | None:
        """The edit mask as a 0/255 ``L`` image (white = edit), or ``None``; checked against the source size.

        Masks are read with :func:`instructedit.inputs.load_mask` (white or any bright colour = edit) unless the
        reader set a conversion for its benchmark's convention (MagicBrush: transparent = edit).
        """
        if self.mask is None:
            return None
        image = self._read(self.mask, "mask", load_mask)
        expected = size if size is not None else self.source_image().size
        if image.size != expected:
            if not self.resize_mask:
                raise DatasetError(
                    f"sample '{self.id}': mask '{self.mask}' is {image.width}x{image.height} but the source "
                    f"is {expected[0]}x{expected[1]}: the two must have the same size."
                )
            image = image.resize(expected, Image.Resampling.NEAREST)
        return image

    def load(self) -> LoadedSample:
        """Read every image of the sample at once (source, target, mask), checking their sizes."""
        source = self.source_image()
        return LoadedSample(
            sample=self,
            source=source,
            target=self.target_image(source.size),
            mask=self.mask_image(source.size),
        )


@dataclass
class LoadedSample:
    """A sample with its images in memory."""

    sample: EditSample
    source: Image.Image
    target: Image.Image | None
    mask: Image.Image | None


class EditDataset:
    """An ordered collection of :class:`EditSample` with unique ids (annotations eager, images lazy)."""

    def __init__(self, name: str, samples: list[EditSample], *, kind: str = "custom", root: str | None = None) -> None:
        seen: set[str] = set()
        for sample in samples:
            if not sample.id:
                raise DatasetError(f"dataset '{name}': a sample has an empty id; give every sample an id.")
            if sample.id in seen:
                raise DatasetError(
                    f"dataset '{name}': sample id '{sample.id}' appears twice; sample ids must be unique."
                )
            seen.add(sample.id)
            if not sample.dataset:
                sample.dataset = name
        self.name = name
        self.kind = kind
        self.root = root
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self):
        return iter(self.samples)

    def __getitem__(self, index: int) -> EditSample:
        return self.samples[index]

    def __repr__(self) -> str:
        return f"EditDataset(name={self.name!r}, kind={self.kind!r}, samples={len(self.samples)})"

    def edit_types(self) -> list[str]:
        """The distinct edit types, in first-seen order."""
        return list(dict.fromkeys(s.edit_type for s in self.samples if s.edit_type is not None))

    def select(
        self,
        *,
        ids: list[str] | None = None,
        edit_types: list[str] | None = None,
        final_turn_only: bool = False,
        limit: int | None = None,
    ) -> EditDataset:
        """A filtered copy: only ``ids``, only ``edit_types``, only final turns, at most ``limit`` samples.

        ``limit`` keeps whole multi-turn sessions together where it can (it counts samples, in order).
        """
        samples = self.samples
        if ids is not None:
            wanted = set(ids)
            unknown = wanted - {s.id for s in samples}
            if unknown:
                raise DatasetError(f"dataset '{self.name}': unknown sample ids {sorted(unknown)[:5]}; check the ids.")
            samples = [s for s in samples if s.id in wanted]
        if edit_types is not None:
            known = set(self.edit_types())
            unknown = set(edit_types) - known
            if unknown:
                raise DatasetError(
                    f"dataset '{self.name}': unknown edit types {sorted(unknown)}; known: {sorted(known)}."
                )
            samples = [s for s in samples if s.edit_type in set(edit_types)]
        if final_turn_only:
            samples = [s for s in samples if s.is_final_turn]
        if limit is not None:
            if limit < 0:
                raise DatasetError(f"limit must be >= 0, got {limit}.")
            samples = samples[:limit]
        return EditDataset(self.name, list(samples), kind=self.kind, root=self.root)
