"""Side by side with open_lth: the same IMP work run by both frameworks, their wall time and peak memory.

The work: LeNet-300-100 (open_lth's mnist_lenet_300_100) on Fashion-MNIST, all 60,000 training images (no
validation split), SGD lr 0.1 without momentum, batch 128, --epochs per level, the dense level 0 and then
--levels levels of global magnitude pruning removing 20% of the surviving weights each, the output layer never
pruned, survivors reset to their initial values, the test set evaluated at the start and after every epoch.
Each framework runs as its own subprocess on one thread (OMP_NUM_THREADS=1 and torch.set_num_threads(1)),
with fresh output folders; rounds alternate which goes first. For each run: wall time, CPU time and peak
resident memory (from the kernel's accounting of the finished child), and the final test accuracy of every level.

open_lth is not bundled with ticketlab: give a checkout with --open-lth (default $OPEN_LTH, else /tmp/open_lth).
open_lth reads MNIST through torchvision; where torchvision is not installed, --shim names a folder put first on
open_lth's PYTHONPATH that stands in for it (see docs/performance.md, "Against open_lth"). open_lth's `mnist`
dataset is pointed at the Fashion-MNIST files, unpacked beforehand (untimed) where torchvision's download
would leave them.

    .venv/bin/python benchmarks/vs_open_lth.py --open-lth /tmp/open_lth --shim /tmp/open_lth_shim \
        [--levels 3] [--epochs 2] [--rounds 1] [--json-out figures.json]
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parents[1]
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

# open_lth.py run as __main__ after torch is limited to one thread (its own code never sets a thread count).
OPEN_LTH_LAUNCHER = ("import runpy, sys, torch; torch.set_num_threads(1); sys.argv[0] = 'open_lth.py'; "
                     "runpy.run_path('open_lth.py', run_name='__main__')")


class UsageError(Exception):
    """A bad argument, reported in one line before any work."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--open-lth", default=os.environ.get("OPEN_LTH", "/tmp/open_lth"),
                        help="open_lth checkout (default: $OPEN_LTH, else /tmp/open_lth)")
    parser.add_argument("--shim", default=os.environ.get("OPEN_LTH_SHIM"),
                        help="folder put first on open_lth's PYTHONPATH, standing in for torchvision "
                             "(default: $OPEN_LTH_SHIM; none: torchvision must be importable)")
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist",
                        help="folder holding the four Fashion-MNIST IDX files, .gz or not (default: %(default)s)")
    parser.add_argument("--levels", type=int, default=3, help="pruning levels after the dense one (default: 3)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per level (default: 2)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs of each framework, alternating which goes first (default: 1)")
    parser.add_argument("--ticketlab", default=str(REPO / ".venv" / "bin" / "ticketlab"),
                        help="ticketlab executable (default: the repository's .venv)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that runs open_lth (default: this one, hence the same torch)")
    parser.add_argument("--ticketlab-cache", choices=("fresh", "shared"), default="fresh",
                        help="ticketlab's prepared-data cache: an empty one for every run (fresh, the default), or "
                             "one for the whole invocation, warm after the first ticketlab run (shared)")
    parser.add_argument("--json-out", help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (outputs and logs of every run)")
    return parser.parse_args(argv)


def check_args(args) -> None:
    if args.levels < 0 or args.epochs < 1 or args.rounds < 1:
        raise UsageError("--levels must be >= 0, --epochs and --rounds >= 1")
    if not (Path(args.open_lth) / "open_lth.py").is_file():
        raise UsageError(f"no open_lth checkout at {args.open_lth} (no open_lth.py); give --open-lth or $OPEN_LTH")
    if args.shim and not (Path(args.shim) / "torchvision").is_dir():
        raise UsageError(f"--shim {args.shim} has no torchvision folder")
    if not args.shim and subprocess.run([args.python, "-c", "import torchvision"], capture_output=True).returncode:
        raise UsageError("torchvision is not importable by open_lth's interpreter; give --shim")
    missing = [f for f in IDX_FILES if not any((Path(args.data_dir) / (f + ext)).is_file() for ext in ("", ".gz"))]
    if missing:
        raise UsageError(f"--data-dir {args.data_dir} lacks {', '.join(missing)}")
    if not Path(args.ticketlab).is_file():
        raise UsageError(f"no ticketlab executable at {args.ticketlab}")


def ticketlab_flags(ticketlab: str) -> list[str]:
    """Options that make ticketlab's recipe open_lth's, as far as this ticketlab offers them."""
    help_text = subprocess.run([ticketlab, "imp", "--help"], capture_output=True, text=True,
                               env={**os.environ, "COLUMNS": "200"}).stdout
    flags = ["--exclude-output"] if "--exclude-output" in help_text else ["--exclude", "classifier.weight"]
    if "--bias " in help_text or "--bias {" in help_text:
        flags += ["--bias", "uniform"]  # open_lth keeps PyTorch's default uniform biases
    if "--threads" in help_text:
        flags += ["--threads", "1"]
    return flags


def prepare_open_lth_data(data_dir: Path, work: Path) -> Path:
    """A dataset root where open_lth's mnist finds the IDX files unpacked, as torchvision's download leaves them."""
    raw = work / "open_lth_datasets" / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in IDX_FILES:
        plain = data_dir / name
        if plain.is_file():
            shutil.copyfile(plain, raw / name)
        else:
            with gzip.open(data_dir / (name + ".gz"), "rb") as source, open(raw / name, "wb") as target:
                shutil.copyfileobj(source, target)
    return work / "open_lth_datasets"


def run_measured(command: list[str], cwd: Path, env: dict, log_stem: Path) -> dict:
    """Run `command` to completion; its wall time, CPU time and peak RSS (of it and its waited-for children)."""
    with open(f"{log_stem}.out", "wb") as out, open(f"{log_stem}.err", "wb") as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        tail = Path(f"{log_stem}.err").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(command[:3])} ... failed with exit code {child.returncode}:\n{tail}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024}


