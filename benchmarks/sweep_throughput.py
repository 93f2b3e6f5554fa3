"""Throughput of a sweep on the local engine: 2 parallel workers (1 thread each) vs the same runs one
after another (1 worker, 2 threads), in one run of this script, on fresh run directories each time.

The grid: LeNet-300-100 on Fashion-MNIST, PaI methods × densities × seeds, short trainings. Prints
runs per minute for both and their ratio. Run it alone: timings on 2 cores mean little otherwise.

    .venv/bin/python benchmarks/sweep_throughput.py [--steps 500it]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ticketlab as tl


def grid(steps: str) -> dict:
    return {"command": "pai",
            "fixed": {"dataset": "fashion-mnist", "model": "lenet_300_100", "optimizer": "adam", "lr": 1.2e-3,
                      "batch_size": 60, "steps": steps, "eval_every": steps},
            "grid": {"methods": ["random", "snip"], "densities": [0.1, 0.02], "seeds": [0, 1]}}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="500it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        timings = {}
        for workers in (1, 2, 1, 2):  # twice each, interleaved, so a drift in machine speed hits both
            runs = Path(tmp) / f"runs-{workers}-{len(timings)}"
            started = time.perf_counter()
            summary = tl.sweep(grid(args.steps), workers=workers, runs_dir=runs)
            assert summary.failed == 0, summary
            timings.setdefault(workers, []).append(time.perf_counter() - started)
        count = summary.runs
        best = {w: min(t) for w, t in timings.items()}
        for workers, seconds in best.items():
            print(f"{workers} worker(s): {count} runs in {seconds:.1f} s = {60 * count / seconds:.1f} runs/min "
                  f"(all timings: {', '.join(f'{t:.1f}' for t in timings[workers])} s)")
        print(f"parallel / sequential throughput: {best[1] / best[2]:.2f}x")


if __name__ == "__main__":
    main()
