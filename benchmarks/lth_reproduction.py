"""Reproduction: the lottery ticket hypothesis on Fashion-MNIST (Frankle & Carbin 2019), with controls.

The paper's protocol with Fashion-MNIST for MNIST, reset to θ₀, several seeds, with random-
reinitialization and layer-wise-shuffle controls at every level. Presets:
  lenet  LeNet-300-100: Adam lr 1.2e-3, batch 60, layer-wise 20% per level (output layer 10%),
         5,000 validation images, evaluation every 100 iterations, 15 levels (down to 3.6%);
         training per level shortened from the paper's 50,000 iterations to --steps.
  conv2  Conv-2: Adam lr 2e-4, batch 60, the paper's rates (conv 10%, fc 20%, output 10%), all of
         Fashion-MNIST (2,000 images held out for validation, evaluated every 200 iterations),
         1,000 iterations per level (where dense Conv-2 passes 88%), 12 levels (down to ~7%),
         channels-last convolutions (faster on a CPU), the random-reinit control (the PaI/CTS
         benchmark's conv2 preset holds the sanity suite). A Conv-2 training takes ~5 minutes on
         one CPU thread: this preset runs for hours on 2 cores, resuming across invocations from
         the last finished level.
The lenet preset finishes in under an hour on 2 CPU cores. Writes the report, plots and a verdict on
each of the paper's claims, computed from the numbers, into docs/results/<preset>/.

    .venv/bin/python benchmarks/lth_reproduction.py --preset lenet|conv2 [--steps ...] [--levels ...] [--seeds 0,1,2]
"""

import argparse
import datetime
import json
from pathlib import Path

import ticketlab as tl
from ticketlab import stats
from ticketlab.reports.loading import load_run
from ticketlab.reports.writer import write_report

REPO = Path(__file__).resolve().parents[1]


CHANCE = 0.1  # ten classes
MATCH_TOLERANCE = 0.01  # "at or above dense accuracy": not more than 1 pp below it


def by_seed(per_seed: dict[int, list[dict]], level: int, key: str) -> dict[int, float]:
    """One value per seed at an IMP level (the seeds that reached it and recorded the value)."""
    return {seed: record[key] for seed, records in per_seed.items() for record in records
            if record["level"] == level and record.get(key) is not None}


def claims(levels: list[dict], per_seed: dict[int, list[dict]], total_iterations: int) -> list[str]:
    """Each claim of the paper checked against the runs, paired by seed (ticketlab.stats), each verdict one of
    supported, not supported or inconclusive, with its reason."""
    dense = levels[0]
    lines = []

    # 1. Tickets match dense between ~50% and ~7%: every level in the range, and the range covered.
    matching = {}
    for r in levels[1:]:
        comparison = stats.paired(by_seed(per_seed, r["level"], "test_accuracy"), by_seed(per_seed, 0, "test_accuracy"))
        matching[r["percent_remaining"] / 100] = stats.verdict(comparison, -MATCH_TOLERANCE, chance=CHANCE, must_train="b",
                                                               names=("the ticket", "the dense network"))
    verdict = stats.over_range(matching, 0.07, 0.5)
    inside = {d: v for d, v in matching.items() if 0.07 * 0.95 <= d <= 0.5 * 1.05}
    lines.append(f"- **Tickets at or above dense accuracy (not more than 1 pp below) from ~50% to ~7% of the weights: "
                 f"{verdict.label}** ({verdict.reason}). Dense {100 * dense['test_accuracy']:.2f}% ± "
                 f"{100 * dense['test_accuracy_std']:.2f}; per level, ticket − dense: "
                 + "; ".join(f"{100 * d:.1f}%: {v.label}, {v.reason}" for d, v in sorted(inside.items(), reverse=True))
                 + ".")

    # 2. Earlier early stopping around 21%: dense − ticket early-stopping iteration > 0.
    near21 = min(levels[1:], key=lambda r: abs(r["percent_remaining"] - 21))
    change = near21["early_stop_iteration"] / dense["early_stop_iteration"] - 1
    capped = dense["early_stop_iteration"] > 0.9 * total_iterations
    if not 15 <= near21["percent_remaining"] <= 30:
        verdict = stats.Verdict(stats.INCONCLUSIVE, f"no level near 21% (closest {near21['percent_remaining']:.1f}%)")
    elif capped:
        verdict = stats.Verdict(stats.INCONCLUSIVE, "the dense network's early-stopping iteration is capped by the "
                                f"training length ({total_iterations} iterations): its validation loss was still falling")
    else:
        verdict = stats.verdict(stats.paired(by_seed(per_seed, 0, "early_stop_iteration"),
                                             by_seed(per_seed, near21["level"], "early_stop_iteration")),
                                unit=1.0, unit_name="iterations")
    lines.append(f"- **Tickets learn faster around 21% (earlier early stop): {verdict.label}** ({verdict.reason}). At "
                 f"{near21['percent_remaining']:.1f}% the early-stopping iteration is {near21['early_stop_iteration']:.0f} "
                 f"± {near21['early_stop_iteration_std']:.0f} vs {dense['early_stop_iteration']:.0f} ± "
                 f"{dense['early_stop_iteration_std']:.0f} dense ({100 * change:+.0f}%; the paper: about −38%).")

    # 3. Controls fall behind the ticket below ~20%: ticket − control > 0 at every level below 20%.
    for kind in ("random-reinit", "shuffle-layerwise"):
        key = f"control_{kind}_test_accuracy"
        below = [r for r in levels if r["percent_remaining"] < 20 and r.get(key) is not None]
        if not any(key in r for r in levels):
            continue
        behind = {r["percent_remaining"]: stats.verdict(stats.paired(by_seed(per_seed, r["level"], "test_accuracy"),
                                                                     by_seed(per_seed, r["level"], key)),
                                                        chance=CHANCE, must_train="a", names=("the ticket", kind))
                  for r in below}
        verdict = stats.combine(behind.values(), "levels below 20%") if below else \
            stats.Verdict(stats.INCONCLUSIVE, "no level below 20%")
        lines.append(f"- **The {kind} control falls behind the ticket below ~20%: {verdict.label}** ({verdict.reason}). "
                     "Ticket − control per level: " + "; ".join(f"{p:.1f}%: {v.label}, {v.reason}" for p, v in behind.items())
                     + ".")
    lines += ["", f"Rule for every verdict: {stats.RULE}."]
    return lines


