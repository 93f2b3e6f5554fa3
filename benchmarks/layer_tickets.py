"""Reproduction: layer tickets win at initialization (docs/methods.md, Layer tickets), at reduced scale on Fashion-MNIST.

For one CIFAR ResNet (resnet20 or resnet32) on Fashion-MNIST padded to 32x32, over seeds: the dense
network; layer tickets removing p = 1..4 residual blocks chosen at θ₀ by GraSP, SNIP and random
scores (every stage keeps at least one block); filter tickets (SNIP filter scores) matched seed by seed
to each GraSP layer ticket, by FLOPs and separately by parameters. Everything trains with the dense recipe (SGD
0.1, momentum 0.9, weight decay 1e-4, lr ×0.1 at 50% and 75%) on a training subset
for a few epochs — stated in the report. Reported: test accuracy, parameters, FLOPs, training time
per run and a clean training-speed ratio measured in one process (median step time of each network,
interleaved), an energy estimate, and accuracy under corruption and shift. Verdicts are computed
from the numbers, paired by seed (ticketlab.stats: supported, not supported or inconclusive): GraSP
layer tickets not more than 1 pp below dense at ≥ 1.2x speedup, ahead of random block removal and of
the cost-matched filter tickets.

    .venv/bin/python benchmarks/layer_tickets.py --model resnet20 [--train-subset 5000 --epochs 4 --seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch
import torch.nn.functional as F

import ticketlab as tl
from ticketlab import stats
from ticketlab.deploy.sparse import median_seconds
from ticketlab.files import write_json, write_text
from ticketlab.lth.aggregate import mean_std
from ticketlab.models import model_from_architecture
from ticketlab.ticket import load_ticket

REPO = Path(__file__).resolve().parents[1]
CRITERIA = ("grasp", "snip", "random")
MATCHES = ("flops", "params")
SEED_SPREAD = 0.01  # the dense network's std over seeds at which a run counts as long enough
CHANCE = 0.1  # ten classes
MATCH_TOLERANCE = 0.01  # "as accurate as dense": not more than 1 pp below it


def step_time_ratio(dense_ticket: str, other_ticket: str, batch: int = 128, repeats: int = 20) -> float:
    """Dense step time / ticket step time, both measured here, interleaved, on the same random batch."""
    models = {}
    for name, path in (("dense", dense_ticket), ("ticket", other_ticket)):
        ticket = load_ticket(path)
        model = model_from_architecture(ticket.architecture)
        model.load_state_dict(ticket.init_state)
        models[name] = (model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    shape = tuple(load_ticket(dense_ticket).architecture["input_shape"])
    x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))

    def step(name):
        model, optimizer = models[name]
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    times = {"dense": [], "ticket": []}
    for _ in range(3):  # interleave blocks so drifts in machine speed hit both alike
        for name in times:
            times[name].append(median_seconds(lambda name=name: step(name), repeats=repeats // 3 + 1, warmup=2))
    return sorted(times["dense"])[1] / sorted(times["ticket"])[1]


def measure(args, data, recipe, removals: list[int], previous: dict) -> dict:
    """Every run (cached in --runs-dir), the clean step-time ratios and the robustness tables. Both measure the
    first seed's tickets only, so they are taken from `previous` (the last results.json) when it measured the
    same ticket files: adding seeds then costs only the new seeds' trainings."""
    common = {"seeds": [int(s) for s in args.seeds.split(",")], "workers": int(args.workers), "runs_dir": args.runs_dir}
    layers = {(c, p): tl.layer_tickets(args.model, data, recipe, criterion=c, remove=p, min_per_stage=1, **common)
              for c in CRITERIA for p in removals}
    # Filter tickets matched seed by seed to the GraSP layer tickets, once by FLOPs and once by parameters.
    filters = {f"{match}-{p}": tl.filter_tickets(layers[("grasp", p)].tickets[0], criterion="snip", match=match, **common)
               for match in MATCHES for p in removals}
    dense_ticket = layers[("grasp", removals[0])].result["per_seed"][args.seeds.split(",")[0]]["dense_ticket"]
    measured = {f"grasp-{p}": layers[("grasp", p)].tickets[0] for p in removals}
    measured.update({f"filters-{key}": r.tickets[0] for key, r in filters.items()})
    compared = [(f"grasp p={p}", layers[("grasp", p)].tickets[0]) for p in removals] + \
               [(f"filters {key.replace('-', ' p=')}", r.tickets[0]) for key, r in filters.items()]
    robust = previous.get("robustness", {})
    same = robust.get("dense") == str(dense_ticket) and robust.get("tickets") == [str(t) for _, t in compared]
    if not same:
        robust = {"labels": [name for name, _ in compared],
                  **tl.robustness([ticket for _, ticket in compared], runs_dir=args.runs_dir).result}
    ratios = previous.get("clean_speedups", {}) if same else {}
    ratios = {key: ratios[key] if key in ratios else step_time_ratio(dense_ticket, ticket) for key, ticket in measured.items()}
    return {"layers": {f"{c}-{p}": r.result for (c, p), r in layers.items()},
            "filters": {key: r.result for key, r in filters.items()}, "clean_speedups": ratios, "robustness": robust}


