"""Training the built-in grounding model: (domain scene, referring phrase) -> the exact mask of what it names.

    python -m instructedit.training.grounder --out runs/grounder --steps 12000 [--resume]

Scenes are drawn from the domain's train split only (held-out scenes never appear); each sample is a render, a
random referring phrase (:mod:`instructedit.domain.references`) and its exact mask. The loss is binary
cross-entropy plus soft Dice; training runs through the shared loop (checkpoints every ``--checkpoint-every``
steps, ``--resume`` continues from the latest).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..domain.captions import caption
from ..domain.edits import EDIT_TYPES
from ..domain.palette import position_phrase
from ..domain.references import VOCABULARY, Reference, random_reference
from ..domain.render import render_array, silhouette
from ..domain.samples import caption_split, generate_samples
from ..domain.scene import Scene, SceneObject, sample_scene
from ..models.segmenter import PhraseSegmenter
from .loop import TrainingConfig, TrainingTask, train

_CODE = 0x6D0D


class ReferenceDataset(Dataset):
    """Item ``i``: a train-split scene, a phrase and its mask, determined by (seed, i) alone."""

    def __init__(self, length: int = 1_000_000, seed: int = 0, size: int = 64, split: str = "train") -> None:
        self.length, self.seed, self.size, self.split = length, seed, size, split

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng(np.random.SeedSequence([_CODE, self.seed, int(index)]))
        while True:
            scene = sample_scene(rng, int(rng.integers(1, 4)))
            if caption_split(caption(scene)) == self.split:
                break
        reference = random_reference(rng, scene)
        image = torch.from_numpy(render_array(scene, self.size)).permute(2, 0, 1).float() / 127.5 - 1.0
        mask = torch.from_numpy(reference.mask(scene, self.size)).float()[None]
        phrase = reference.phrase(rng)
        if reference.background and rng.random() < 0.4:  # "the white background": the scene's own colour
            phrase = f"the {scene.background.colour} background"
        return {"image": image, "mask": mask, "phrase": phrase}


class GroundingTask(TrainingTask):
    name = "grounder"

    def __init__(self, width: int = 32, size: int = 64, seed: int = 0) -> None:
        self.model = PhraseSegmenter(list(VOCABULARY), width=width, size=size)
        self.size, self.seed = size, seed

    def dataset(self) -> Dataset:
        return ReferenceDataset(seed=self.seed, size=self.size)

    def trainable_modules(self) -> dict[str, torch.nn.Module]:
        return {"segmenter": self.model}

    def compute_loss(self, modules, batch, generator, accelerator) -> torch.Tensor:
        model = modules["segmenter"]
        tokens = self.model.tokenize(batch["phrase"]).to(accelerator.device)
        logits = model(batch["image"], tokens)
        target = batch["mask"]
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        prob = logits.sigmoid()
        overlap = (prob * target).sum((1, 2, 3))
        dice = 1 - (2 * overlap + 1) / (prob.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
        return bce + dice.mean()

    def save_final(self, modules, output_dir: Path) -> Path:
        return modules["segmenter"].save_pretrained(Path(output_dir) / "final")

    def describe(self) -> dict:
        return {"width": self.model.width, "size": self.size, "vocabulary": len(self.model.vocabulary)}


EVAL_SEED = 1
"""Seed of the held-out (test split) samples the grounder is measured on."""

HELDOUT_FORMS: dict[str, str] = {
    "colour one": "the {colour} one",
    "shape at place": "the {shape} at {place}",
    "shape that is colour": "the {shape} that is {colour}",
    "coloured shape": "the {colour} coloured {shape} please",
    "size synonym": "the {big} {colour} {shape}",
    "capitals": "The {Colour} {Shape}.",
}
"""Unseen wordings of an object reference (the first two the brief's compact forms, which the training generator
can also produce word for word; the others add words, synonyms ("big", "tiny") or case training never shows). A
form is used only where it names the object uniquely in its scene ("the red one" needs a single red object)."""

HELDOUT_BACKGROUND = ("the {bg} background", "the background of the picture")


@dataclass
class GroundingCase:
    """One measurement: ``phrase`` in ``image`` should give ``mask``; ``form`` is "reference" (the edit's
    referring phrase) or the held-out form's name."""

    edit_type: str
    sample_id: str
    image: np.ndarray
    phrase: str
    mask: np.ndarray
    form: str


def _object_mask(obj: SceneObject, size: int) -> np.ndarray:
    return silhouette(obj, size)


def _heldout_object_phrases(scene: Scene, obj: SceneObject) -> dict[str, str]:
    values = {"colour": obj.colour, "shape": obj.shape, "place": position_phrase(obj.position).split(" ", 1)[1],
              "big": "big" if obj.size == "large" else "tiny", "Colour": obj.colour.capitalize(),
              "Shape": obj.shape.capitalize()}
    out = {}
    for name, template in HELDOUT_FORMS.items():
        if name == "colour one" and sum(o.colour == obj.colour for o in scene.objects) > 1:
            continue
        if name == "size synonym" and sum(o.size == obj.size and o.colour == obj.colour and o.shape == obj.shape
                                          for o in scene.objects) > 1:  # pragma: no cover - names are unique
            continue
        out[name] = template.format(**values)
    return out