def run_open_lth(args, datasets_root: Path, work: Path, tag: str) -> dict:
    home = work / f"open_lth-home-{tag}"  # open_lth writes under ~/open_lth_data and reads ~/open_lth_datasets
    home.mkdir()
    (home / "open_lth_datasets").symlink_to(datasets_root)
    env = {**os.environ, **ONE_THREAD, "HOME": str(home)}
    if args.shim:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(args.shim).resolve()), env.get("PYTHONPATH")) if p)
    command = [args.python, "-c", OPEN_LTH_LAUNCHER, "lottery", "--default_hparams=mnist_lenet_300_100",
               "--dataset_name=mnist", "--batch_size=128", "--model_name=mnist_lenet_300_100",
               "--model_init=kaiming_normal", "--optimizer_name=sgd", "--lr=0.1", "--momentum=0",
               f"--training_steps={args.epochs}ep", "--pruning_strategy=sparse_global", "--pruning_fraction=0.2",
               "--pruning_layers_to_ignore=fc.weight", f"--levels={args.levels}", "--quiet"]
    figures = run_measured(command, Path(args.open_lth), env, work / f"open_lth-{tag}")
    (experiment,) = (home / "open_lth_data").glob("lottery_*")
    levels = []
    for level in range(args.levels + 1):
        folder = experiment / "replicate_1" / f"level_{level}" / "main"
        test = {}
        for line in (folder / "logger").read_text().splitlines():
            name, iteration, value = line.split(",")
            if name == "test_accuracy":
                test[int(iteration)] = float(value)
        sparsity = json.loads((folder / "sparsity_report.json").read_text())
        last = max(test)
        levels.append({"level": level, "test_accuracy": test[last], "iterations": last,
                       "weights_remaining": int(sparsity["unpruned"]), "test_evaluations": len(test)})
    return {**figures, "levels": levels}


def run_ticketlab(args, flags: list[str], data_root: Path, work: Path, tag: str) -> dict:
    cache = work / ("ticketlab-cache" if args.ticketlab_cache == "shared" else f"ticketlab-cache-{tag}")
    env = {**os.environ, **ONE_THREAD, "TICKETLAB_CACHE_DIR": str(cache), "XDG_CACHE_HOME": str(cache)}
    command = [args.ticketlab, "imp", "--dataset", "fashion-mnist", "--data-root", str(data_root), "--val-size", "0",
               "--model", "lenet_300_100", "--optimizer", "sgd", "--lr", "0.1", "--momentum", "0",
               "--batch-size", "128", "--steps", f"{args.epochs}ep", "--eval-every", "1ep",
               "--levels", str(args.levels), "--prune-fraction", "0.2", "--strategy", "global",
               "--rewind-step", "0it", "--seed", "0", "--runs-dir", str(work / f"ticketlab-runs-{tag}"),
               "--json", "--quiet", *flags]
    figures = run_measured(command, work, env, work / f"ticketlab-{tag}")
    result = json.loads(Path(work / f"ticketlab-{tag}.out").read_text())
    levels = []
    for r in result["levels"]:
        summary = json.loads((Path(r["ticket"]).parent / "summary.json").read_text())
        levels.append({"level": r["level"], "test_accuracy": r["test_accuracy"], "iterations": r["iterations"],
                       "weights_remaining": weights_remaining(Path(r["ticket"])),
                       "threads": summary.get("machine", {}).get("threads")})
    return {**figures, "levels": levels, "command": " ".join(command[1:])}