def seed_values(result: dict, key: str = "test_accuracy") -> dict[str, float]:
    return {seed: r[key] for seed, r in result["per_seed"].items()}


def filter_runs(filters: dict, p: int) -> dict[str, dict]:
    """The filter tickets of removal p by what they were matched on: flops and params, or, in results written
    before per-seed matching, one filter count (seed 0's layer ticket's) for every seed."""
    found = {match: filters[f"{match}-{p}"] for match in MATCHES if f"{match}-{p}" in filters}
    return found or ({"filter count": filters[str(p)]} if str(p) in filters else {})


def cost_ratio(layer: dict, filt: dict, key: str) -> float:
    """The layer ticket's cost over the filter ticket's, the largest over seeds."""
    return max(layer["per_seed"][s]["ticket_costs"][key] / filt["per_seed"][s]["ticket_costs"][key]
               for s in filt["per_seed"] if s in layer["per_seed"])


def ahead_of_filters(layer: dict, match: str, filt: dict) -> stats.Verdict:
    """The layer ticket ahead of a filter ticket, paired by seed; a filter ticket that is not matched per seed on
    a cost (the old filter-count matching) is no fair baseline: inconclusive, with the cost gap stated."""
    if match not in MATCHES:
        gap = cost_ratio(layer, filt, "parameters")
        return stats.Verdict(stats.INCONCLUSIVE, f"the filter ticket is matched by filter count to seed 0's layer ticket "
                                                 f"only, and the layer ticket has up to {gap:.1f}× its parameters: not "
                                                 "cost-matched")
    return stats.verdict(stats.paired(seed_values(layer), seed_values(filt)), chance=CHANCE, must_train="a",
                         names=("the layer ticket", f"the filter ticket ({match})"))


def findings(layers: dict, filters: dict, ratios: dict, removals: list[int], dense_acc: float, dense_std: float) -> list[str]:
    """The goal's verdict per p, then what else the numbers show, all computed here and paired by seed."""
    # Differences of a pp or two mean something only when the dense network itself is stable over seeds.
    agree = stats.SUPPORTED if dense_std <= SEED_SPREAD else stats.NOT_SUPPORTED
    lines = [f"- **The run is long enough that seeds agree (dense std over seeds ≤ {100 * SEED_SPREAD:g} pp): {agree}** "
             f"(dense {100 * dense_acc:.2f} ± {100 * dense_std:.2f}%).", ""]
    for p in removals:
        g, r = layers[f"grasp-{p}"], layers[f"random-{p}"]
        near_dense = stats.verdict(stats.paired(seed_values(g), seed_values(g, "dense_test_accuracy")), -MATCH_TOLERANCE,
                                   chance=CHANCE, must_train="b", names=("the layer ticket", "the dense network"))
        fast = ratios[f"grasp-{p}"] >= 1.2
        speed = stats.Verdict(stats.SUPPORTED if fast else stats.NOT_SUPPORTED,
                              f"clean speedup {ratios[f'grasp-{p}']:.2f}× (≥ 1.2× wanted)")
        ahead_random = stats.verdict(stats.paired(seed_values(g), seed_values(r)), chance=CHANCE, must_train="a",
                                     names=("the GraSP layer ticket", "random removal"))
        ahead_filters = {match: ahead_of_filters(g, match, f) for match, f in filter_runs(filters, p).items()}
        verdict = stats.combine([near_dense, speed, ahead_random, *ahead_filters.values()], "parts")
        lines.append(f"- **p = {p}: GraSP layer ticket not more than 1 pp below dense, ≥ 1.2× faster, ahead of random "
                     f"removal and of cost-matched filter tickets: {verdict.label}** ({verdict.reason}). "
                     f"{100 * g['test_accuracy']:.2f} ± {100 * g['test_accuracy_std']:.2f}% vs dense "
                     f"{100 * dense_acc:.2f} ± {100 * dense_std:.2f}%: {near_dense.label} ({near_dense.reason}); "
                     f"{speed.reason}; ahead of random ({100 * r['test_accuracy']:.2f}%): {ahead_random.label} "
                     f"({ahead_random.reason}); "
                     + "; ".join(f"ahead of the filter ticket matched by {m} ({100 * filter_runs(filters, p)[m]['test_accuracy']:.2f}%): "
                                 f"{v.label} ({v.reason})" for m, v in ahead_filters.items()) + ".")
    lines.append("")
    for c in CRITERIA:
        near = {p: stats.verdict(stats.paired(seed_values(layers[f"{c}-{p}"]),
                                              seed_values(layers[f"{c}-{p}"], "dense_test_accuracy")),
                                 -MATCH_TOLERANCE, chance=CHANCE, must_train="b") for p in removals}
        lines.append(f"- {c} layer tickets not more than 1 pp below dense: "
                     + ", ".join(f"p = {p}: {v.label}" for p, v in near.items()) + ".")
    best = {p: max(CRITERIA, key=lambda c: layers[f"{c}-{p}"]["test_accuracy"]) for p in removals}
    lines.append("- Highest mean accuracy per p (not a verdict): " + ", ".join(f"p = {p}: {best[p]}" for p in removals) + ".")
    for p in removals:
        for match, f in filter_runs(filters, p).items():
            key = f"filters-{match}-{p}" if match in MATCHES else f"filters-{p}"
            lines.append(f"- p = {p}, filter ticket matched by {match}: the layer ticket has "
                         f"{cost_ratio(layers[f'grasp-{p}'], f, 'parameters'):.2f}× its parameters and "
                         f"{cost_ratio(layers[f'grasp-{p}'], f, 'flops'):.2f}× its FLOPs (largest over seeds); clean "
                         f"speedups {ratios[key]:.2f}× (filter) and {ratios[f'grasp-{p}']:.2f}× (layer).")
    lines += ["", f"Rule for every verdict: {stats.RULE}; “not more than 1 pp below dense” has margin −1 pp against "
              "the dense network of the same seed; the seed spread is in the table below."]
    return lines


