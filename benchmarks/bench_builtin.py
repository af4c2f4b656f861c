"""Seconds per edit of every method on the built-in models, with the UNet's forward replayed from a trace and eager.

    python benchmarks/bench_builtin.py [--repeats 7]

One held-out scene (test split), each method's built-in defaults; runs alternate traced/eager so load drift hits
both alike; prints the medians and the UNet calls per edit.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

from instructedit import Editor
from instructedit.domain import generate_samples
from instructedit.evaluation.builtin_quality import sample_request
from instructedit.models.builtin import builtin_model

METHODS = ("sdedit", "ip2p", "encode-decode", "diffedit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    editor = Editor(device="cpu")
    sample = generate_samples("test", 1, seed=3)[0]
    print(f"built-in models, one 64x64 held-out scene, median of {args.repeats}")
    print(f"{'method':<14} {'traced s':>9} {'eager s':>8} {'eager / traced':>15} {'UNet calls':>11}")
    for method in METHODS:
        request = sample_request(sample, method)
        forward = editor.load(builtin_model("ip2p" if method == "ip2p" else "t2i")).unet_forward
        times: dict[bool, list[float]] = {True: [], False: []}
        calls = 0
        for i in range(args.repeats + 1):
            for traced in (True, False):
                with nullcontext() if traced else forward.eager():
                    start = time.perf_counter()
                    calls = editor.edit(request).record.unet_calls
                if i:  # the first round records the traces and warms up
                    times[traced].append(time.perf_counter() - start)
        traced, eager = statistics.median(times[True]), statistics.median(times[False])
        print(f"{method:<14} {traced:9.3f} {eager:8.3f} {eager / traced:15.2f} {calls:>11}")


if __name__ == "__main__":
    main()
