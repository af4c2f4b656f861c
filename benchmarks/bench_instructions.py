"""Instruction understanding, measured on the built-in InstructPix2Pix: edit applied on held-out domain edits
worded the domain's way (its held-out test templates) and worded the way people write (user wordings no
template or training phrasing uses), with the user's words given as they are and with the planner's
canonical wording (``plan=True``: compound requests become turns).

    python benchmarks/bench_instructions.py [--samples 140] [--compound 20]

Prints, per wording set and per edit type, the share of edits the domain's oracle finds applied and PSNR
outside the exact edit mask, for plan off / on side by side; then compound requests (two held-out-worded edits
of one scene in one sentence, joined by "and", ", then" or ";"), each edit scored on the final image.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

from instructedit import Editor, EditRequest
from instructedit.domain import edit_applied, generate_samples, preservation
from instructedit.domain.chains import make_chain
from instructedit.domain.user_wordings import user_worded

JOINS = (" and ", ", then ", "; ")


def score(editor: Editor, samples, *, plan: bool, method: str = "ip2p") -> dict:
    rows = []
    for s in samples:
        result = editor.edit(EditRequest(s.source_image(), instruction=s.instruction, method=method, seed=0,
                                         plan=plan))
        kept = preservation(result.image, s.source_image(), s.mask_image())
        rows.append((s.edit_type, bool(edit_applied(result.image, s)), kept["psnr"]))
    by_type = defaultdict(list)
    for kind, applied, _ in rows:
        by_type[kind].append(applied)
    return {"applied": statistics.fmean(a for _, a, _ in rows),
            "psnr": statistics.fmean(min(p, 100.0) for _, _, p in rows if p is not None),
            "by_type": {k: statistics.fmean(v) for k, v in sorted(by_type.items())}, "count": len(rows)}


def score_compound(editor: Editor, chains, *, plan: bool, method: str = "ip2p") -> dict:
    edits, whole = [], []
    for i, chain in enumerate(chains):
        text = JOINS[i % len(JOINS)].join(s.instruction for s in chain)
        result = editor.edit(EditRequest(chain[0].source_image(), instruction=text, method=method, seed=0,
                                         plan=plan))
        applied = [bool(edit_applied(result.image, s)) for s in chain]
        edits.extend(applied)
        whole.append(all(applied))
    return {"edits": statistics.fmean(edits), "whole": statistics.fmean(whole), "count": len(chains)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=140)
    parser.add_argument("--compound", type=int, default=30, help="compound requests (two edits each)")
    args = parser.parse_args()
    editor = Editor(device="cpu")
    held_out = generate_samples("test", args.samples, seed=1, heldout_fraction=1.0)
    sets = {"domain held-out wordings": held_out, "user wordings (unseen)": user_worded(held_out, seed=0)}
    start = time.perf_counter()
    for name, samples in sets.items():
        off, on = score(editor, samples, plan=False), score(editor, samples, plan=True)
        print(f"{name}: {len(samples)} edits")
        print(f"  {'':<20}{'plan off':>10}{'plan on':>10}")
        print(f"  {'applied':<20}{off['applied']:>10.3f}{on['applied']:>10.3f}")
        print(f"  {'PSNR outside (dB)':<20}{off['psnr']:>10.2f}{on['psnr']:>10.2f}")
        for kind in off["by_type"]:
            print(f"  {kind:<20}{off['by_type'][kind]:>10.2f}{on['by_type'][kind]:>10.2f}")
    chains = [make_chain("test", 1, i, turns=2) for i in range(args.compound)]
    off, on = score_compound(editor, chains, plan=False), score_compound(editor, chains, plan=True)
    print(f"compound requests: {len(chains)} (two edits each)")
    print(f"  {'edits applied':<20}{off['edits']:>10.3f}{on['edits']:>10.3f}")
    print(f"  {'both applied':<20}{off['whole']:>10.3f}{on['whole']:>10.3f}")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
