"""The GPU figures, measured in one run and written to one JSON file.

  resnet20_epoch   a ResNet-20 training epoch on 50,000 CIFAR-shaped 8-bit images (random pixels and
                   labels: the arithmetic of CIFAR-10 without the download), batch 128, SGD with momentum,
                   flip-crop augmentation, at fp32, at bf16 (channels-last) and bf16 compiled. Each is
                   timed over a whole epoch of the trainer's own loop (batch gather, augmentation, step,
                   the counters read back at the epoch's end), after a first epoch that warms up (and
                   compiles); the bar is <= 4 s at bf16 on an H100. `train_call` times trainer.train for one
                   epoch at bf16, with its evaluations of 5,000 + 10,000 images and checkpoint included.
  lenet_imp_level  one IMP level of LeNet-300-100 on Fashion-MNIST: trainer.train of a 20%-density ticket
                   (Adam 1.2e-3, batch 60), evaluations and checkpoints included.
  multi_ticket     benchmarks/multi_ticket.py on this device, when that script is present.
  scoring          SNIP (one batch of 128), SynFlow (100 rounds, float64) and 100 CTS steps on ResNet-20.

    .venv/bin/python benchmarks/gpu_figures.py [--device cuda] [--out PATH] [--smoke]

--smoke runs every part at tiny sizes (ResNet-8, a few batches; on the CPU too) to check the script itself; its figures mean
nothing. Without --out the JSON goes to $OUT/gpu-figures.json when $OUT is set, else ./gpu-figures.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ticketlab.config import TrainConfig
from ticketlab.cts.search import search_mask
from ticketlab.data import Dataset, load_dataset
from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask
from ticketlab.models import create_model
from ticketlab.pai.find import find_mask
from ticketlab.trainer import (DeviceCounters, Schedule, TrainingBatches, TrainStep, build_optimizer,
                               device_settings, set_learning_rate, train)

RESNET_BAR_SECONDS = 4.0  # a bf16 ResNet-20 epoch on 50,000 images, on one H100
REPO = Path(__file__).resolve().parents[1]


def synchronize(device: torch.device) -> None:
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


def random_images(train: int, test: int, shape: tuple[int, ...], seed: int = 0, val_size: int = 5000) -> Dataset:
    """A dataset of random 8-bit images and labels, `train` of them left for training after validation."""
    generator = torch.Generator().manual_seed(seed)
    pixels = lambda n: torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=generator)  # noqa: E731
    labels = lambda n: torch.randint(0, 10, (n,), generator=generator)  # noqa: E731
    return Dataset.from_tensors(pixels(train + val_size), labels(train + val_size), pixels(test), labels(test),
                                val_size=val_size, num_classes=10, augment="flip-crop", name="random-images")


def timed_epochs(model_name: str, data: Dataset, cfg: TrainConfig, device: torch.device, epochs: int) -> dict:
    """Whole epochs of the trainer's loop (no evaluation, no checkpoint): the first warms up, the rest are timed."""
    model = create_model(model_name, data.input_shape, data.num_classes, seed=0).to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    counters = DeviceCounters(device)
    step = TrainStep(model, torch.compile(model) if cfg.compile else model, optimizer, None, cfg, device, counters)
    train_x, train_y = data.stored("train").to(device), data.train_y.to(device)
    schedule = Schedule.of(cfg, len(train_y))
    batches = TrainingBatches(train_x, train_y, cfg.batch_size, schedule.iterations_per_epoch, 0, data.augment,
                              data.standardize)
    seconds = []
    model.train()
    with device_settings(device, cfg.deterministic):
        for epoch in range(epochs):
            synchronize(device)
            started = time.perf_counter()
            for iteration in range(epoch * schedule.iterations_per_epoch, (epoch + 1) * schedule.iterations_per_epoch):
                x, y = batches.at(iteration)
                set_learning_rate(optimizer, schedule.learning_rate(iteration))
                step(x, y, len(y))
            loss_sum, correct = counters.read()  # what an evaluation point reads back
            synchronize(device)
            seconds.append(time.perf_counter() - started)
            counters.reset()
    return {"first_epoch_seconds": round(seconds[0], 3), "epoch_seconds": round(min(seconds[1:]), 3),
            "iterations_per_epoch": schedule.iterations_per_epoch, "examples": len(train_y),
            "mean_train_loss": loss_sum / len(train_y)}


def resnet_figures(device: torch.device, smoke: bool) -> dict:
    data = random_images(64 if smoke else 50_000, 64 if smoke else 10_000, (3, 32, 32), val_size=32 if smoke else 5000)
    model_name = "resnet8" if smoke else "resnet20"  # bf16 convolutions crawl on CPUs without bf16 units
    base = dict(batch_size=32 if smoke else 128, lr=0.1, momentum=0.9, weight_decay=1e-4, steps="1ep", device=str(device))
    variants = {"fp32": {}, "bf16": {"precision": "bf16", "channels_last": True},
                "bf16_compiled": {"precision": "bf16", "channels_last": True, "compile": True}}
    figures, skipped = {}, {}
    for name, options in variants.items():
        if options.get("compile") and device.type == "cpu":
            skipped[f"resnet20_epoch.{name}"] = "torch.compile is timed on GPUs only (minutes of C++ builds on a CPU)"
            continue
        figures[name] = timed_epochs(model_name, data, TrainConfig(**base, **options), device, epochs=2)
    model = create_model(model_name, data.input_shape, data.num_classes, seed=0)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        summary = train(model, data, TrainConfig(**base, eval_every="1ep", precision="bf16", channels_last=True),
                        out_dir=out, data_seed=0, quiet=True)
        figures["train_call_bf16"] = {"seconds": round(time.perf_counter() - started, 3),
                                      "step_time_seconds": summary["step_time_seconds"],
                                      "eval_examples": summary["eval_examples"]}
    if "bf16" in figures:
        figures["bar"] = {"bf16_epoch_seconds_at_most": RESNET_BAR_SECONDS,
                          "met": figures["bf16"]["epoch_seconds"] <= RESNET_BAR_SECONDS}
    return {"figures": figures, "skipped": skipped}


