"""Many LeNet-300-100 tickets at once: one vectorized model vs sequential runs vs a process pool, in one run.

K tickets of LeNet-300-100 on Fashion-MNIST (each its own initialization seed and a random mask at
--density; one data order, as a ticket and its controls share) train for --steps iterations three ways:
  sequential   trainer.train K times in this process, --threads torch threads
  vectorized   multitrain.train_together: the K as one model, --threads torch threads
  pool         K solo trainings on a spawned process pool of --workers processes, the threads shared out
               (worker start-up and data loading included: what a pool costs)
Each way writes the usual run directories (metrics, checkpoints, summaries) under a temporary folder. The
figures are trainings x iterations per second and the ratios between the ways; the vectorized members are
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
import tempfile
import time
from pathlib import Path

import torch

from ticketlab import machine
from ticketlab.config import TrainConfig
from ticketlab.data import load_dataset
from ticketlab.mask import Mask
from ticketlab.models import create_model
from ticketlab.multitrain import Member, train_together
from ticketlab.trainer import train

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
    parser.add_argument("--json-out", help="write the figures to this JSON file")
    args = parser.parse_args()
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
    timings, summaries = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # warm-up: one short training each way, so no way pays the first-call costs
        warm = TrainConfig(optimizer="adam", batch_size=60, steps="5it", eval_every="5it", device=args.device,
                           threads=args.threads)
        train_together([member(data, i, args.density, root / "warm") for i in range(2)], data, warm, quiet=True)
        solo(member(data, 0, args.density, root / "warm-solo"), data, warm)

        started = time.perf_counter()
        summaries["sequential"] = [solo(member(data, i, args.density, root / "sequential"), data, cfg)
                                   for i in range(args.tickets)]
        timings["sequential"] = time.perf_counter() - started

        started = time.perf_counter()
        summaries["vectorized"] = train_together([member(data, i, args.density, root / "vectorized")
                                                  for i in range(args.tickets)], data, cfg, quiet=True)
        timings["vectorized"] = time.perf_counter() - started

        workers = max(1, min(args.workers, args.tickets))
        threads = max(1, args.threads // workers)
        started = time.perf_counter()
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [pool.submit(pool_worker, i, args.density, str(root / "pool"), cfg, args.smoke, threads)
                       for i in range(args.tickets)]
            summaries["pool"] = [f.result() for f in futures]
        timings["pool"] = time.perf_counter() - started

    iterations = summaries["sequential"][0]["iterations"]
    throughput = {way: args.tickets * iterations / seconds for way, seconds in timings.items()}
    difference = max(abs(a["test_loss"] - b["test_loss"])
                     for a, b in zip(summaries["sequential"], summaries["vectorized"]))
    for way, seconds in timings.items():
        extra = f" ({workers} workers x {threads} thread(s))" if way == "pool" else ""
        print(f"{way:>10}: {seconds:7.1f} s, {throughput[way]:8.0f} ticket-iterations/s{extra}")
    print(f"vectorized / sequential: {throughput['vectorized'] / throughput['sequential']:.2f}x; "
          f"vectorized / pool: {throughput['vectorized'] / throughput['pool']:.2f}x; "
          f"pool / sequential: {throughput['pool'] / throughput['sequential']:.2f}x")
    print(f"largest final test-loss difference, vectorized vs sequential: {difference:.2e}; "
          f"load average after {machine.load_average()}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "tickets": args.tickets, "steps": args.steps, "iterations": iterations, "density": args.density,
            "device": args.device, "threads": args.threads, "pool_workers": workers, "pool_threads": threads,
            "cores": machine.cores(), "load_before": load_before, "load_after": machine.load_average(),
            "seconds": timings, "ticket_iterations_per_second": throughput,
            "ratios": {"vectorized/sequential": throughput["vectorized"] / throughput["sequential"],
                       "vectorized/pool": throughput["vectorized"] / throughput["pool"],
                       "pool/sequential": throughput["pool"] / throughput["sequential"]},
            "max_test_loss_difference": difference, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
