"""``instructedit domain …``: generate the reference domain's splits.

Errors print on one line with the command-line spelling of the argument at fault
(:func:`instructedit.commandline.fail`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..commandline import fail
from ..errors import InstructEditError

app = typer.Typer(help="The procedurally generated reference domain (scenes, edits, exact masks).",
                  no_args_is_help=True, pretty_exceptions_enable=False)


@app.command()
def generate(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="Output folder; the split goes into OUT/SPLIT.")],
    split: Annotated[str, typer.Option(help="train or test (held-out scenes and phrasings).")] = "train",
    num_samples: Annotated[int, typer.Option(help="Number of edit samples.")] = 1000,
    seed: Annotated[int, typer.Option(help="Generation seed.")] = 0,
    size: Annotated[int, typer.Option(help="Image side in pixels (64 or 128).")] = 64,
    heldout_fraction: Annotated[float, typer.Option(help="Test split: share of held-out phrasings.")] = 0.5,
    edit_types: Annotated[str | None, typer.Option(help="Comma-separated edit types (default: all).")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Replace a folder this generator wrote before, finished or interrupted.")] = False,
    workers: Annotated[int, typer.Option(help="Processes rendering the images (same files for any number).")] = 1,
    paraphrases: Annotated[bool, typer.Option(
        help="Train split: also phrase instructions with the training-only paraphrase templates.")] = False,
) -> None:
    """Write a split: images, masks, manifest.jsonl, MagicBrush layout and training views.

    The split appears only when complete: an interrupted run leaves no OUT/SPLIT, and running again finishes."""
    from .dataset import generate_dataset

    try:
        folder = generate_dataset(
            out, split, num_samples, seed=seed, size=size, heldout_fraction=heldout_fraction,
            edit_types=edit_types.split(",") if edit_types else None, overwrite=overwrite,
            workers=workers, paraphrases=paraphrases,
        )
    except InstructEditError as exc:
        raise fail(exc, ctx, {"out_dir": "out"}) from None
    typer.echo(str(folder))
