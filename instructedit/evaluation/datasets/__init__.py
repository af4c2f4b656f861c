"""Benchmark datasets, all read into one sample type (:class:`EditSample`) with lazily loaded images.

Readers: :func:`read_magicbrush`, :func:`read_piebench`, :func:`read_gedit`, :func:`read_manifest`, :func:`read_folder`,
:func:`read_domain`; :func:`load_dataset` picks one from a spec string (``"piebench:/data/PIE"``, a path
it can recognise, or ``"domain"``). Malformed annotations, missing files and mismatched image sizes raise
:class:`~instructedit.errors.DatasetError` naming the sample.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DatasetError
from .gedit import GEDIT_TASK_TYPES, is_gedit, read_gedit
from .magicbrush import read_magicbrush
from .manifest import read_folder, read_manifest
from .piebench import PIE_EDIT_TYPES, decode_pie_mask, encode_pie_mask, read_piebench
from .sample import EditDataset, EditSample, ImageRef, LoadedSample

__all__ = [
    "DATASET_KINDS",
    "GEDIT_TASK_TYPES",
    "PIE_EDIT_TYPES",
    "EditDataset",
    "EditSample",
    "ImageRef",
    "LoadedSample",
    "decode_pie_mask",
    "detect_kind",
    "encode_pie_mask",
    "load_dataset",
    "read_domain",
    "read_folder",
    "read_gedit",
    "read_magicbrush",
    "read_manifest",
    "read_piebench",
]

DATASET_KINDS = ("magicbrush", "piebench", "gedit", "manifest", "folder", "domain")


def read_domain(split: str = "test", **options) -> EditDataset:
    """The reference domain's split (default: the held-out test split) as benchmark samples.

    See :mod:`instructedit.evaluation.datasets.domain`; ``options`` go to the domain's split reader.
    """
    from .domain import read_domain as _read

    return _read(split, **options)


def detect_kind(path: Path) -> str:
    """Guess a dataset kind from what lies at ``path``.

    A split written by ``instructedit domain generate`` (its ``dataset.json`` names the generator), or a folder
    of such splits, is ``domain``; it is recognised before MagicBrush, whose index files it also carries.
    """
    if path.is_file():
        if path.name == "mapping_file.json":
            return "piebench"
        if path.suffix == ".parquet":
            return "gedit" if is_gedit(path) else "magicbrush"
        if path.suffix in (".jsonl", ".json"):
            return "manifest"
    elif path.is_dir():
        from .domain import domain_split_folders

        if domain_split_folders(path):
            return "domain"
        if (path / "mapping_file.json").is_file():
            return "piebench"
        if (path / "edit_sessions.json").is_file() or any(path.glob("*/edit_sessions.json")):
            return "magicbrush"
        if any(path.glob("*.parquet")) or any(path.glob("data/*.parquet")):
            return "gedit" if is_gedit(path) else "magicbrush"
        return "folder"
    raise DatasetError(
        f"cannot tell what dataset '{path}' is: pass KIND:PATH with KIND one of {', '.join(DATASET_KINDS)}."
    )


def load_dataset(spec: str, *, split: str | None = None, instruction: str | None = None) -> EditDataset:
    """Read the dataset named by ``spec``: ``KIND:PATH``, a recognisable path, or ``domain[:SPLIT]``.

    ``split`` picks MagicBrush's split (default ``test``), GEdit-Bench's language (default ``en``) or the
    domain's (default ``test``; for a domain
    folder holding several splits, the subfolder to read); ``instruction`` is the fallback instruction of a
    plain image folder.
    """
    kind, _, rest = spec.partition(":")
    if kind not in DATASET_KINDS or (not rest and kind != "domain"):
        if kind == "domain" or spec == "domain":
            kind, rest = "domain", ""
        else:
            path = Path(spec).expanduser()
            if not path.exists():
                raise DatasetError(
                    f"dataset '{spec}' does not exist: pass an existing path, KIND:PATH with KIND one of "
                    f"{', '.join(DATASET_KINDS)}, or 'domain'."
                )
            kind, rest = detect_kind(path), spec
    if kind == "domain":
        if rest:
            from .domain import read_domain as _read_domain

            return _read_domain(rest, folder_split=split)
        return read_domain(split or "test")
    path = Path(rest).expanduser()
    if not path.exists():
        raise DatasetError(f"{kind} dataset path '{path}' does not exist.")
    if kind == "magicbrush":
        return read_magicbrush(path, split or "test")
    if kind == "piebench":
        return read_piebench(path)
    if kind == "gedit":
        return read_gedit(path, split or "en")
    if kind == "manifest":
        return read_manifest(path)
    return read_folder(path, instruction=instruction)
