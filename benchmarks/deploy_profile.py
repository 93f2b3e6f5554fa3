"""Benchmark: does a ticket make the model smaller and faster? Sizes, FLOPs, latency, and the CSR crossover.

Tickets: LeNet-300-100 on Fashion-MNIST by global IMP (reset to θ₀) along the density schedule
0.21, 0.036, 0.012, and a Conv-2 ticket at 5% (magnitude pruning at θ₀, trained on a subset); each
is trained, so the accuracies next to the timings are real. For each ticket: the size of every
export format against the dense original's file, FLOPs per example, and latency / throughput of
the dense original, the masked ticket (dense kernels), the shrunk network and the sparse path at
batch sizes 1, 64 and 256 (`ticketlab profile`), plus test accuracy through each path (`ticketlab
infer`). Then the crossover: for LeNet's two hidden layer shapes, the density below which a CSR
matmul beats the dense one, at each batch size. Targets: the 1.2% ticket's compact file ≤ 5% of
the dense file, and its inference ≥ 3x faster than the dense original at batch 64.

Run it alone: timings on 2 cores are only meaningful when nothing else runs.

    .venv/bin/python benchmarks/deploy_profile.py
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import torch
from torch import nn

import ticketlab as tl
from ticketlab.deploy.sparse import choose_path
from ticketlab.files import write_json, write_text

REPO = Path(__file__).resolve().parents[1]
LENET = tl.TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, steps="2000it", eval_every="500it")
CONV2 = tl.TrainConfig(optimizer="adam", lr=2e-4, batch_size=60, steps="200it", eval_every="50it")


def make_tickets(runs_dir: str) -> dict[str, str]:
    imp = tl.imp("lenet_300_100", tl.load_dataset("fashion-mnist"), LENET, schedule="0.21,0.036,0.012", runs_dir=runs_dir)
    tickets = {f"LeNet-300-100 @ {100 * level.density:.1f}%": level.ticket_paths[0] for level in imp.levels[1:]}
    subset = tl.load_dataset("fashion-mnist", train_subset=6000, val_size=1000)
    pruned = tl.prune("conv2", subset, method="magnitude", density=0.05, recipe=CONV2, runs_dir=runs_dir)
    tickets["Conv-2 @ 5.0%"] = str(tl.train(pruned, subset, runs_dir=runs_dir).ticket.path)
    return tickets


@torch.no_grad()
def crossover(shapes, densities, batch_sizes, repeats: int = 30) -> list[dict]:
    """Dense vs CSR time of one layer with a random mask at each density: where CSR starts to win."""
    rows = []
    generator = torch.Generator().manual_seed(0)
    for in_features, out_features in shapes:
        for batch in batch_sizes:
            for density in densities:
                layer = nn.Linear(in_features, out_features)
                layer.weight.mul_(torch.rand(layer.weight.shape, generator=generator) < density)
                rows.append({"shape": f"{in_features}->{out_features}", "batch": batch, "density": density,
                             **choose_path(layer, batch, repeats)})
    return rows


def crossover_density(rows, shape, batch):
    wins = [r["density"] for r in rows if r["shape"] == shape and r["batch"] == batch and r["path"] == "csr"]
    return max(wins) if wins else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default=str(REPO / "runs" / "benchmarks"))
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "deploy-lenet-conv2"))
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    out = Path(args.out)

    tickets = make_tickets(args.runs_dir)
    profiles, accuracy = {}, {}
    for label, path in tickets.items():
        profiles[label] = tl.profile(path, repeats=args.repeats).result
        accuracy[label] = {mode: tl.infer(path, path=mode, batch_size=64).test_accuracy for mode in ("dense", "csr", "auto")}
        print(f"{label}: profiled", flush=True)
    rows = crossover([(784, 300), (300, 100)], [0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005], (1, 64, 256), args.repeats)

    lines = ["# From ticket to deployable model: size and speed on 2 CPU cores", "",
             f"Command: `.venv/bin/python benchmarks/deploy_profile.py --repeats {args.repeats}`; run on "
             f"{datetime.date.today().isoformat()} with {torch.get_num_threads()} torch threads, nothing else running. "
             "Tickets: LeNet-300-100 on Fashion-MNIST by global IMP (reset to θ₀, 2000 iterations per level, Adam 1.2e-3, "
             "batch 60) along 21% → 3.6% → 1.2%, and Conv-2 pruned by magnitude at θ₀ to 5% and trained 200 iterations "
             "on 6,000 images. Latency: median of the repeated calls after warm-up, same random batch for every "
             "variant; *sparse* = the shrunk network with each Linear on CSR where that was measured faster.", "",
             "## What the data shows", ""]
    target = next(label for label in profiles if label.startswith("LeNet") and label.endswith("1.2%"))
    sizes = profiles[target]["file_sizes"]
    ratio = sizes["compact"] / sizes["dense original (safetensors)"]
    t = profiles[target]["timings"]
    speedup = t["dense"]["64"]["latency_ms"] / t["sparse"]["64"]["latency_ms"]
    lines.append(f"- **Compact file of the 1.2% LeNet ticket ≤ 5% of the dense file: {'met' if ratio <= 0.05 else 'not met'}.** "
                 f"{sizes['compact']:,} bytes vs {sizes['dense original (safetensors)']:,} ({100 * ratio:.2f}%); "
                 f"in float16 {sizes['compact fp16']:,} bytes ({100 * sizes['compact fp16'] / sizes['dense original (safetensors)']:.2f}%).")
    lines.append(f"- **Inference of the 1.2% LeNet ticket ≥ 3× faster than the dense original at batch 64: "
                 f"{'met' if speedup >= 3 else 'not met'}.** {speedup:.1f}× ({t['dense']['64']['latency_ms']:.3f} ms → "
                 f"{t['sparse']['64']['latency_ms']:.3f} ms; shrunk with dense kernels: "
                 f"{t['dense']['64']['latency_ms'] / t['shrunk']['64']['latency_ms']:.1f}×; masked with dense kernels: "
                 f"{t['dense']['64']['latency_ms'] / t['masked']['64']['latency_ms']:.2f}×, i.e. masking alone saves nothing).")
    for shape in ("784->300", "300->100"):
        found = {b: crossover_density(rows, shape, b) for b in (1, 64, 256)}
        lines.append(f"- **CSR crossover, Linear {shape}:** CSR is faster at densities up to "
                     + ", ".join(f"{100 * d:g}% at batch {b}" if d else f"no tested density at batch {b}" for b, d in found.items())
                     + " (highest tested density where CSR won).")
    lines += ["", "## Per ticket", ""]
    for label, p in profiles.items():
        lines += [f"### {label}", "", "Test accuracy through the dense / CSR / auto paths: "
                  + " / ".join(f"{100 * a:.2f}%" for a in accuracy[label].values()) + ".", "",
                  "| variant | parameters | non-zeros | FLOPs/example | " + " | ".join(
                      f"batch {b}: ms, ex/s" for b in p["timings"]["dense"]) + " |",
                  "|---|---|---|---|" + "---|" * len(p["timings"]["dense"])]
        for name, timing in p["timings"].items():
            c = p["counts"][name]
            lines.append(f"| {name} | {c['parameters']:,} | {c['nonzero_parameters']:,} | {c['flops']:,} | " + " | ".join(
                f"{v['latency_ms']:.3f}, {v['throughput_per_s']:,.0f}" for v in timing.values()) + " |")
        dense_bytes = p["file_sizes"]["dense original (safetensors)"]
        lines += ["", "| file | bytes | vs dense original |", "|---|---|---|"]
        lines += [f"| {k} | {v:,} | {100 * v / dense_bytes:.2f}% |" if isinstance(v, int) else f"| {k} | {v} | — |"
                  for k, v in p["file_sizes"].items()]
        lines += ["", "Sparse paths chosen: " + "; ".join(
            f"batch {b}: " + ", ".join(f"{n} {d['path']}" for n, d in layers.items()) for b, layers in p["sparse_paths"].items()), ""]
    lines += ["## CSR vs dense, one Linear layer with a random mask (µs, median; CSR = the faster of all threads and one thread)", "",
              "| layer | batch | density | dense | CSR | faster |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['shape']} | {r['batch']} | {100 * r['density']:g}% | {r['dense_us']:.1f} | {r['csr_us']:.1f} | {r['path']} |"
              for r in rows]
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "report.md", "\n".join(lines) + "\n")
    write_json(out / "results.json", {"profiles": profiles, "accuracy": accuracy, "crossover": rows})
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
