"""The reference domain (:mod:`instructedit.domain`) as benchmark samples, and its oracle as row metrics.

Samples come from a folder written by ``instructedit.domain.dataset.generate_dataset`` (``<out>/<split>``
holding ``manifest.jsonl``) or are generated in memory (deterministic in split, seed, size and index). The
held-out ``test`` split is the default. Every sample keeps its :class:`~instructedit.domain.samples.DomainSample`
in ``extra["domain_sample"]`` so the oracle (``edit_applied``, ``preservation``) can judge outputs exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from PIL import Image

from ...errors import DatasetError
from .sample import EditDataset, EditSample, ImageRef

DEFAULT_SAMPLES = 100


def _ref(path: Path | None, render, description: str) -> ImageRef:
    return ImageRef(path) if path is not None else ImageRef(render, description=description)


def to_edit_sample(domain_sample: Any, dataset: str) -> EditSample:
    """One :class:`~instructedit.domain.samples.DomainSample` as an :class:`EditSample`."""
    ds = domain_sample
    return EditSample(
        id=str(ds.id),
        source=_ref(ds.source_path, ds.source_image, f"domain[{ds.id}].source"),
        instruction=ds.instruction,
        source_caption=ds.source_caption,
        target_caption=ds.target_caption,
        target=_ref(ds.target_path, ds.target_image, f"domain[{ds.id}].target"),
        mask=_ref(ds.mask_path, ds.mask_image, f"domain[{ds.id}].mask"),
        edit_type=ds.edit_type,
        dataset=dataset,
        extra={
            "domain_sample": ds,
            "heldout_phrasing": ds.heldout_phrasing,
            "local_description": ds.local_description,
            "template": ds.template,
        },
    )


def is_domain_split(folder: Path) -> bool:
    """True when ``folder`` is a split written by ``instructedit domain generate``: its ``dataset.json`` names
    this generator (the folder also carries MagicBrush's index files, so this is checked first)."""
    from ...domain.dataset import GENERATOR, INFO, MANIFEST

    info = folder / INFO
    if not (info.is_file() and (folder / MANIFEST).is_file()):
        return False
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("generator") == GENERATOR


def domain_split_folders(folder: Path) -> list[Path]:
    """The generated splits at ``folder``: the folder itself when it is one, else its split subfolders."""
    if is_domain_split(folder):
        return [folder]
    if not folder.is_dir():
        return []
    return sorted(child for child in folder.iterdir() if child.is_dir() and is_domain_split(child))


def _split_folder(folder: Path, split: str | None) -> Path:
    """The split folder to read under ``folder``: ``folder`` itself, ``folder/<split>``, ``folder/test``, or
    the only split folder it holds."""
    if (folder / "manifest.jsonl").is_file():
        return folder
    for name in (split, "test"):
        if name and (folder / name / "manifest.jsonl").is_file():
            return folder / name
    children = domain_split_folders(folder)
    return children[0] if len(children) == 1 else folder


def read_domain(
    split: str | Path = "test",
    *,
    num_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    size: int = 64,
    heldout_fraction: float = 0.5,
    folder_split: str | None = None,
) -> EditDataset:
    """The domain's ``split`` ("test", the held-out split, or "train") generated in memory, or the samples of a
    dataset folder when ``split`` is a path (``<out>/<split>``, or ``<out>`` holding split folders: the one
    named ``folder_split``, else ``test``, else the only one)."""
    from ...domain.dataset import load_split
    from ...domain.samples import SPLITS, generate_samples

    if str(split) in SPLITS:
        samples = generate_samples(str(split), num_samples, seed, size, heldout_fraction)
        name = f"domain-{split}"
        root = None
    else:
        folder = Path(split).expanduser()
        if not folder.exists():
            raise DatasetError(
                f"domain dataset '{split}' is neither a split ({', '.join(SPLITS)}) nor an existing folder."
            )
        folder = _split_folder(folder, folder_split)
        samples = load_split(folder)
        name = f"domain-{folder.name}"
        root = str(folder)
    return EditDataset(name, [to_edit_sample(s, name) for s in samples], kind="domain", root=root)


def oracle_scores(domain_sample: Any, output: Image.Image) -> dict[str, float | None]:
    """The oracle's verdicts on ``output``: ``edit_applied`` (1.0 or 0.0) and the preservation outside the
    edit mask, ``preservation_l1`` and ``preservation_psnr`` (``None`` when undefined or infinite)."""
    from ...domain.oracle import edit_applied, preservation

    kept = preservation(output, domain_sample.source_image(), domain_sample.mask_array())
    psnr = kept.get("psnr")
    return {
        "edit_applied": 1.0 if edit_applied(output, domain_sample) else 0.0,
        "preservation_l1": kept.get("l1"),
        "preservation_psnr": psnr if psnr is not None and math.isfinite(psnr) else None,
    }
