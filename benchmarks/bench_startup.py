"""Start-up as a person feels it: fresh processes, median seconds of several runs.

    python benchmarks/bench_startup.py [--runs 5]

CLI: commands that do not edit (``methods``, ``--help``, ``domain --help``) and the README's edit, wall time of
the whole process. API: import, the first edit (it loads the built-in model) and a warm edit, in one fresh
process each run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "from instructedit.cli import main; main()"]
API = """
import json, time
t0 = time.perf_counter()
from instructedit import Editor, EditRequest
t1 = time.perf_counter()
editor = Editor(device="cpu")
editor.edit(EditRequest("examples/scene.png", instruction="recolour the yellow star blue"))
t2 = time.perf_counter()
editor.edit(EditRequest("examples/scene.png", instruction="recolour the yellow star blue"))
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first edit": t2 - t1, "warm edit": t3 - t2}))
"""


def wall(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        commands = {"instructedit methods": ["methods"], "instructedit --help": ["--help"],
                    "instructedit domain --help": ["domain", "--help"],
                    "instructedit edit (README example)": ["edit", "examples/scene.png",
                                                           "recolour the yellow star blue", "-o",
                                                           f"{out}/out.png", "--no-progress"]}
        print("| command | median wall (s) | runs |")
        print("|---|---|---|")
        for label, extra in commands.items():
            times = [wall(CLI + extra) for _ in range(args.runs)]
            print(f"| {label} | {statistics.median(times):.2f} | {args.runs} |", flush=True)
    phases: dict[str, list[float]] = {}
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", API], cwd=ROOT, check=True, capture_output=True, text=True)
        for key, value in json.loads(out.stdout.strip().splitlines()[-1]).items():
            phases.setdefault(key, []).append(value)
    print("\n| API phase | median (s) |")
    print("|---|---|")
    for key, values in phases.items():
        print(f"| {key} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
