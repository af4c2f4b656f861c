"""Dataset folders of the reference domain: generate, write, read.

``generate_dataset(out_dir, split, ...)`` writes ``<out_dir>/<split>/``:

    images/<id>/<id>-input.png, <id>-output1.png, <id>-mask1.png   MagicBrush layout (see magicbrush.py)
    edit_sessions.json, global_descriptions.json, local_descriptions.json   MagicBrush index files
    manifest.jsonl   one JSON object per sample (DomainSample.to_manifest, paths relative to the folder)
    captions.jsonl   text-to-image pairs {"image": "<relative path>.png", "caption": "..."}: for "train"
                     the source and target images; for "test" only the source images, whose captions
                     are all held out from training (see samples.caption_split)
    t2i/metadata.jsonl   the same pairs as {"file_name": "../images/...", "text": "..."} (Hugging Face
                     imagefolder convention, read by instructedit.training)
    edit/metadata.jsonl  {"input_image", "edit_prompt", "edited_image", "mask"} per sample (paths relative
                     to edit/; the column names of diffusers' train_instruct_pix2pix)
    dataset.json     generator name, version, split, seed, size, counts

Writing is atomic: the split is written into the hidden sibling folder ``<out_dir>/.<split>.partial`` and moved
into place when complete, so an interrupted run (even ``kill -9``) never leaves a half-written ``<split>/``; the
next run removes what it left behind.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from instructedit.errors import DatasetError, InvalidRequestError

from .magicbrush import EDIT_SESSIONS, GLOBAL_DESCRIPTIONS, LOCAL_DESCRIPTIONS, turn_file_names, write_index_files
from .render import render_scene
from .samples import DomainSample, check_sample_args, generate_samples

MANIFEST = "manifest.jsonl"
CAPTIONS = "captions.jsonl"
INFO = "dataset.json"
METADATA = "metadata.jsonl"
T2I_DIR = "t2i"
EDIT_DIR = "edit"
GENERATOR = "instructedit.domain"
FORMAT_VERSION = 1
PARTIAL_SUFFIX = ".partial"  # <out_dir>/.<split>.partial: the split being written
REPLACED_SUFFIX = ".replaced"  # <out_dir>/.<split>.replaced: the split being replaced, while the new one moves in

# Every file this generator writes into a split folder (relative POSIX paths), and the folders that hold them.
_OWN_FILES = re.compile(
    "|".join(re.escape(name) for name in (MANIFEST, CAPTIONS, INFO, EDIT_SESSIONS, GLOBAL_DESCRIPTIONS,
                                          LOCAL_DESCRIPTIONS, f"{T2I_DIR}/{METADATA}", f"{EDIT_DIR}/{METADATA}"))
    + r"|images/(?P<id>[a-z]+_\d+_\d{6,})/(?P=id)-(input|output1|mask1)\.png"
)
_OWN_FOLDERS = re.compile(rf"images|images/[a-z]+_\d+_\d{{6,}}|{T2I_DIR}|{EDIT_DIR}")


def _write_sample(sample: DomainSample, root: Path) -> DomainSample:
    """Render one sample's input, target and mask into ``root/images/<id>/``; returns it with its paths set."""
    folder = root / "images" / sample.id
    folder.mkdir(exist_ok=True)
    source_name, target_name, mask_name = turn_file_names(sample.id)
    paths = (folder / source_name, folder / target_name, folder / mask_name)
    render_scene(sample.source_scene, sample.size).save(paths[0])
    render_scene(sample.target_scene, sample.size).save(paths[1])
    sample.mask_image().save(paths[2])
    return replace(sample, source_path=paths[0], target_path=paths[1], mask_path=paths[2])


def _check_workers(workers: int) -> None:
    if workers < 1:
        raise InvalidRequestError(f"workers must be ≥ 1, got {workers}", field="workers")