def weights_remaining(ticket: Path) -> int:
    """Surviving weights of a ticket's Linear/Conv weight tensors, counted as open_lth counts them: a tensor
    without a mask (never pruned, like the output layer here) counts whole."""
    tensors = load_file(str(ticket))
    count = 0
    for name, values in tensors.items():
        if name.startswith("trained/") and name.endswith(".weight") and values.ndim > 1:
            mask = tensors.get("mask/" + name[len("trained/"):])
            count += values.size if mask is None else int(np.unpackbits(mask).sum())
    return count


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def summarize(runs: dict[str, list[dict]]) -> dict:
    median = {name: {key: statistics.median(r[key] for r in rs) for key in ("wall_s", "cpu_s")}
              for name, rs in runs.items()}
    # The median run's peak: with --ticketlab-cache shared only the first ticketlab run prepares the data
    # (the cold peak, kept as max_peak_rss_mib), the others read the cache as any later run does.
    peak = {name: statistics.median(r["peak_rss_mib"] for r in rs) for name, rs in runs.items()}
    highest = {name: max(r["peak_rss_mib"] for r in rs) for name, rs in runs.items()}
    return {"median_wall_s": {n: m["wall_s"] for n, m in median.items()},
            "median_cpu_s": {n: m["cpu_s"] for n, m in median.items()},
            "wall_ratio": median["ticketlab"]["wall_s"] / median["open_lth"]["wall_s"],
            "cpu_ratio": median["ticketlab"]["cpu_s"] / median["open_lth"]["cpu_s"],
            "peak_rss_mib": peak, "peak_rss_ratio": peak["ticketlab"] / peak["open_lth"],
            "max_peak_rss_mib": highest, "max_peak_rss_ratio": highest["ticketlab"] / highest["open_lth"]}


def report(figures: dict) -> None:
    s = figures["summary"]
    print(f"date {figures['date']}; {figures['machine']}; threads per process: {figures['threads']}; "
          f"load average (1, 5, 15 min) at start {figures['load_start']}, at end {figures['load_end']}")
    print(f"work: {figures['levels']} levels after the dense one x {figures['epochs']} epochs, "
          f"{figures['rounds']} round(s); ticketlab options for open_lth's recipe: "
          f"{' '.join(figures['ticketlab_flags'])}")
    for name, runs in figures["runs"].items():
        for i, r in enumerate(runs):
            accuracies = ", ".join(f"L{lv['level']} {100 * lv['test_accuracy']:.2f}%" for lv in r["levels"])
            print(f"{name:9s} run {i}: wall {r['wall_s']:7.1f} s, CPU {r['cpu_s']:7.1f} s, "
                  f"peak RSS {r['peak_rss_mib']:6.0f} MiB; test accuracy {accuracies}")
    for label, key, ratio, unit in (("median wall", "median_wall_s", "wall_ratio", "s"),
                                    ("median CPU", "median_cpu_s", "cpu_ratio", "s"),
                                    ("median peak RSS", "peak_rss_mib", "peak_rss_ratio", "MiB"),
                                    ("max peak RSS", "max_peak_rss_mib", "max_peak_rss_ratio", "MiB")):
        print(f"{label + ':':17s} ticketlab {s[key]['ticketlab']:.1f} {unit}, "
              f"open_lth {s[key]['open_lth']:.1f} {unit}; "
              f"ratio {s[ratio]:.3f} (open_lth / ticketlab {1 / s[ratio]:.2f})")
    per_level = {name: list(zip(*(r["levels"] for r in runs))) for name, runs in figures["runs"].items()}
    for t, o in zip(per_level["ticketlab"], per_level["open_lth"]):
        t_acc, o_acc = (statistics.median(lv["test_accuracy"] for lv in runs) for runs in (t, o))
        print(f"level {t[0]['level']}: median test accuracy ticketlab {100 * t_acc:.2f}%, open_lth {100 * o_acc:.2f}% "
              f"({100 * (t_acc - o_acc):+.2f} pp); iterations {t[0]['iterations']} / {o[0]['iterations']}; "
              f"weights remaining {t[0]['weights_remaining']} / {o[0]['weights_remaining']}")
    threads = sorted({str(lv["threads"]) for r in figures["runs"]["ticketlab"] for lv in r["levels"]})
    print(f"torch threads ticketlab recorded in its summaries: {', '.join(threads)}")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        check_args(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    figures = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}",
               "threads": 1, "levels": args.levels, "epochs": args.epochs, "rounds": args.rounds,
               "load_start": load()}
    work = Path(tempfile.mkdtemp(prefix="vs-open-lth-"))
    try:
        figures["ticketlab_flags"] = ticketlab_flags(args.ticketlab)
        datasets_root = prepare_open_lth_data(Path(args.data_dir), work)
        ticketlab_root = work / "ticketlab-data"  # ticketlab looks in <root>/fashion-mnist first
        ticketlab_root.mkdir()
        (ticketlab_root / "fashion-mnist").symlink_to(Path(args.data_dir).resolve())
        runs = {"ticketlab": [], "open_lth": []}
        for round_index in range(args.rounds):
            order = ("open_lth", "ticketlab") if round_index % 2 == 0 else ("ticketlab", "open_lth")
            for name in order:
                tag = str(round_index)
                print(f"round {round_index}: running {name} ...", file=sys.stderr, flush=True)
                if name == "open_lth":
                    runs[name].append(run_open_lth(args, datasets_root, work, tag))
                else:
                    runs[name].append(run_ticketlab(args, figures["ticketlab_flags"], ticketlab_root, work, tag))
        figures["load_end"] = load()
        figures["runs"] = runs
        figures["summary"] = summarize(runs)
    finally:
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(figures)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
