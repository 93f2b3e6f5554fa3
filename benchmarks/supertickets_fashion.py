"""Reproduction: SuperTickets vs search-then-prune baselines and ablations (docs/methods.md, SuperTickets), reduced scale.

On Fashion-MNIST (a training subset, stated in the report), over seeds, at densities 50%, 20%, 10%:
  - SuperTickets: one two-in-one training (search + progressive pruning with reactivation);
  - baselines: the same training with search only (one per seed, shared), then one-shot magnitude,
    SNIP, GraSP, SynFlow or random pruning to the density;
  - ablations at 20%: one prune at the end, no reactivation, masks kept through a shrink, masks reset
    after each prune, no search (the fixed supernet pruned progressively);
every one evaluated as found (BatchNorm statistics re-estimated) and after retraining with the mask
fixed (a quarter of the training length). Transfer: the 20% SuperTickets are moved to scikit-learn's
digits (resampled to 28x28: another dataset, handwritten digits instead of clothing) with a new head
and fine-tuned with masks fixed, next to a SuperTicket found on digits directly and the dense
supernet trained on digits, all with the same budget. Every verdict in the report is computed here.

    .venv/bin/python benchmarks/supertickets_fashion.py [--seeds 0,1,2] [--train-subset 4000 --epochs 6]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
from pathlib import Path

import ticketlab as tl
from ticketlab import stats
from ticketlab.files import write_json, write_text
from ticketlab.lth.aggregate import mean_std
from ticketlab.supertickets.frontier import frontier_table, load_points, plot_frontier

REPO = Path(__file__).resolve().parents[1]
BASELINES = ("magnitude", "snip", "grasp", "synflow", "random")
ABLATIONS = {"one prune at the end": {"schedule": "one-shot"}, "no reactivation": {"reactivation": False},
             "masks kept through a shrink": {"masks_on_shrink": "keep"},
             "masks reset after each prune": {"reset_masks_after_prune": True}, "no search": {"search": False}}


CHANCE = 0.1  # ten classes
FRONTIER_TIE = 0.005  # a baseline at most 0.5 pp more accurate (and no more expensive) is a tie
# Networks pruned to the same density differ by a few percent in FLOPs through where the mask falls; a baseline
# within 10% more FLOPs is the same cost, so it can push SuperTickets off the frontier.
FLOPS_MATCH = 0.10


def seed_accuracies(result: dict, stage: str) -> dict[str, float]:
    """Each seed's test accuracy of a supertickets run, as found or after retraining."""
    return {seed: r["found" if stage == "found" else "retrained"]["test_accuracy"]
            for seed, r in result["per_seed"].items() if stage == "found" or "retrained" in r}


def on_frontier(runs: dict, density: float, stage: str, st: dict, others: list[dict]) -> stats.Verdict:
    """SuperTickets not dominated by a baseline of the same cost or less, FLOPS_MATCH included (the rule is printed
    in the report)."""
    comparable = [o for o in others if o["flops"] <= (1 + FLOPS_MATCH) * st["flops"]]
    if not comparable:
        return stats.Verdict(stats.SUPPORTED, f"every baseline costs over {100 * FLOPS_MATCH:g}% more FLOPs")
    mine = seed_accuracies(runs[("supertickets", density)], stage)
    against = {o["method"]: stats.verdict(stats.paired(mine, seed_accuracies(runs[(o["method"], density)], stage)),
                                          -FRONTIER_TIE, tolerance=FRONTIER_TIE, chance=CHANCE, must_train="a",
                                          names=("SuperTickets", o["method"]))
               for o in comparable}
    decided = stats.combine(against.values(), "baselines of the same cost or less")
    return stats.Verdict(decided.label, decided.reason + "; " + "; ".join(f"vs {m}: {v.label}, {v.reason}"
                                                                          for m, v in against.items()))