def lenet_level(device: torch.device, smoke: bool) -> dict:
    note = "fashion-mnist"
    try:
        data = load_dataset("fashion-mnist", train_subset=2000 if smoke else 0)
    except TicketlabError as exc:  # the same arithmetic on random 28x28 images
        note = f"random 28x28 images (fashion-mnist not found: {exc})"
        data = random_images(2000 if smoke else 55_000, 1000 if smoke else 10_000, (1, 28, 28))
    model = create_model("lenet_300_100", data.input_shape, data.num_classes, seed=0)
    generator = torch.Generator().manual_seed(0)
    params = dict(model.named_parameters())
    mask = Mask({n: torch.rand(params[n].shape, generator=generator) < 0.2 for n in model.prunable_names})
    cfg = TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, steps="50it" if smoke else "5ep",
                      eval_every="25it" if smoke else "1ep", device=str(device))
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        summary = train(model, data, cfg, out_dir=out, data_seed=0, mask=mask, quiet=True)
        seconds = time.perf_counter() - started
    return {"data": note, "steps": cfg.steps, "iterations": summary["iterations"], "seconds": round(seconds, 3),
            "iterations_per_second": round(summary["iterations"] / seconds, 1),
            "step_time_seconds": summary["step_time_seconds"], "test_accuracy": summary["test_accuracy"]}


def multi_ticket(device: torch.device, smoke: bool, timeout: float) -> dict:
    script = REPO / "benchmarks" / "multi_ticket.py"
    if not script.exists():
        return {"skipped": "benchmarks/multi_ticket.py is not in this tree"}
    with tempfile.TemporaryDirectory() as out:
        figures = Path(out) / "multi.json"
        command = [sys.executable, str(script), "--device", str(device), "--json-out", str(figures)]
        command += ["--smoke"] if smoke else ["--tickets", "8", "--steps", "500it", "--workers", "4"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        except subprocess.TimeoutExpired:
            return {"skipped": f"multi_ticket.py ran past {timeout:.0f} s", "command": command[1:]}
        if done.returncode != 0 or not figures.exists():
            return {"skipped": f"multi_ticket.py exited {done.returncode}: {done.stderr.strip()[-300:]}",
                    "command": command[1:]}
        return {"command": command[1:], "figures": json.loads(figures.read_text())}


def scoring(device: torch.device, smoke: bool) -> dict:
    data = random_images(128 if smoke else 50_000, 128, (3, 32, 32), val_size=128)
    model = create_model("resnet8" if smoke else "resnet20", data.input_shape, data.num_classes, seed=0).to(device)
    figures = {}

    def timed(run) -> float:
        run()  # warm-up: kernels chosen, memory allocated
        synchronize(device)
        started = time.perf_counter()
        run()
        synchronize(device)
        return time.perf_counter() - started

    figures["snip_seconds"] = round(timed(lambda: find_mask("snip", model, data, 0.1, seed=0, batch_size=128)), 4)
    rounds = 5 if smoke else 100
    seconds = timed(lambda: find_mask("synflow", model, data, 0.1, seed=0, iterations=rounds))
    figures["synflow"] = {"rounds": rounds, "seconds": round(seconds, 3), "seconds_per_round": round(seconds / rounds, 5)}
    steps = 10 if smoke else 100
    seconds = timed(lambda: search_mask(model, data, 0.1, steps, seed=0, training_lr=0.1, log_every=10 ** 9))
    figures["cts"] = {"steps": steps, "seconds": round(seconds, 3), "seconds_per_step": round(seconds / steps, 5)}
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="the JSON file written (default: $OUT/gpu-figures.json or ./gpu-figures.json)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script (on a CPU too)")
    parser.add_argument("--multi-ticket-timeout", type=float, default=150.0, help="seconds for multi_ticket.py")
    args = parser.parse_args()
    out = Path(args.out or Path(os.environ.get("OUT", ".")) / "gpu-figures.json")
    device = torch.device(args.device)
    report = {"command": " ".join(["benchmarks/gpu_figures.py", *sys.argv[1:]]), "smoke": args.smoke,
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
              "figures": {}, "skipped": {}, "seconds": {}}
    parts = {"resnet20_epoch": lambda: resnet_figures(device, args.smoke), "lenet_imp_level": lambda: lenet_level(device, args.smoke),
             "multi_ticket": lambda: multi_ticket(device, args.smoke, args.multi_ticket_timeout),
             "scoring": lambda: scoring(device, args.smoke)}
    for name, part in parts.items():
        started = time.perf_counter()
        try:
            result = part()
        except Exception as exc:  # one part failing still leaves the others' figures
            report["skipped"][name] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        else:
            if name == "resnet20_epoch":
                report["figures"][name] = result["figures"]
                report["skipped"].update(result["skipped"])
            elif "skipped" in result and "figures" not in result:
                report["skipped"][name] = result["skipped"]
            else:
                report["figures"][name] = result
        report["seconds"][name] = round(time.perf_counter() - started, 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")  # after every part: a run cut short keeps what it measured
        print(f"{name}: {report['seconds'][name]} s", file=sys.stderr)
    print(json.dumps(report["figures"], indent=2))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
