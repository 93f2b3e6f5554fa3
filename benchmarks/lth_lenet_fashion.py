"""Reproduction: the lottery ticket hypothesis on LeNet-300-100 / Fashion-MNIST, with controls.

The LTH paper's protocol (Frankle & Carbin 2019) with Fashion-MNIST for MNIST: Adam lr 1.2e-3,
batch 60, layer-wise pruning of 20% per level (output layer 10%), 5,000 validation images,
evaluation every 100 iterations, reset to θ₀, several seeds, down to ≤ 3.6% of the weights, with
random-reinitialization and layer-wise-shuffle controls at every level. Training per level is
shortened from the paper's 50,000 iterations (see --steps) so the whole run fits in under an hour
on 2 CPU cores. Writes the report, plots and a verdict on each of the paper's claims, computed
from the numbers, into docs/results/.

    .venv/bin/python benchmarks/lth_lenet_fashion.py [--steps 5000it] [--levels 15] [--seeds 0,1,2]
"""

import argparse
import contextlib
import datetime
import io
import json
import sys
import time
from pathlib import Path

from ticketlab.cli import main as ticketlab
from ticketlab.report import load_run, write_report

REPO = Path(__file__).resolve().parents[1]


def claims(levels: list[dict]) -> list[str]:
    """Each claim of the paper checked against the measured means and seed standard deviations."""
    dense = levels[0]
    lines = []

    band = [r for r in levels if 7 <= r["percent_remaining"] <= 50]
    matching = [r for r in band if r["test_accuracy"] >= dense["test_accuracy"] - dense["test_accuracy_std"]]
    above = [r for r in band if r["test_accuracy"] > dense["test_accuracy"]]
    verdict = "supported" if len(matching) == len(band) else ("partly supported" if matching else "not supported")
    verdict = verdict if band else "not tested (no level in that range)"
    lines.append(f"- **Tickets at or above dense accuracy between ~50% and ~7% of the weights: {verdict}.** "
                 f"{len(matching)} of {len(band)} levels in that range are within one seed-std of dense "
                 f"({100 * dense['test_accuracy']:.2f}% ± {100 * dense['test_accuracy_std']:.2f}) or above it; "
                 f"{len(above)} are above the dense mean"
                 + (f" (best: {100 * max(r['test_accuracy'] for r in band):.2f}% at "
                    f"{max(band, key=lambda r: r['test_accuracy'])['percent_remaining']:.1f}%)." if band else "."))

    near21 = min(levels[1:], key=lambda r: abs(r["percent_remaining"] - 21))
    change = near21["early_stop_iteration"] / dense["early_stop_iteration"] - 1
    verdict = "supported" if near21["early_stop_iteration"] + near21["early_stop_iteration_std"] < \
        dense["early_stop_iteration"] - dense["early_stop_iteration_std"] else "not supported"
    lines.append(f"- **Tickets learn faster around 21% (earlier early stop): {verdict}.** At "
                 f"{near21['percent_remaining']:.1f}% the early-stopping iteration is {near21['early_stop_iteration']:.0f} "
                 f"± {near21['early_stop_iteration_std']:.0f} vs {dense['early_stop_iteration']:.0f} ± "
                 f"{dense['early_stop_iteration_std']:.0f} dense ({100 * change:+.0f}%; the paper: about −38%).")

    for kind in ("random-reinit", "shuffle-layerwise"):
        key = f"control_{kind}_test_accuracy"
        below = [r for r in levels if r["percent_remaining"] < 20 and r.get(key) is not None]
        behind = [r for r in below if r[key] + r[f"{key}_std"] < r["test_accuracy"] - r["test_accuracy_std"]]
        verdict = "supported" if below and len(behind) == len(below) else ("partly supported" if behind else "not supported")
        verdict = verdict if below else "not tested (no level below 20%)"
        gaps = ", ".join(f"{r['percent_remaining']:.1f}%: {100 * (r['test_accuracy'] - r[key]):+.2f} pp" for r in below)
        lines.append(f"- **The {kind} control falls behind the ticket below ~20%: {verdict}.** {len(behind)} of "
                     f"{len(below)} levels below 20% separate by more than one std on each side (ticket minus control: {gaps}).")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="5000it")
    parser.add_argument("--levels", default="15")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workers", default="3", help="parallel seed processes (3 keeps both cores busy to the end)")
    parser.add_argument("--runs-dir", default=str(REPO / "runs" / "benchmarks"))
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "lth-lenet-fashion"))
    args = parser.parse_args()

    started = time.time()
    command = ["imp", "--dataset", "fashion-mnist", "--model", "lenet_300_100", "--optimizer", "adam", "--lr", "1.2e-3",
               "--batch-size", "60", "--steps", args.steps, "--eval-every", "100it", "--val-size", "5000",
               "--strategy", "layerwise", "--prune-fraction", "0.2", "--output-prune-fraction", "0.1",
               "--levels", args.levels, "--seeds", args.seeds, "--workers", args.workers, "--controls", "random-reinit,shuffle-layerwise",
               "--runs-dir", args.runs_dir, "--quiet"]
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        if ticketlab(command + ["--json"]) != 0:
            sys.exit("the IMP run failed")
    run = load_run(json.loads(captured.getvalue())["run_dir"], [int(s) for s in args.seeds.split(",")])
    out = Path(args.out)
    minutes = (time.time() - started) / 60
    notes = [f"Command: `.venv/bin/python benchmarks/lth_lenet_fashion.py --steps {args.steps} --levels {args.levels} "
             f"--seeds {args.seeds}`, which runs `ticketlab {' '.join(command[:-3])}`; run on "
             f"{datetime.date.today().isoformat()}, {minutes:.0f} minutes on 2 CPU cores (a rerun reuses finished levels).",
             "", f"Training per level: {args.steps} at batch 60 (the paper: 50,000 iterations); all else as in the paper.",
             "", "## What the data shows", "", *claims(run.levels)]
    write_report([run], out, "LTH: LeNet-300-100 on Fashion-MNIST, layer-wise IMP with controls", notes=notes)
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
