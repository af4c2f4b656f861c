"""The service under load, on loopback, with the built-in models: warm latency against the engine's own time,
then N concurrent clients against a bounded queue.

    python benchmarks/bench_service.py [--clients 8] [--edits 4] [--max-queue 4] [--workers 1]

Starts ``instructedit serve`` on a free port with a fresh data folder, so the figures include HTTP, the job store
and the result files. Each client submits held-out domain edits (built-in InstructPix2Pix, its defaults) and
follows each job by its Server-Sent Events to its end; a 429 is counted and retried after its Retry-After. Every
accepted job must end done with a result image; the script fails otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from service_process import free_port, serve  # noqa: E402

from instructedit import Editor, EditRequest  # noqa: E402
from instructedit.domain import generate_samples  # noqa: E402
from instructedit.inputs.files import encode_png  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_edit(base: str, image: bytes, instruction: str, seed: int, stats: dict, lock: threading.Lock) -> None:
    """Submit one edit (retrying a 429 after its Retry-After), follow it by Server-Sent Events to its end."""
    start = time.perf_counter()
    while True:
        response = httpx.post(f"{base}/v1/edits", data={"instruction": instruction, "seed": str(seed)},
                              files={"image": ("in.png", image, "image/png")}, timeout=60)
        if response.status_code != 429:
            break
        with lock:
            stats["rejected"] += 1
        time.sleep(float(response.headers.get("retry-after", "1")) / 10)  # a patient client, scaled to the bench
    response.raise_for_status()
    job_id, job = response.json()["id"], {}
    with httpx.stream("GET", f"{base}/v1/jobs/{job_id}/events", timeout=600) as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                job = json.loads(line[6:])
    ok = job.get("state") == "done" and httpx.get(f"{base}/v1/jobs/{job_id}/image", timeout=60).status_code == 200
    with lock:
        stats["latency"].append(time.perf_counter() - start)
        stats["done" if ok else "lost"] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--edits", type=int, default=4, help="edits per client")
    parser.add_argument("--max-queue", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--warm", type=int, default=8, help="sequential edits for the warm-latency figure")
    args = parser.parse_args()
    samples = generate_samples("test", max(args.warm, args.clients * args.edits), seed=2, heldout_fraction=1.0)
    images = [encode_png(s.source_image()) for s in samples]

    editor = Editor(device="cpu")
    engine = []
    for i, sample in enumerate(samples[: args.warm + 1]):
        start = time.perf_counter()
        editor.edit(EditRequest(sample.source_image(), instruction=sample.instruction, seed=i))
        engine.append(time.perf_counter() - start)
    engine = engine[1:]  # the first loads the model

    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        process = serve(Path(data), port, "--max-queue", str(args.max_queue), "--workers", str(args.workers))
        base = f"http://127.0.0.1:{port}"
        try:
            lock = threading.Lock()
            warm = {"latency": [], "done": 0, "lost": 0, "rejected": 0}
            for i in range(args.warm + 1):
                run_edit(base, images[i], samples[i].instruction, i, warm, lock)
            warm["latency"] = warm["latency"][1:]  # the first loads the worker's model
            load = {"latency": [], "done": 0, "lost": 0, "rejected": 0}
            start = time.perf_counter()

            def client(c: int) -> None:
                for e in range(args.edits):
                    k = c * args.edits + e
                    run_edit(base, images[k], samples[k].instruction, k, load, lock)

            threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=600)
            elapsed = time.perf_counter() - start
        finally:
            process.terminate()
            process.wait(10)

    engine_p50, warm_p50 = statistics.median(engine), statistics.median(warm["latency"])
    print(f"built-in ip2p on {samples[0].size}px domain images, CPU, {args.workers} worker(s)")
    print("| figure | engine (Editor.edit) | service (HTTP, store, files) |")
    print("|---|---|---|")
    print(f"| warm latency, one client, p50 | {engine_p50:.3f} s | {warm_p50:.3f} s (x{warm_p50 / engine_p50:.2f}) |")
    total = args.clients * args.edits
    lat = load["latency"]
    print(f"\n{args.clients} concurrent clients x {args.edits} edits, queue bound {args.max_queue}: "
          f"{load['done']}/{total} done in {elapsed:.1f} s = {load['done'] / elapsed:.2f} edits/s "
          f"(engine alone: {1 / engine_p50:.2f}/s); latency p50 {percentile(lat, 0.5):.2f} s, "
          f"p95 {percentile(lat, 0.95):.2f} s; {load['rejected']} submissions got 429 and were retried")
    if load["done"] != total or load["lost"] or warm["lost"]:
        raise SystemExit(f"accepted jobs without a result: {load['lost'] + warm['lost']}, "
                         f"unfinished {total - load['done'] - load['lost']}")


if __name__ == "__main__":
    main()
