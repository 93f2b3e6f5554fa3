"""Reproduction: layer tickets win at initialization (docs/methods.md, Layer tickets), at reduced scale on Fashion-MNIST.

For one CIFAR ResNet (resnet20 or resnet32) on Fashion-MNIST padded to 32x32, over seeds: the dense
network; layer tickets removing p = 1..4 residual blocks chosen at θ₀ by GraSP, SNIP and random
scores (every stage keeps at least one block); filter tickets (SNIP filter scores) matched to each
GraSP layer ticket's number of convolution filters. Everything trains with the dense recipe (SGD
0.1, momentum 0.9, weight decay 1e-4, lr ×0.1 at 50% and 75%) on a training subset
for a few epochs — stated in the report. Reported: test accuracy, parameters, FLOPs, training time
per run and a clean training-speed ratio measured in one process (median step time of each network,
interleaved), an energy estimate, and accuracy under corruption and shift. Verdicts are computed
from the numbers: GraSP layer tickets within one std of dense at ≥ 1.2x speedup, ahead of random
block removal and of filter tickets of matched size.

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
from ticketlab.deploy.sparse import median_seconds
from ticketlab.files import write_json, write_text
from ticketlab.lth.aggregate import mean_std
from ticketlab.models import model_from_architecture
from ticketlab.ticket import load_ticket

REPO = Path(__file__).resolve().parents[1]
CRITERIA = ("grasp", "snip", "random")


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


def measure(args, data, recipe, removals: list[int]) -> dict:
    """Every run (cached in --runs-dir), the clean step-time ratios and the robustness tables."""
    common = {"seeds": [int(s) for s in args.seeds.split(",")], "workers": int(args.workers), "runs_dir": args.runs_dir}
    layers = {(c, p): tl.layer_tickets(args.model, data, recipe, criterion=c, remove=p, min_per_stage=1, **common)
              for c in CRITERIA for p in removals}
    filters = {p: tl.filter_tickets(layers[("grasp", p)].tickets[0], criterion="snip", **common) for p in removals}
    dense_ticket = layers[("grasp", removals[0])].result["per_seed"][args.seeds.split(",")[0]]["dense_ticket"]
    ratios = {f"grasp-{p}": step_time_ratio(dense_ticket, layers[("grasp", p)].tickets[0]) for p in removals}
    ratios.update({f"filters-{p}": step_time_ratio(dense_ticket, filters[p].tickets[0]) for p in removals})
    compared = [(f"grasp p={p}", layers[("grasp", p)].tickets[0]) for p in removals] + \
               [(f"filters p={p}", filters[p].tickets[0]) for p in removals]
    robust = {"labels": [name for name, _ in compared],
              **tl.robustness([ticket for _, ticket in compared], runs_dir=args.runs_dir).result}
    return {"layers": {f"{c}-{p}": r.result for (c, p), r in layers.items()},
            "filters": {str(p): r.result for p, r in filters.items()}, "clean_speedups": ratios, "robustness": robust}


def within_one_std(accuracy: float, dense_acc: float, dense_std: float) -> bool:
    return accuracy >= dense_acc - dense_std


def removed_blocks(result: dict, seed: str) -> str:
    """Removed blocks of one seed as stage.block, e.g. `0.0 2.1`."""
    return " ".join(f"{stage}.{block}" for stage, block in result["per_seed"][seed]["removed_blocks"])


def findings(layers: dict, filters: dict, ratios: dict, removals: list[int], dense_acc: float, dense_std: float) -> list[str]:
    """The goal's verdict per p, then what else the numbers show, all computed here."""
    lines = []
    for p in removals:
        g, r, f = layers[f"grasp-{p}"], layers[f"random-{p}"], filters[str(p)]
        within = within_one_std(g["test_accuracy"], dense_acc, dense_std)
        fast = ratios[f"grasp-{p}"] >= 1.2
        ahead_random = g["test_accuracy"] > r["test_accuracy"]
        ahead_filters = g["test_accuracy"] > f["test_accuracy"]
        verdict = "met" if within and fast and ahead_random and ahead_filters else "not met"
        lines.append(f"- **p = {p}: GraSP layer ticket within one std of dense at ≥ 1.2× speedup, ahead of random "
                     f"removal and matched filter tickets: {verdict}.** {100 * g['test_accuracy']:.2f} ± "
                     f"{100 * g['test_accuracy_std']:.2f}% vs dense {100 * dense_acc:.2f} ± {100 * dense_std:.2f}% "
                     f"({'within' if within else 'outside'} one std of dense), clean speedup {ratios[f'grasp-{p}']:.2f}×, "
                     f"random {100 * r['test_accuracy']:.2f}%, filter ticket {100 * f['test_accuracy']:.2f}%.")
    lines.append("")
    for c in CRITERIA:
        kept = [p for p in removals if within_one_std(layers[f"{c}-{p}"]["test_accuracy"], dense_acc, dense_std)]
        lines.append(f"- {c} layer tickets within one std of dense (or above): "
                     f"{', '.join(f'p = {p}' for p in kept) if kept else 'none'} of p = {', '.join(map(str, removals))}.")
    best = {p: max(CRITERIA, key=lambda c: layers[f"{c}-{p}"]["test_accuracy"]) for p in removals}
    lines.append("- Best criterion per p: " + ", ".join(f"p = {p}: {best[p]}" for p in removals) + ".")
    ahead = [p for p in removals if layers[f"grasp-{p}"]["test_accuracy"] > filters[str(p)]["test_accuracy"]]
    lines.append(f"- GraSP layer tickets ahead of the filter ticket with the same number of filters at "
                 f"{len(ahead)} of {len(removals)} removals ({', '.join(f'p = {p}' for p in ahead) or 'none'}); "
                 "the filter tickets' clean speedups are " + ", ".join(f"{ratios[f'filters-{p}']:.2f}×" for p in removals)
                 + " against the layer tickets' " + ", ".join(f"{ratios[f'grasp-{p}']:.2f}×" for p in removals) + ".")
    stds = sorted(r["test_accuracy_std"] for r in [*layers.values(), *filters.values()])
    median_std = stds[len(stds) // 2]
    lines.append(f"- Seed spread: dense ± {100 * dense_std:.2f} pp, tickets' median ± {100 * median_std:.2f} pp; "
                 f"differences between methods smaller than about {100 * median_std:.1f} pp are not resolved by "
                 f"{len(next(iter(layers.values()))['per_seed'])} seeds at this scale.")
    return lines


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
             "scores, matched to the GraSP layer ticket's number of convolution filters. *Speedup (clean)* is the "
             "ratio of median training-step times measured in one process, interleaved; *speedup (runs)* divides "
             "the recorded optimization time of the runs themselves (noisier: parallel processes). Energy = time × "
             "65 W, an estimate. *Within one std* means no lower than dense accuracy minus the dense network's "
             "standard deviation over seeds.", "", "## What the data shows", ""]
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
        lines.append(f"| filters (match p={p}) | — | {100 * r['test_accuracy']:.2f} ± {100 * r['test_accuracy_std']:.2f} | "
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
        results = {"date": datetime.date.today().isoformat(), **measure(args, data, recipe, removals)}
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "results.json", results)
    write_report(results, args, removals, out)
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