def pct(mean, std=None) -> str:
    return f"{100 * mean:.2f}" + (f" ± {100 * (std or 0):.2f}" if std is not None else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="supernet_w12_c2_e2")
    parser.add_argument("--train-subset", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rho", default="0.2")
    parser.add_argument("--densities", default="0.5,0.2,0.1")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workers", default="3")
    parser.add_argument("--transfer-epochs", type=int, default=12)
    parser.add_argument("--dataset", default="fashion-mnist", help="digits with --test-subset 0 checks the script quickly")
    parser.add_argument("--test-subset", default="2000")
    parser.add_argument("--runs-dir", default=str(REPO / "runs" / "benchmarks"))
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "supertickets-fashion"))
    args = parser.parse_args()
    out = Path(args.out)
    densities = [float(d) for d in args.densities.split(",")]
    retrain = f"{max(1, args.epochs // 4)}ep"
    seeds = [int(seed) for seed in args.seeds.split(",")]
    recipe = tl.TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-5, batch_size=128,
                            steps=f"{args.epochs}ep")
    source = tl.load_dataset(args.dataset, train_subset=args.train_subset, val_size=500, test_subset=int(args.test_subset))
    common = {"seeds": seeds, "workers": int(args.workers), "runs_dir": args.runs_dir}
    rho = float(args.rho)

    def search(density, **options):
        return tl.find_supertickets(args.model, source, recipe, density=density, rho=rho, retrain=retrain, **common,
                               **options).result

    runs = {}
    for density in densities:
        runs[("supertickets", density)] = search(density)
        for method in BASELINES:
            runs[(f"search+{method}", density)] = search(density, baseline=method)
    middle = 0.2 if 0.2 in densities else densities[len(densities) // 2]
    ablations = {name: search(middle, **options) for name, options in ABLATIONS.items()}

    # Transfer to digits at 28x28, with one budget for all three.
    # Each seed's ticket is moved once (fine-tuning seed = its seed).
    digits = tl.load_dataset("digits", resize=28)
    target = dataclasses.replace(recipe, steps=f"{args.transfer_epochs}ep")
    transfers = {str(seed): tl.transfer(ticket, digits, target, seeds=[seed], runs_dir=args.runs_dir).result
                 for seed, ticket in zip(seeds, runs[("supertickets", middle)]["tickets"])}
    direct = tl.find_supertickets(args.model, digits, target, density=middle, rho=rho, retrain=retrain, **common).result
    dense_digits = {str(seed): tl.train(args.model, digits, target, seed=seed, runs_dir=args.runs_dir)
                    for seed in seeds}

    points = load_points([r["run_dir"] for r in runs.values()] + [r["run_dir"] for r in ablations.values()])
    out.mkdir(parents=True, exist_ok=True)
    plot_frontier([p for p in points if not p["run_dir"] in {r["run_dir"] for r in ablations.values()}],
                  out / "frontier.png", "SuperTickets vs search-then-prune (Fashion-MNIST subset)")
    plot_frontier(points, out / "frontier-with-ablations.png", "with the ablations at density "
                  f"{middle:g} (Fashion-MNIST subset)")

    # ---- verdicts, computed from the numbers ------------------------------------------------
    def point(method, density, stage):
        return next(p for p in points if p["method"] == method and p["target_density"] == density and p["stage"] == stage)

    lines = ["# SuperTickets on Fashion-MNIST (reduced scale)", "",
             f"Command: `.venv/bin/python benchmarks/supertickets_fashion.py --seeds {args.seeds} --train-subset "
             f"{args.train_subset} --epochs {args.epochs} --rho {args.rho} --densities {args.densities}`; run on "
             f"{datetime.date.today().isoformat()} on 2 CPU cores.", "",
             f"Scale: {args.model} ({'two branches, ' if args.model.startswith('supernet') else ''}see `ticketlab models`), "
             f"the first {args.train_subset} training images of {args.dataset} (500 held out for validation), "
             f"{'all' if args.test_subset == '0' else 'the first ' + args.test_subset} test images; SGD 0.05, momentum 0.9, weight decay 5e-5, batch 128, {args.epochs} epochs; ρ = "
             f"{args.rho} warmed up over 2 epochs; shrink every 2 epochs (|γ| ≤ 1e-3); prune events spaced to reach "
             f"the density at 80% of training; retraining {retrain} with the mask fixed. The density counts every conv "
             "and linear weight but the classifier (never pruned). FLOPs are per example, of the shrunk architecture "
             "at the ticket's mask. Means ± std over seeds "
             f"{args.seeds}.", "", "## What the data shows", ""]
    verdicts = {}
    for stage in ("found", "retrained"):
        for density in densities:
            st = point("supertickets", density, stage)
            others = [point(f"search+{m}", density, stage) for m in BASELINES]
            best = max(others, key=lambda p: p["accuracy"])
            on = on_frontier(runs, density, stage, st, others)
            verdicts[f"{stage}, density {density:g}"] = on.label
            lines.append(f"- {stage}, density {density:g}: SuperTickets {pct(st['accuracy'], st['accuracy_std'])}% at "
                         f"{st['flops'] / 1e6:.2f} MFLOPs; best baseline ({best['method']}) "
                         f"{pct(best['accuracy'], best['accuracy_std'])}% at {best['flops'] / 1e6:.2f} MFLOPs. "
                         f"On the baselines’ frontier: **{on.label}** ({on.reason}).")
    goal = stats.combine([stats.Verdict(label, "") for label in verdicts.values()], "(stage, density) comparisons")
    lines += ["", f"**Goal — SuperTickets on the baselines’ frontier at every density: {goal.label}** ({goal.reason}).",
              "", f"Frontier rule: SuperTickets is on the frontier when no baseline of the same cost or less (at most "
              f"{100 * FLOPS_MATCH:g}% more FLOPs per example: networks pruned to one density differ by a few percent "
              f"in FLOPs through where the mask falls) is more accurate. Against each such baseline, paired by seed: "
              f"not supported (dominated) when the 95% interval of SuperTickets − baseline lies below 0; supported when "
              f"it lies above −{100 * FRONTIER_TIE:g} pp (a baseline at most {100 * FRONTIER_TIE:g} pp more accurate "
              f"counts as a tie); inconclusive otherwise. Only baselines over {100 * FLOPS_MATCH:g}% more expensive "
              "cannot push it off the frontier. Verdicts: " + stats.RULE + ".", ""]
    st_examples = runs[("supertickets", middle)]["train_examples"]
    base_examples = runs[(f"search+{BASELINES[0]}", middle)]["train_examples"]
    lines.append(f"Training spent (examples through the network, retraining included): SuperTickets "
                 f"{st_examples:,.0f}; a search-then-prune baseline {base_examples:,.0f} (its search, scoring and "
                 "retraining). Without retraining SuperTickets needs one training; a baseline needs the search "
                 "training and then a retraining to be usable at low density.")

    lines += ["", f"### Ablations at density {middle:g}", "", "| variant | found % | retrained % | MFLOPs |", "|---|---|---|---|"]
    reference = runs[("supertickets", middle)]
    lines.append(f"| SuperTickets | {pct(reference['test_accuracy'], reference['test_accuracy_std'])} | "
                 f"{pct(reference['retrained_test_accuracy'], reference['retrained_test_accuracy_std'])} | "
                 f"{reference['flops'] / 1e6:.2f} |")
    for name, result in ablations.items():
        lines.append(f"| {name} | {pct(result['test_accuracy'], result['test_accuracy_std'])} | "
                     f"{pct(result['retrained_test_accuracy'], result['retrained_test_accuracy_std'])} | "
                     f"{result['flops'] / 1e6:.2f} |")

    t_mean, t_std = mean_std([r["test_accuracy"] for r in transfers.values()])
    dense_mean, dense_std = mean_std([r.test_accuracy for r in dense_digits.values()])
    lines += ["", f"### Transfer to digits (28x28, {args.transfer_epochs} epochs each)", "",
              "| network on digits | test % | MFLOPs |", "|---|---|---|",
              f"| SuperTicket from Fashion-MNIST, new head, masks fixed | {pct(t_mean, t_std)} | "
              f"{next(iter(transfers.values()))['flops'] / 1e6:.2f} |",
              f"| SuperTicket found on digits directly | {pct(direct['test_accuracy'], direct['test_accuracy_std'])} "
              f"(retrained {pct(direct['retrained_test_accuracy'], direct['retrained_test_accuracy_std'])}) | "
              f"{direct['flops'] / 1e6:.2f} |",
              f"| dense supernet trained on digits | {pct(dense_mean, dense_std)} | {direct['supernet_flops'] / 1e6:.2f} |",
              "", "The transferred ticket at or above (not more than 1 pp below) the ticket found on digits directly, "
              "paired by seed: " + (lambda v: f"**{v.label}** ({v.reason}).")(stats.verdict(
                  stats.paired({s: r["test_accuracy"] for s, r in transfers.items()},
                               seed_accuracies(direct, "found")),
                  -0.01, chance=CHANCE, must_train="b", names=("the transferred ticket", "the direct ticket"))),
              "", "## Accuracy against cost", "", frontier_table(points), "", "![frontier](frontier.png)", "",
              "![with ablations](frontier-with-ablations.png)", ""]
    write_text(out / "README.md", "\n".join(lines))
    write_json(out / "results.json", {"points": points, "verdicts": verdicts,
                                      "transfer": {"transferred": list(transfers.values()), "direct": direct,
                                                   "dense": [{"run_dir": str(r.run_dir), "ticket": str(r.ticket.path),
                                                              "summary": r.summary} for r in dense_digits.values()]}})
    print("\n".join(lines[:40]))


if __name__ == "__main__":
    main()
