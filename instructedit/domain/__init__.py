"""A procedurally generated reference domain with exact ground truth, for training and evaluating editors.

Scenes (in the spirit of i-CLEVR / CoDraw): a background (4 colours, plain / gradient / striped) and 1-3
upright objects (6 shapes, 9 colours, 2 sizes) in distinct cells of a 3x3 grid, rendered anti-aliased at
64 x 64 (any size from 32 to 1024) and fully determined by (split, seed, index). Each sample is one edit of
seven types, with an instruction, source / target captions, the exact target render and the exact edit
mask; there is a held-out test split (held-out scenes and held-out phrasings), a MagicBrush-layout export
with a JSONL manifest and text-to-image captions, a detector, and edit / caption oracles.

    samples = generate_samples("train", 100, seed=0)              # in memory
    folder = generate_dataset("data/domain", "test", 500, seed=0)  # data/domain/test/
    samples = load_split(folder)
    edit_applied(my_output, samples[0]); preservation(my_output, samples[0].source_image(), samples[0].mask_image())
"""

from .captions import caption, object_description
from .dataset import generate_dataset, load_split, write_split
from .detect import DetectedObject, caption_report, caption_satisfied, detect_background, detect_objects
from .edits import EDIT_TYPES, Edit, apply_edit, edit_mask
from .magicbrush import MagicBrushTurn, read_magicbrush
from .oracle import edit_applied, edit_report, preservation
from .palette import BACKGROUND_COLOURS, BACKGROUND_STYLES, OBJECT_COLOURS, POSITIONS, SHAPES, SIZES
from .phrasings import phrasings
from .render import render_array, render_scene
from .samples import SPLITS, DomainSample, caption_split, generate_samples, make_sample
from .scene import Background, Scene, SceneObject, layout_problems

__all__ = [
    "BACKGROUND_COLOURS",
    "BACKGROUND_STYLES",
    "EDIT_TYPES",
    "OBJECT_COLOURS",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "Background",
    "DetectedObject",
    "DomainSample",
    "Edit",
    "MagicBrushTurn",
    "Scene",
    "SceneObject",
    "apply_edit",
    "caption",
    "caption_report",
    "caption_satisfied",
    "caption_split",
    "detect_background",
    "detect_objects",
    "edit_applied",
    "edit_mask",
    "edit_report",
    "generate_dataset",
    "generate_samples",
    "layout_problems",
    "load_split",
    "make_sample",
    "object_description",
    "phrasings",
    "preservation",
    "read_magicbrush",
    "render_array",
    "render_scene",
    "write_split",
]