PRESETS = {
    "lenet": {"title": "LTH: LeNet-300-100 on Fashion-MNIST, layer-wise IMP with controls", "steps": "5000it",
              "levels": "15", "model": "lenet_300_100", "lr": 1.2e-3, "eval_every": "100it",
              "data": {"val_size": 5000}, "prune": {"output_prune_fraction": 0.1},
              "scale": "all 55,000 training and 10,000 test images", "controls": ("random-reinit", "shuffle-layerwise")},
    "conv2": {"title": "LTH: Conv-2 on Fashion-MNIST, layer-wise IMP with controls", "steps": "1000it",
              "levels": "12", "model": "conv2", "lr": 2e-4, "eval_every": "200it", "channels_last": True,
              "data": {"val_size": 2000}, "prune": {"conv_prune_fraction": 0.1, "output_prune_fraction": 0.1},
              "controls": ("random-reinit",),
              "scale": "all 58,000 training images left after 2,000 are held out for validation, and the 10,000 test images"},
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=tuple(PRESETS), default="lenet")
    parser.add_argument("--steps", default=None, help="training per level (default: the preset's)")
    parser.add_argument("--levels", default=None, help="pruning levels (default: the preset's)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workers", default="3", help="parallel seed processes (3 keeps both cores busy to the end)")
    parser.add_argument("--runs-dir", default=str(REPO / "runs" / "benchmarks"))
    parser.add_argument("--out", default=None, help="default: docs/results/lth-<preset>-fashion")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    args.steps = args.steps or preset["steps"]
    args.levels = args.levels or preset["levels"]
    args.out = args.out or str(REPO / "docs" / "results" / f"lth-{args.preset}-fashion")

    seeds = [int(s) for s in args.seeds.split(",")]
    data = tl.load_dataset("fashion-mnist", **preset["data"])
    recipe = tl.TrainConfig(optimizer="adam", lr=preset["lr"], batch_size=60, steps=args.steps,
                            eval_every=preset["eval_every"], channels_last=preset.get("channels_last", False))
    imp = tl.imp(preset["model"], data, recipe, levels=int(args.levels), prune_fraction=0.2, strategy="layerwise",
                 seeds=seeds, workers=int(args.workers), controls=preset["controls"], runs_dir=args.runs_dir, quiet=False,
                 **preset["prune"])
    run = load_run(imp.run_dir, seeds)
    out = Path(args.out)
    trained = sum(json.loads(p.read_text())["wall_time_seconds"] for p in Path(run.run_dir).rglob("summary.json")) / 60
    options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in {**preset["data"], **preset["prune"]}.items())
    command = (f"ticketlab imp --dataset fashion-mnist --model {preset['model']} --optimizer adam --lr {preset['lr']:g} "
               f"--batch-size 60 --steps {args.steps} --eval-every {preset['eval_every']} --levels {args.levels} "
               f"--strategy layerwise --prune-fraction 0.2 {options}"
               + (" --channels-last" if preset.get("channels_last") else "") + f" --controls {','.join(preset['controls'])} "
               f"--seeds {args.seeds}")
    notes = [f"Command: `.venv/bin/python benchmarks/lth_reproduction.py --preset {args.preset} --steps {args.steps} "
             f"--levels {args.levels} --seeds {args.seeds}`, which calls `tl.imp` (the run of `{command}`); run on "
             f"{datetime.date.today().isoformat()} on 2 CPU cores; the trainings recorded in the run took "
             f"{trained:.0f} process-minutes in all, run as parallel seed processes (a rerun reuses finished levels "
             "and only rewrites this report).",
             "", f"Training per level: {args.steps} at batch 60 (the paper: 50,000 iterations for LeNet, 20,000 for "
             f"Conv-2), on {preset['scale']}; all else as in the paper.",
             "", "## What the data shows", "", *claims(run.levels, run.per_seed, run.levels[0]["iterations"])]
    write_report([run], out, preset["title"], notes=notes)
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
