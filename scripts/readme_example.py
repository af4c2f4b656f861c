"""The README's example: a held-out scene, edited offline by the built-in InstructPix2Pix model.

    python scripts/readme_example.py

Writes ``examples/scene.png`` (test-split scene, never trained on), ``examples/scene.json`` (its instruction and
captions) and ``docs/builtin_example.png`` (input | output of ``instructedit edit`` | ground truth, 4× enlarged).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from instructedit.evaluation.builtin_quality import held_out_samples

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_INDEX = 10  # fixed in advance: a held-out scene, a change-colour edit in a wording training never used
SCALE = 4


def main() -> None:
    sample = held_out_samples(SAMPLE_INDEX + 1)[SAMPLE_INDEX]
    scene = ROOT / "examples" / "scene.png"
    sample.source_image().save(scene)
    info = {"id": sample.id, "edit_type": sample.edit_type, "instruction": sample.instruction,
            "source_caption": sample.source_caption, "target_caption": sample.target_caption}
    (ROOT / "examples" / "scene.json").write_text(json.dumps(info, indent=2) + "\n")
    out = Path(tempfile.mkdtemp()) / "edited.png"
    command = ["instructedit", "edit", str(scene), sample.instruction, "-o", str(out), "--no-progress"]
    subprocess.run([sys.executable, "-m", "instructedit.cli", *command[1:]], check=True)
    panels = [sample.source_image(), Image.open(out).convert("RGB"), sample.target_image()]
    side = panels[0].width * SCALE
    sheet = Image.new("RGB", (3 * side + 40, side + 28), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (panel, label) in enumerate(zip(panels, ("input", "instructedit edit", "ground truth"), strict=True)):
        sheet.paste(panel.resize((side, side), Image.NEAREST), (i * (side + 20), 28))
        draw.text((i * (side + 20) + 4, 8), label, fill="black")
    (ROOT / "docs").mkdir(exist_ok=True)
    sheet.save(ROOT / "docs" / "builtin_example.png")
    print(f"{sample.instruction!r}: {' '.join(command)}")


if __name__ == "__main__":
    main()