def evaluation_cases(num_samples: int = 140, seed: int = EVAL_SEED, size: int = 64) -> list[GroundingCase]:
    """Cases from the held-out (test split) edit samples ``0 .. num_samples - 1`` of ``seed``, balanced over edit
    types. Object edits: the edited object in the source image, by the edit's referring phrase "the {ref}" and by
    the held-out forms. Additions: the added object, found in the edited (target) image by its name. Background
    changes: "the background" (every pixel no object touches) in the source image."""
    cases = []
    for sample in generate_samples("test", num_samples, seed=seed, size=size):
        edit = sample.edit
        if edit.type == "change_background":
            scene = sample.source_scene
            image = render_array(scene, size)
            mask = Reference(background=True).mask(scene, size)
            cases.append(GroundingCase(edit.type, sample.id, image, "the background", mask, "reference"))
            for i, template in enumerate(HELDOUT_BACKGROUND):
                cases.append(GroundingCase(edit.type, sample.id, image, template.format(bg=scene.background.colour),
                                           mask, f"background {i + 1}"))
            continue
        if edit.type == "add":
            scene, obj = sample.target_scene, edit.obj
        else:
            scene, obj = sample.source_scene, sample.source_scene.objects[edit.index]
        image = render_array(scene, size)
        mask = _object_mask(obj, size)
        cases.append(GroundingCase(edit.type, sample.id, image, f"the {obj.name}", mask, "reference"))
        for form, phrase in _heldout_object_phrases(scene, obj).items():
            cases.append(GroundingCase(edit.type, sample.id, image, phrase, mask, form))
    return cases


def iou(predicted: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1 when both are empty)."""
    predicted, target = np.asarray(predicted, bool), np.asarray(target, bool)
    union = np.logical_or(predicted, target).sum()
    return 1.0 if union == 0 else float(np.logical_and(predicted, target).sum() / union)


def evaluate(grounder=None, num_samples: int = 140, seed: int = EVAL_SEED, size: int = 64) -> dict:
    """Mean IoU of ``grounder`` (a :class:`~instructedit.grounding.base.Grounder`, a model folder, or ``None``
    for the shipped model) on :func:`evaluation_cases`: overall, per edit type and per held-out form, for the
    referring phrases ("reference") and for the held-out wordings ("heldout")."""
    from PIL import Image

    from ..grounding.builtin import DomainGrounder

    if grounder is None or isinstance(grounder, str | Path):
        grounder = DomainGrounder(grounder)
    scores: dict[str, dict[str, list[float]]] = {"reference": {}, "heldout": {}}
    forms: dict[str, list[float]] = {}
    for case in evaluation_cases(num_samples, seed, size):
        found = np.asarray(grounder.ground(Image.fromarray(case.image), case.phrase).mask) > 127
        value = iou(found, case.mask)
        group = "reference" if case.form == "reference" else "heldout"
        scores[group].setdefault(case.edit_type, []).append(value)
        forms.setdefault(case.form, []).append(value)

    def summary(by_type: dict[str, list[float]]) -> dict:
        every = [v for values in by_type.values() for v in values]
        return {"mean_iou": round(float(np.mean(every)), 4) if every else None, "cases": len(every),
                "per_edit_type": {t: round(float(np.mean(by_type[t])), 4) for t in EDIT_TYPES if t in by_type}}

    return {"samples": num_samples, "seed": seed, "split": "test", "reference": summary(scores["reference"]),
            "heldout": summary(scores["heldout"]),
            "per_form": {f: round(float(np.mean(v)), 4) for f, v in sorted(forms.items())}}


def model_from_checkpoint(checkpoint: str | Path) -> PhraseSegmenter:
    """The segmenter of a training checkpoint folder (``OUT/checkpoints/checkpoint-N``), in eval mode."""
    from safetensors.torch import load_file

    checkpoint = Path(checkpoint)
    settings = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))["settings"]
    model = PhraseSegmenter(list(VOCABULARY), width=int(settings["width"]), size=int(settings["size"]))
    model.load_state_dict(load_file(checkpoint / "model.safetensors"))
    return model.eval()


def write_card(model_dir: str | Path, *, command: str, steps: int, seconds: float, report: dict | None,
               settings: dict) -> Path:
    """``instructedit.json`` beside a trained grounder: how it was made (command, steps, wall time, settings) and
    what it measured on the held-out split, as the built-in editors' cards do."""
    card = {"command": command, "steps": int(steps), "seconds": round(float(seconds), 1), "settings": settings,
            "trained_on": "reference domain, train split scenes only (exact masks)", "evaluation": report}
    path = Path(model_dir) / "instructedit.json"
    path.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the built-in domain grounder.")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=12000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--eval-samples", type=int, default=140, help="held-out samples to measure at the end")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = TrainingConfig(output_dir=args.out, max_train_steps=args.steps, train_batch_size=args.batch_size,
                            learning_rate=args.learning_rate, lr_scheduler="cosine", lr_warmup_steps=200,
                            adam_weight_decay=0.0, checkpointing_steps=args.checkpoint_every, resume=args.resume,
                            progress_bar=False)
    started = time.time()
    result = train(GroundingTask(width=args.width), config)
    seconds = round(time.time() - started, 1)
    print(f"saved {result.output} at step {result.global_step} (loss {result.last_loss}, "
          f"{result.seconds_per_step} s/step, {seconds} s)", flush=True)
    report = None
    if args.eval_samples:
        report = evaluate(result.output, num_samples=args.eval_samples)
        (Path(args.out) / "eval.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        print(json.dumps({k: report[k] for k in ("reference", "heldout")}), flush=True)
    write_card(result.output, command="python -m instructedit.training.grounder " + " ".join(argv or sys.argv[1:]),
               steps=result.global_step, seconds=seconds, report=report,
               settings={"width": args.width, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                         "threads": args.threads})


if __name__ == "__main__":
    main()
