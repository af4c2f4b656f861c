"""Grounding, measured on the reference domain's held-out split with the built-in models.

    python benchmarks/bench_grounding.py [--samples 140] [--chains 10] [--ground builtin] [--methods ...]

1. Grounding IoU: the planner's entity phrase of each held-out edit (domain wordings and user wordings) grounded
   by each backend, against the exact silhouette of the object it names (the background: everything but the
   objects), per edit type; additions are grounded by their location hint (IoU against the new object's cell).
2. Plain vs grounded editing, every method: edit applied (the domain's oracle) and PSNR outside the exact edit
   mask. Both sides plan the instruction (``plan=True``), so grounding is the only difference; caption methods
   get the dataset's source and target captions on both sides.
3. Multi-turn drift: 5-turn chains, each turn a separate request on the previous output; PSNR to the input after
   each turn, plain vs grounded (with and without the pixel paste-back), outside the union of the turns' own
   grounded masks so far (the pixels no turn was allowed to touch; the same pixels for the plain chains) and
   outside the union of the exact masks (the grounded masks' slack — dilation, a whole cell for an addition or a
   move's destination — counts against it there).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from dataclasses import replace

import numpy as np
from sheets import image_sheet

from instructedit import Editor, EditRequest
from instructedit.domain import edit_applied, generate_samples, preservation
from instructedit.domain.chains import chain_mask, make_chain
from instructedit.domain.edits import edited_objects
from instructedit.domain.render import silhouette
from instructedit.domain.user_wordings import user_worded
from instructedit.errors import InstructEditError
from instructedit.grounding import make_grounder
from instructedit.grounding.regions import location_mask
from instructedit.instructions import RuleBasedPlanner
from instructedit.methods import available_methods

CAPTION_FREE = {"ip2p"}


def exact_region(sample) -> np.ndarray:
    """The pixels the edit's entity occupies in the input (for an addition: where the new object goes)."""
    before, after = edited_objects(sample.source_scene, sample.edit)
    if sample.edit_type == "change_background":
        occupied = np.zeros((sample.size, sample.size), dtype=bool)
        for obj in sample.source_scene.objects:
            occupied |= silhouette(obj, sample.size)
        return ~occupied
    return silhouette(before if before is not None else after, sample.size)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def grounding_iou(grounder, samples, planner) -> dict[str, float]:
    scores = defaultdict(list)
    for s in samples:
        (plan,) = planner.plan(s.instruction)
        image = s.source_image()
        if plan.type == "add":
            region = location_mask(plan.location, image.size)
            mask = np.asarray(region) > 127 if region is not None else np.ones((s.size, s.size), bool)
            scores[s.edit_type].append(float((mask & exact_region(s)).sum() / exact_region(s).sum()))
            continue
        phrase = plan.entity or "the background"
        mask = np.asarray(grounder.ground(image, phrase).mask) > 127
        scores[s.edit_type].append(iou(mask, exact_region(s)))
    out = {k: statistics.fmean(v) for k, v in sorted(scores.items())}
    out["objects (mean IoU)"] = statistics.fmean(x for k, v in scores.items() if k != "add" for x in v)
    return out


def request_for(sample, method: str, ground: str | None, image=None) -> EditRequest:
    captions = {} if method in CAPTION_FREE else {"source": sample.source_caption, "target": sample.target_caption}
    return EditRequest(image if image is not None else sample.source_image(), instruction=sample.instruction,
                       method=method, seed=0, plan=True, ground=ground, **captions)


def plain_vs_grounded(editor, samples, methods, ground) -> dict:
    table = {}
    for method in methods:
        for label, backend in (("plain", None), ("grounded", ground)):
            applied, psnr = [], []
            for s in samples:
                result = editor.edit(request_for(s, method, backend))
                applied.append(bool(edit_applied(result.image, s)))
                kept = preservation(result.image, s.source_image(), s.mask_image())["psnr"]
                psnr.append(min(kept, 100.0) if kept is not None else 100.0)
            table[(method, label)] = (statistics.fmean(applied), statistics.fmean(psnr))
            print(f"  {method} {label}: applied {table[(method, label)][0]:.3f}, PSNR outside "
                  f"{table[(method, label)][1]:.2f} dB", flush=True)
    return table


def _psnr(image, source: np.ndarray, keep: np.ndarray) -> float | None:
    if not keep.any():
        return None  # the masks cover the whole image (a relative move): nothing to keep
    mse = float(((np.asarray(image, dtype=np.float64) - source) ** 2)[keep].mean())
    return 100.0 if mse == 0 else min(100.0, 10 * np.log10(255.0**2 / mse))


