"""What a short run pays before and around its training: start-up, data loading, the first step, memory.

Prints absolute figures (a before/after ratio needs two versions, so it cannot come from one run):

- `ticketlab --version` and `ticketlab --help`, each a fresh process (median of --repeats);
- loading Fashion-MNIST cold (parsing the IDX files, splitting, statistics, writing the cache) and from
  the cache of prepared tensors, in this process, with a fresh cache folder;
- the first optimizer step of LeNet-300-100 in a fresh process, with ticketlab's optimizer (the one the
  trainer uses on the CPU) and with torch.optim's (whose first use imports torch._dynamo);
- one LeNet-300-100 level of one epoch (`ticketlab train`, SGD 0.1, batch 128): its wall time and the
  peak resident memory of its process;

with the torch thread count, the cores and the load averages at the start, since every figure depends
on them. `--json PATH` also writes them as one JSON object.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fixed_costs.py [--threads 1] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ticketlab import machine
from ticketlab.data import load_dataset

FIRST_STEP = """
import sys, time
started = time.perf_counter()
import torch
from ticketlab import optim
from ticketlab.models import create_model
torch.set_num_threads({threads})
imported = time.perf_counter()
model = create_model("lenet_300_100", (1, 28, 28), 10, seed=0)
x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
built = time.perf_counter()
optimizer = {library}.SGD(model.parameters(), lr=0.1)
torch.nn.functional.cross_entropy(model(x), y).backward()
optimizer.step()
print(json.dumps({{"import_seconds": imported - started, "first_step_seconds": time.perf_counter() - built,
                  "imports_dynamo": "torch._dynamo" in sys.modules}}))
"""


def timed_process(args: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def median_time(args: list[str], env: dict, repeats: int) -> float:
    return round(statistics.median(timed_process(args, env) for _ in range(repeats)), 3)


def first_step(library: str, threads: int, env: dict) -> dict:
    code = "import json\n" + FIRST_STEP.format(threads=threads, library=library)
    done = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in json.loads(done.stdout).items()}


def data_loading(data_root: str | None) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        previous = os.environ.get("TICKETLAB_CACHE_DIR")
        os.environ["TICKETLAB_CACHE_DIR"] = cache
        try:
            started = time.perf_counter()
            cold = load_dataset("fashion-mnist", data_root=data_root)
            middle = time.perf_counter()
            cached = load_dataset("fashion-mnist", data_root=data_root)
            ended = time.perf_counter()
        finally:
            if previous is None:
                os.environ.pop("TICKETLAB_CACHE_DIR")
            else:
                os.environ["TICKETLAB_CACHE_DIR"] = previous
    stored = cached.stored("train")
    return {"cold_seconds": round(middle - started, 3), "cached_seconds": round(ended - middle, 3),
            "train_inputs": f"{tuple(stored.shape)} {stored.dtype}",
            "train_inputs_mib": round(stored.numel() * stored.element_size() / 2**20, 1),
            "same_inputs": bool((cold.stored("train") == stored).all())}


# Runs a command and prints its exit code and its own peak RSS. A child forked from a large process starts
# with that process's pages counted in its peak, so the command is started from this small one instead.
PEAK_OF = """
import json, os, subprocess, sys
process = subprocess.Popen(sys.argv[1:], stdout=open(os.environ["FIXED_COSTS_OUT"], "w"), stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(process.pid, 0)
print(json.dumps({"exit_code": os.waitstatus_to_exitcode(status), "peak_rss_kib": usage.ru_maxrss}))
"""


def one_level(threads: int, data_root: str | None, env: dict) -> dict:
    """`ticketlab train` for one epoch in its own process: wall time and that process's peak RSS."""
    with tempfile.TemporaryDirectory() as runs:
        args = [sys.executable, "-m", "ticketlab", "train", "--dataset", "fashion-mnist", "--model", "lenet_300_100",
                "--steps", "1ep", "--eval-every", "1ep", "--threads", str(threads), "--runs-dir", runs, "--quiet",
                "--json"]
        if data_root:
            args += ["--data-root", data_root]
        out = Path(runs) / "out.json"
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PEAK_OF, *args], env={**env, "FIXED_COSTS_OUT": str(out)},
                              check=True, capture_output=True, text=True)
        wall = time.perf_counter() - started
        measured = json.loads(done.stdout)
        if measured["exit_code"] != 0:
            raise SystemExit(f"ticketlab train failed with exit code {measured['exit_code']}")
        summary = json.loads(out.read_text())["summary"]
    return {"wall_seconds": round(wall, 2), "peak_rss_mib": round(measured["peak_rss_kib"] / 1024, 1),
            "test_accuracy": summary["test_accuracy"], "step_time_seconds": summary["step_time_seconds"],
            "machine": summary["machine"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the measured processes")
    parser.add_argument("--repeats", type=int, default=3, help="runs of --version and --help (the median is shown)")
    parser.add_argument("--data-root", default=None, help="where Fashion-MNIST is (default: ticketlab's search)")
    parser.add_argument("--skip-level", action="store_true", help="leave out the one-epoch level (the slow part)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    cli = [sys.executable, "-m", "ticketlab"]
    # The cached data for the level run: warmed here, so the level measures a run after the first.
    figures = {"threads": args.threads, "cores": machine.cores(), "load_average_at_start": machine.load_average()}
    figures["version_seconds"] = median_time(cli + ["--version"], env, args.repeats)
    figures["help_seconds"] = median_time(cli + ["--help"], env, args.repeats)
    figures["data_loading"] = data_loading(args.data_root)
    figures["first_step"] = {"ticketlab.optim": first_step("optim", args.threads, env),
                             "torch.optim": first_step("torch.optim", args.threads, env)}
    if not args.skip_level:
        load_dataset("fashion-mnist", data_root=args.data_root)  # the level below reads the user's cache
        figures["one_epoch_level"] = one_level(args.threads, args.data_root, env)
    figures["load_average_at_end"] = machine.load_average()
    for key, value in figures.items():
        print(f"{key}: {json.dumps(value)}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