def write_split(samples: Sequence[DomainSample], split_dir: str | Path, workers: int = 1) -> list[DomainSample]:
    """Render and write ``samples`` into ``split_dir`` (created); returns them with their file paths set.

    ``workers`` > 1 renders in that many processes; the files are the same as with one (rendering is a pure
    function of each sample)."""
    _check_workers(workers)
    root = Path(split_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    write = functools.partial(_write_sample, root=root)
    if workers == 1 or len(samples) < 2:
        written = [write(s) for s in samples]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            written = list(pool.map(write, samples, chunksize=max(1, len(samples) // (8 * workers))))
    with open(root / MANIFEST, "w", encoding="utf-8") as f:
        for s in written:
            f.write(json.dumps(s.to_manifest(root), sort_keys=True) + "\n")
    _write_training_views(written, root)
    write_index_files(
        root,
        (
            {
                "img_id": s.id,
                "instruction": s.instruction,
                "source_caption": s.source_caption,
                "target_caption": s.target_caption,
                "local_description": s.local_description,
            }
            for s in written
        ),
    )
    return written


def _write_training_views(samples: Sequence[DomainSample], root: Path) -> None:
    """captions.jsonl, and the Hugging Face imagefolder-style views t2i/ and edit/ (paths relative to them)."""
    (root / T2I_DIR).mkdir(exist_ok=True)
    (root / EDIT_DIR).mkdir(exist_ok=True)

    def rel(path: Path | None, base: Path) -> str:
        assert path is not None
        return Path(os.path.relpath(path, base)).as_posix()

    with (
        open(root / CAPTIONS, "w", encoding="utf-8") as captions,
        open(root / T2I_DIR / METADATA, "w", encoding="utf-8") as t2i,
        open(root / EDIT_DIR / METADATA, "w", encoding="utf-8") as edit,
    ):
        for s in samples:
            pairs = [(s.source_path, s.source_caption)]
            if s.split != "test":
                pairs.append((s.target_path, s.target_caption))
            for path, text in pairs:
                captions.write(json.dumps({"image": rel(path, root), "caption": text}) + "\n")
                t2i.write(json.dumps({"file_name": rel(path, root / T2I_DIR), "text": text}) + "\n")
            row = {
                "input_image": rel(s.source_path, root / EDIT_DIR),
                "edit_prompt": s.instruction,
                "edited_image": rel(s.target_path, root / EDIT_DIR),
                "mask": rel(s.mask_path, root / EDIT_DIR),
            }
            edit.write(json.dumps(row) + "\n")


def generate_dataset(
    out_dir: str | Path,
    split: str,
    num_samples: int,
    seed: int = 0,
    size: int = 64,
    *,
    heldout_fraction: float = 0.5,
    edit_types: Sequence[str] | None = None,
    overwrite: bool = False,
    workers: int = 1,
    paraphrases: bool = False,
) -> Path:
    """Generate ``num_samples`` samples of ``split`` ("train" or "test") and write them to
    ``<out_dir>/<split>/`` (layout in the module docstring). Returns that folder.

    ``heldout_fraction``: share of test samples phrased with held-out templates (train uses none).
    ``edit_types``: restrict to these edit types (default all seven, balanced round-robin).
    ``overwrite``: replace an existing folder written by this generator, finished or not (a run of an older
    version that was interrupted); a non-empty folder holding any other file is refused. The folder is only
    replaced once the new split is complete, so an interrupted overwrite keeps the previous split.
    ``workers``: processes that render the images (the output does not depend on it).
    ``paraphrases``: train split only; phrase instructions with the training-only paraphrase templates too.

    Raises DatasetError (``field="overwrite"``) for a non-empty folder without ``overwrite``, and DatasetError
    (``field="out_dir"``) for a folder, or a leftover of an interrupted run, that holds files it did not write."""
    # every argument is checked before an existing folder is replaced
    check_sample_args(split, seed, size, heldout_fraction, edit_types, paraphrases)
    _check_workers(workers)
    split_dir = Path(out_dir) / split
    partial, replaced = _scratch_folders(split_dir)
    _check_replaceable(split_dir, overwrite)
    for leftover in (partial, replaced):  # what an interrupted run (or kill -9) left behind
        _remove_own_folder(leftover)
    samples = generate_samples(split, num_samples, seed, size, heldout_fraction, edit_types, paraphrases)
    try:
        partial.mkdir(parents=True)
    except FileExistsError:
        raise DatasetError(f"{partial} appeared while starting: is another run writing {split_dir}? Run one at a "
                           "time per folder", field="out_dir") from None
    try:
        write_split(samples, partial, workers=workers)
        info = {
            "generator": GENERATOR,
            "format_version": FORMAT_VERSION,
            "split": split,
            "seed": seed,
            "size": size,
            "num_samples": len(samples),
            "heldout_fraction": heldout_fraction if split == "test" else 0.0,
            "edit_types": list(edit_types) if edit_types else None,
            "num_heldout_phrasings": sum(s.heldout_phrasing for s in samples),
            "paraphrases": bool(paraphrases),
        }
        (partial / INFO).write_text(json.dumps(info, indent=1, sort_keys=True), encoding="utf-8")
        _check_replaceable(split_dir, overwrite)  # again: files may have appeared while rendering
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if split_dir.exists():
        split_dir.rename(replaced)
    partial.rename(split_dir)
    shutil.rmtree(replaced, ignore_errors=True)
    return split_dir


def _scratch_folders(split_dir: Path) -> tuple[Path, Path]:
    """The hidden siblings of ``split_dir`` that a run writes into and moves the replaced split to."""
    return (split_dir.with_name(f".{split_dir.name}{PARTIAL_SUFFIX}"),
            split_dir.with_name(f".{split_dir.name}{REPLACED_SUFFIX}"))


def _check_replaceable(split_dir: Path, overwrite: bool) -> None:
    """Raise unless ``split_dir`` is absent, empty, or (with ``overwrite``) holds only this generator's files."""
    if split_dir.is_symlink() or (split_dir.exists() and not split_dir.is_dir()):
        raise DatasetError(f"{split_dir} is a link or a file, not a folder: choose another out_dir", field="out_dir")
    if not split_dir.exists() or not any(split_dir.iterdir()):
        return
    foreign = _foreign_files(split_dir)
    if foreign:
        raise DatasetError(
            f"{split_dir} is not empty and holds files this generator did not write (such as {foreign[0]}); "
            "refusing to replace it: move them away or choose another out_dir",
            field="out_dir",
        )
    if not overwrite:
        unfinished = "" if _info_says_ours(split_dir) else " (it holds an unfinished run of this generator)"
        raise DatasetError(
            f"{split_dir} is not empty{unfinished}; pass overwrite=True to replace it or choose another folder",
            field="overwrite", suggest={"overwrite": True},
        )


def _remove_own_folder(folder: Path) -> None:
    """Delete ``folder`` if it exists and holds only this generator's files; raise DatasetError if it holds others."""
    if not folder.exists() and not folder.is_symlink():
        return
    foreign = _foreign_files(folder)
    if foreign:
        raise DatasetError(
            f"{folder} is in the way of this generator (it holds {foreign[0]}, which it did not write): move it "
            "away or choose another out_dir",
            field="out_dir",
        )
    shutil.rmtree(folder)


def _info_says_ours(split_dir: Path) -> bool:
    try:
        return json.loads((split_dir / INFO).read_text(encoding="utf-8")).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def _foreign_files(folder: Path) -> list[str]:
    """What in ``folder`` this generator did not write (relative paths; links count as foreign), [] when nothing.

    Every file and folder must be one that ``generate_dataset`` writes, so a finished split and the unfinished
    output of an interrupted run (however far it got, dataset.json or not) are both recognised as ours, and a
    file someone added is never deleted."""
    if folder.is_symlink() or not folder.is_dir():
        return [folder.name]
    foreign = []
    for parent, dirs, files in os.walk(folder):
        here = Path(parent)
        for names, pattern in ((dirs, _OWN_FOLDERS), (files, _OWN_FILES)):
            for name in list(names):
                rel = (here / name).relative_to(folder).as_posix()
                if (here / name).is_symlink() or not pattern.fullmatch(rel):
                    foreign.append(rel)
                    if names is dirs:
                        dirs.remove(name)  # a foreign folder is reported, not searched
    return sorted(foreign)


def load_split(split_dir: str | Path) -> list[DomainSample]:
    """Read the samples of a folder written by ``generate_dataset`` (the ``<out_dir>/<split>`` folder),
    with absolute image paths. Raises DatasetError naming the line or sample that is wrong."""
    root = Path(split_dir)
    manifest = root / MANIFEST
    if not manifest.is_file():
        splits = sorted(root.iterdir()) if root.is_dir() else []
        hint = [p.name for p in splits if not p.name.startswith(".") and (p / MANIFEST).is_file()]
        where = f"; did you mean {root / hint[0]}?" if hint else "; generate one with generate_dataset()"
        raise DatasetError(f"{manifest} not found{where}")
    samples = []
    with open(manifest, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{manifest} line {lineno} is not valid JSON ({exc.msg})") from exc
            sample = DomainSample.from_manifest(record, root.resolve())
            for p in (sample.source_path, sample.target_path, sample.mask_path):
                if p is None or not p.is_file():
                    raise DatasetError(f"sample {sample.id} (line {lineno}): image {p} not found")
            samples.append(sample)
    return samples