def drift(editor, chains, ground, method="ip2p") -> dict:
    """Per turn, mean PSNR to the input over two regions: outside the union of the turns' exact masks so far, and
    outside the union of the grounded turns' own masks (and the exact ones), the same pixels for every chain
    kind. Kinds: plain, grounded with latent blending only (no paste-back), grounded (the default)."""
    kinds = {"plain": (None, {}), "latent blending only": (ground, {"paste_back": False}), "grounded": (ground, {})}
    exact_curves, own_curves = defaultdict(lambda: defaultdict(list)), defaultdict(lambda: defaultdict(list))
    failed = 0
    for chain in chains:
        source = np.asarray(chain[0].source_image(), dtype=np.float64)
        outputs, own = {}, []
        try:
            for label, (backend, options) in kinds.items():
                image, union, images = chain[0].source_image(), np.zeros(source.shape[:2], bool), []
                for sample in chain:
                    request = request_for(sample, method, backend, image=image)
                    result = editor.edit(replace(request, ground_options=options) if backend else request)
                    image = result.image
                    images.append(image)
                    if label == "grounded":
                        union = union | (np.asarray(result.mask) > 0)
                        own.append(union)
                outputs[label] = images
        except InstructEditError as error:
            failed += 1
            print(f"  chain {chain[0].id} left out: {error}", flush=True)
            continue
        for label, images in outputs.items():
            for turn, image in enumerate(images):
                exact = chain_mask(chain[: turn + 1])
                for curves, keep in ((exact_curves, ~exact), (own_curves, ~(exact | own[turn]))):
                    value = _psnr(image, source, keep)
                    if value is not None:
                        curves[label][turn].append(value)

    def means(curves):
        return {label: [statistics.fmean(per_turn[t]) for t in sorted(per_turn)] for label, per_turn in curves.items()}

    return {"outside exact masks": means(exact_curves), "outside the turns' own masks": means(own_curves),
            "chains": len(chains) - failed, "left out": failed}


def grid(editor, samples, ground, path, method="ip2p", scale=2) -> None:
    """One row per sample: input, plain edit, grounded edit, ground truth, the grounded mask (each upscaled)."""
    from PIL import Image

    rows = []
    for s in samples:
        plain = editor.edit(request_for(s, method, None)).image
        grounded = editor.edit(request_for(s, method, ground))
        mask = (grounded.mask or Image.new("L", plain.size, 0)).convert("RGB")
        rows.append([s.source_image(), plain, grounded.image, s.target_image(), mask])
    sheet = image_sheet(rows, samples[0].size * scale)
    sheet.save(path)
    print(f"grid: {path} (input, plain, grounded, ground truth, mask; {method}, ground={ground})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=140)
    parser.add_argument("--chains", type=int, default=10)
    parser.add_argument("--ground", default="builtin", help="grounding backend for the editing tables")
    parser.add_argument("--backends", default="builtin,attention,noise-difference")
    parser.add_argument("--methods", default="ip2p,sdedit,encode-decode,diffedit")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: iou,edit,drift")
    parser.add_argument("--grid", default=None, help="write an image grid (one row per edit type) to this PNG")
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    editor = Editor(device="cpu", progress=False)
    planner = RuleBasedPlanner()
    held_out = generate_samples("test", args.samples, seed=1, heldout_fraction=1.0)
    start = time.perf_counter()
    figures: dict = {"samples": len(held_out), "ground": args.ground}
    if args.grid:
        by_type = {}
        for s in held_out:
            by_type.setdefault(s.edit_type, s)
        grid(editor, list(by_type.values()), args.ground, args.grid)
    if "iou" not in skip:
        t2i = editor.load(editor.model_for(next(m for m in available_methods() if m.model_kind == "t2i"), None))
        for backend in args.backends.split(","):
            grounder = make_grounder(backend, components=t2i if backend != "builtin" else None)
            for name, samples in (("domain wordings", held_out), ("user wordings", user_worded(held_out, seed=0))):
                scores = grounding_iou(grounder, samples, planner)
                figures.setdefault("iou", {}).setdefault(backend, {})[name] = scores
                print(f"grounding IoU, {backend}, {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    if "edit" not in skip:
        table = plain_vs_grounded(editor, held_out, args.methods.split(","), args.ground)
        figures["editing"] = {f"{m} {label}": {"applied": a, "psnr_outside": p} for (m, label), (a, p) in table.items()}
        print(f"\nplain vs grounded ({args.ground}), {len(held_out)} held-out edits")
        print("| method | applied, plain | applied, grounded | PSNR outside, plain | PSNR outside, grounded |")
        for method in args.methods.split(","):
            (a0, p0), (a1, p1) = table[(method, "plain")], table[(method, "grounded")]
            print(f"| {method} | {a0:.2f} | {a1:.2f} | {p0:.1f} dB | {p1:.1f} dB |")
    if "drift" not in skip:
        chains = [make_chain("test", 1, i, turns=5, disjoint=False) for i in range(args.chains)]
        curves = drift(editor, chains, args.ground)
        figures["drift"] = curves
        print(f"\nmulti-turn drift, ip2p, {curves['chains']} chains ({curves['left out']} left out): PSNR to the "
              "input after each turn (100 = identical)")
        for region in ("outside the turns' own masks", "outside exact masks"):
            print(f"  {region}")
            for label, curve in curves[region].items():
                print(f"    {label:<22}" + "".join(f"{v:8.1f}" for v in curve))
    figures["seconds"] = round(time.perf_counter() - start)
    print(f"({figures['seconds']} s)")
    if args.json:
        import json

        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
