"""Many LeNet-300-100 tickets at once: one vectorized model vs sequential runs vs a process pool, in one run.

K tickets of LeNet-300-100 on Fashion-MNIST (each its own initialization seed and a random mask at
--density; one data order, as a ticket and its controls share) train for --steps iterations three ways:
  sequential   trainer.train K times in this process, --threads torch threads
  vectorized   multitrain.train_together: the K as one model, --threads torch threads
  pool         K solo trainings on a spawned process pool of --workers processes, the threads shared out
               (worker start-up and data loading included: what a pool costs)
`--bare-step` instead times the bare training step in CPU seconds (forward, backward, Adam, masks; no
data, evaluation or files), one ticket at a time against K stacked as grouped layers and through vmap,
interleaved, medians of 10-step rounds.
Each way writes the usual run directories (metrics, checkpoints, summaries) under a temporary folder. The
figures are trainings x iterations per second, of wall time and of CPU time (this process's, or the pool
workers'; steadier than wall time on a machine others share), and the ratios between the ways; the vectorized
members are
checked against the sequential ones (largest difference of a final test loss). Threads, cores, load
average and device are printed next to them, since on a shared machine they decide the timings.

    .venv/bin/python benchmarks/multi_ticket.py [--tickets 8] [--steps 1000it] [--device cpu] [--smoke]
                                                [--json-out PATH]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ticketlab import machine
from ticketlab.config import TrainConfig
from ticketlab.data import load_dataset
from ticketlab.mask import Mask
from ticketlab.models import create_model
from ticketlab.multitrain import Member, _Run, _Stacked, train_together
from ticketlab.trainer import build_optimizer, train

DATA_SEED = 11


def dataset(smoke: bool):
    return load_dataset("fashion-mnist", train_subset=2000 if smoke else 0, test_subset=1000 if smoke else 0,
                        val_size=500 if smoke else None)


def member(data, index: int, density: float, out_dir: Path) -> Member:
    model = create_model("lenet_300_100", data.input_shape, data.num_classes, seed=index)
    generator = torch.Generator().manual_seed(1000 + index)
    params = dict(model.named_parameters())
    mask = Mask({n: torch.rand(params[n].shape, generator=generator) < density for n in model.prunable_names})
    return Member(model, out_dir / f"ticket-{index}", DATA_SEED, mask, label=f"ticket {index}")


def solo(m: Member, data, cfg: TrainConfig) -> dict:
    return train(m.model, data, cfg, out_dir=m.out_dir, data_seed=m.data_seed, mask=m.mask, quiet=True)


def pool_worker(index: int, density: float, out_dir: str, cfg: TrainConfig, smoke: bool, threads: int) -> dict:
    torch.set_num_threads(threads)
    data = dataset(smoke)
    return solo(member(data, index, density, Path(out_dir)), data, cfg)


def bare_steps(tickets: int, rounds: int) -> dict:
    """CPU milliseconds per ticket-step: one ticket at a time, and K stacked (grouped layers, vmap)."""
    cfg = TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60)
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 1, 28, 28, generator=generator), torch.randint(0, 10, (60,), generator=generator)

    def fresh(index):
        model = create_model("lenet_300_100", (1, 28, 28), 10, seed=index)
        return model, Mask.ones(model)

    model, mask = fresh(0)
    optimizer = build_optimizer(model, cfg)

    def one_ticket():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        mask.apply_(model)
        loss.item()

    def stacked_step(grouped: bool):
        runs = []
        for index in range(tickets):
            m, k = fresh(index)
            runs.append(_Run(Member(m, Path("."), 0, k), build_optimizer(m, cfg), {}))
        stacked = _Stacked(runs, list(range(tickets)), cfg)
        if not grouped:
            stacked.mlp_layers = None  # the generic path: vmap over functional_call

        def step():
            logits = stacked.logits(x, per_member_input=False)
            losses = torch.vmap(lambda member_logits: F.cross_entropy(member_logits, y))(logits)
            stacked.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            stacked.optimizer.step()
            stacked.apply_masks()
            losses.tolist()
        return step

    ways = {"one ticket": (one_ticket, 1), f"grouped layers, K={tickets}": (stacked_step(True), tickets),
            f"vmap, K={tickets}": (stacked_step(False), tickets)}
    times = {name: [] for name in ways}
    for _ in range(rounds):
        for name, (step, _) in ways.items():
            started = time.process_time()
            for _ in range(10):
                step()
            times[name].append((time.process_time() - started) / 10)
    per_ticket = {name: 1000 * statistics.median(times[name]) / ways[name][1] for name in ways}
    return {name: {"ms_per_ticket_step": ms, "vs_one_ticket": per_ticket["one ticket"] / ms}
            for name, ms in per_ticket.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=8, help="K, the trainings compared")
    parser.add_argument("--steps", default="1000it", help="training length of each ticket")
    parser.add_argument("--eval-every", default=None, help="evaluation interval (default: start and end only)")
    parser.add_argument("--density", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=machine.cores(), help="torch threads in this process")
    parser.add_argument("--workers", type=int, default=machine.cores(), help="processes of the pool")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (the pool runs on it too)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: 2 tickets, 20 iterations, 2,000 images")
    parser.add_argument("--bare-step", action="store_true", help="time the bare training step only (CPU seconds)")
    parser.add_argument("--json-out", help="write the figures to this JSON file")
    args = parser.parse_args()
    if args.bare_step:
        torch.set_num_threads(args.threads)
        print(f"bare LeNet-300-100 step, batch 60, Adam; {torch.get_num_threads()} torch thread(s), "
              f"{machine.cores()} core(s), load average {machine.load_average()}")
        figures = bare_steps(args.tickets, 3 if args.smoke else 20)
        for name, row in figures.items():
            print(f"{name:>22}: {row['ms_per_ticket_step']:.2f} CPU ms per ticket-step, "
                  f"{row['vs_one_ticket']:.2f}x one ticket at a time")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps({"bare_step": figures, "threads": args.threads,
                                                       "load_average": machine.load_average()}, indent=2) + "\n")
        return
    if args.smoke:
        args.tickets, args.steps = 2, "20it"
    torch.set_num_threads(args.threads)
    data = dataset(args.smoke)
    cfg = TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, steps=args.steps,
                      eval_every=args.eval_every or args.steps, device=args.device, threads=args.threads)
    print(f"{args.tickets} LeNet-300-100 tickets at density {args.density}, {args.steps} each, batch 60, Adam; "
          f"device {args.device}; {torch.get_num_threads()} torch thread(s) in this process, "
          f"{machine.cores()} core(s), load average {machine.load_average()}", flush=True)
    load_before = machine.load_average()
    timings, cpu, summaries = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # warm-up: one short training each way, so no way pays the first-call costs
        warm = TrainConfig(optimizer="adam", batch_size=60, steps="5it", eval_every="5it", device=args.device,
                           threads=args.threads)
        train_together([member(data, i, args.density, root / "warm") for i in range(2)], data, warm, quiet=True)
        solo(member(data, 0, args.density, root / "warm-solo"), data, warm)

        started, started_cpu = time.perf_counter(), time.process_time()
        summaries["sequential"] = [solo(member(data, i, args.density, root / "sequential"), data, cfg)
                                   for i in range(args.tickets)]
        timings["sequential"], cpu["sequential"] = time.perf_counter() - started, time.process_time() - started_cpu

        started, started_cpu = time.perf_counter(), time.process_time()
        summaries["vectorized"] = train_together([member(data, i, args.density, root / "vectorized")
                                                  for i in range(args.tickets)], data, cfg, quiet=True)
        timings["vectorized"], cpu["vectorized"] = time.perf_counter() - started, time.process_time() - started_cpu

        workers = max(1, min(args.workers, args.tickets))
        threads = max(1, args.threads // workers)
        started, children = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [pool.submit(pool_worker, i, args.density, str(root / "pool"), cfg, args.smoke, threads)
                       for i in range(args.tickets)]
            summaries["pool"] = [f.result() for f in futures]
        timings["pool"] = time.perf_counter() - started
        ended = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, reaped when the pool shut down
        cpu["pool"] = (ended.ru_utime + ended.ru_stime) - (children.ru_utime + children.ru_stime)

    iterations = summaries["sequential"][0]["iterations"]
    throughput = {way: args.tickets * iterations / seconds for way, seconds in timings.items()}
    cpu_throughput = {way: args.tickets * iterations / seconds for way, seconds in cpu.items()}
    difference = max(abs(a["test_loss"] - b["test_loss"])
                     for a, b in zip(summaries["sequential"], summaries["vectorized"]))
    for way, seconds in timings.items():
        extra = f" ({workers} workers x {threads} thread(s))" if way == "pool" else ""
        print(f"{way:>10}: {seconds:7.1f} s wall, {throughput[way]:6.0f} ticket-iterations/s; {cpu[way]:7.1f} s CPU, "
              f"{cpu_throughput[way]:6.0f} ticket-iterations per CPU second{extra}")
    print(f"vectorized / sequential: {throughput['vectorized'] / throughput['sequential']:.2f}x; "
          f"vectorized / pool: {throughput['vectorized'] / throughput['pool']:.2f}x; "
          f"pool / sequential: {throughput['pool'] / throughput['sequential']:.2f}x (wall time)")
    print(f"per CPU second: vectorized / sequential {cpu_throughput['vectorized'] / cpu_throughput['sequential']:.2f}x, "
          f"vectorized / pool {cpu_throughput['vectorized'] / cpu_throughput['pool']:.2f}x")
    print(f"largest final test-loss difference, vectorized vs sequential: {difference:.2e}; "
          f"load average after {machine.load_average()}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "tickets": args.tickets, "steps": args.steps, "iterations": iterations, "density": args.density,
            "device": args.device, "threads": args.threads, "pool_workers": workers, "pool_threads": threads,
            "cores": machine.cores(), "load_before": load_before, "load_after": machine.load_average(),
            "seconds": timings, "cpu_seconds": cpu, "ticket_iterations_per_second": throughput,
            "ticket_iterations_per_cpu_second": cpu_throughput,
            "ratios": {"vectorized/sequential": throughput["vectorized"] / throughput["sequential"],
                       "vectorized/pool": throughput["vectorized"] / throughput["pool"],
                       "pool/sequential": throughput["pool"] / throughput["sequential"]},
            "max_test_loss_difference": difference, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