def removed_blocks(result: dict, seed: str) -> str:
    """Removed blocks of one seed as stage.block, e.g. `0.0 2.1`."""
    return " ".join(f"{stage}.{block}" for stage, block in result["per_seed"][seed]["removed_blocks"])


def per_seed(result: dict, key: str = "test_accuracy") -> str:
    return " / ".join(f"{100 * result['per_seed'][seed][key]:.1f}" for seed in sorted(result["per_seed"], key=int))


def write_report(results: dict, args, removals: list[int], out: Path) -> None:
    layers, filters, ratios, robust = (results[k] for k in ("layers", "filters", "clean_speedups", "robustness"))
    first = next(iter(layers.values()))
    seed = args.seeds.split(",")[0]
    dense_acc, dense_std = first["dense_test_accuracy"], first["dense_test_accuracy_std"]
    data_label = f"{args.dataset}" + (f" (padded by {args.pad} pixels per side)" if args.pad != "0" else "")
    lines = [f"# Layer tickets: {args.model} on {data_label}, reduced scale", "",
             f"Command: `.venv/bin/python benchmarks/layer_tickets.py --model {args.model} --train-subset "
             f"{args.train_subset} --val-size {args.val_size} --epochs {args.epochs} --removals {args.removals} --seeds "
             f"{args.seeds} --dataset {args.dataset} --pad {args.pad}`; run on {results['date']} on 2 CPU cores. "
             f"Recipe: SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, {args.epochs} epochs on {args.train_subset} "
             f"training images (lr ×0.1 at 50% and 75%), {args.val_size} validation images and "
             f"{'all' if args.test_subset == '0' else 'the first ' + args.test_subset} test images; "
             "every stage keeps ≥ 1 block. Test accuracy is the final network's. Filter tickets: SNIP filter "
             + ("scores, matched seed by seed to the same seed's GraSP layer ticket, once by FLOPs per example and once "
                "by parameters (at most the layer ticket's)" if any(k.split("-")[0] in MATCHES for k in filters) else
                "scores, matched to seed 0's GraSP layer ticket's number of convolution filters for every seed (the "
                "runs predate cost matching; the verdicts below treat them as no fair baseline)")
             + ". *Speedup (clean)* is the "
             "ratio of median training-step times measured in one process, interleaved; *speedup (runs)* divides "
             "the recorded optimization time of the runs themselves (noisier: parallel processes). Energy = time × "
             "65 W, an estimate.", "", "## What the data shows", ""]
    lines += findings(layers, filters, ratios, removals, dense_acc, dense_std)
    lines += ["", "## Accuracy and cost (mean ± std over seeds)", "",
              f"| ticket | removed blocks (seed {seed}) | test acc % | per seed % | params | FLOPs saved | speedup (clean) | "
              "speedup (runs) | energy Wh (est.) |",
              "|---|---|---|---|---|---|---|---|---|",
              f"| dense | — | {100 * dense_acc:.2f} ± {100 * dense_std:.2f} | {per_seed(first, 'dense_test_accuracy')} | "
              f"{first['dense_parameters']:,.0f} | — | 1.00 | 1.00 | {first['dense_energy_wh_estimate']:.3f} |"]
    for key, r in layers.items():
        c, p = key.split("-")
        clean = f"{ratios[key]:.2f}" if key in ratios else "—"
        lines.append(f"| layers {c} p={p} | {removed_blocks(r, seed)} | {100 * r['test_accuracy']:.2f} ± "
                     f"{100 * r['test_accuracy_std']:.2f} | {per_seed(r)} | {r['ticket_parameters']:,.0f} | "
                     f"{100 * r['flops_saved']:.1f}% | "
                     f"{clean} | {r['training_speedup']:.2f} | {r['ticket_energy_wh_estimate']:.3f} |")
    for p, r in filters.items():
        lines.append(f"| filters ({p.replace('-', ' p=') if '-' in p else 'filter count p=' + p}) | — | {100 * r['test_accuracy']:.2f} ± {100 * r['test_accuracy_std']:.2f} | "
                     f"{per_seed(r)} | "
                     f"{r['ticket_parameters']:,.0f} | {100 * r['flops_saved']:.1f}% | {ratios[f'filters-{p}']:.2f} | "
                     f"{r['training_speedup']:.2f} | {r['ticket_energy_wh_estimate']:.3f} |")
    lines += ["", f"Blocks are named stage.block (stage 0 has 16 channels, stage 2 has 64); the first block of "
              "stages 1 and 2 changes shape and is never removed.", "",
              f"## Robustness (seed {seed}): accuracy % under corruption, ticket − dense in pp", "",
              "| corruption | severity | dense | " + " | ".join(robust["labels"]) + " |",
              "|---|---|---|" + "---|" * len(robust["labels"])]
    rows = robust["rows"]
    for row in rows:
        cells = [f"{100 * acc:.1f} ({100 * (acc - row['dense']):+.1f})" for acc in row["tickets"]]
        lines.append(f"| {row['corruption']} | {row['severity']} | {100 * row['dense']:.1f} | " + " | ".join(cells) + " |")
    groups = {"GraSP layer tickets": "grasp", "filter tickets": "filters"}
    mean_delta = {group: mean_std([row["tickets"][i] - row["dense"] for row in rows[1:]
                                   for i, label in enumerate(robust["labels"]) if label.startswith(prefix)])[0]
                  for group, prefix in groups.items()}
    dense_rows = {(row["corruption"], row["severity"]): row["dense"] for row in rows}
    chance = [f"{name} {severity}" for (name, severity), acc in dense_rows.items() if acc < 0.15]
    lines += ["", "Mean difference to dense over all corrupted and shifted sets: "
              + ", ".join(f"{group} {100 * delta:+.2f} pp" for group, delta in mean_delta.items()) + ".",
              f"Dense accuracy on the clean set: {100 * dense_rows[('clean', 0)]:.1f}%; sets where the dense network "
              f"is below 15% (near chance, so they do not tell the networks apart): {', '.join(chance) or 'none'}."]
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "report.md", "\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20", choices=("resnet20", "resnet32", "resnet56"))
    parser.add_argument("--train-subset", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--removals", default="1,2,3,4")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workers", default="3")
    parser.add_argument("--runs-dir", default=str(REPO / "runs" / "benchmarks"))
    parser.add_argument("--out", default=None)
    parser.add_argument("--dataset", default="fashion-mnist", help="synthetic-images with --pad 0 checks the script quickly")
    parser.add_argument("--pad", default="2")
    parser.add_argument("--val-size", default="1000")
    parser.add_argument("--test-subset", default="2000")
    parser.add_argument("--report-only", action="store_true", help="rewrite report.md from the results.json in --out")
    args = parser.parse_args()
    out = Path(args.out or REPO / "docs" / "results" / f"layer-tickets-{args.model}-fashion")
    removals = [int(p) for p in args.removals.split(",")]
    if args.report_only:
        results = json.loads((out / "results.json").read_text())
    else:
        epochs = args.epochs
        data = tl.load_dataset(args.dataset, pad=int(args.pad), train_subset=args.train_subset,
                               val_size=int(args.val_size), test_subset=int(args.test_subset))
        recipe = tl.TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=128,
                                steps=f"{epochs}ep", milestones=f"{max(1, epochs // 2)}ep,{max(1, 3 * epochs // 4)}ep",
                                eval_every="1ep")
        previous = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
        results = {"date": datetime.date.today().isoformat(), **measure(args, data, recipe, removals, previous)}
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "results.json", results)
    write_report(results, args, removals, out)
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
