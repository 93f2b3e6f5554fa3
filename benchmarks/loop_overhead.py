"""A ticketlab training epoch vs a bare PyTorch loop over the same in-memory tensors, in one run.

Both train LeNet-300-100 on Fashion-MNIST (55,000 training images, batch 60, Adam) for --epochs
epochs from the same initialization and evaluate validation and test sets at the end of each.
ticketlab's run includes everything it does for real: seeded batch order, masking (at 20%
density; the bare loop masks with the same multiply), running metrics, the end-of-epoch
checkpoint written atomically, and its once-per-run evaluation of the final training accuracy.
Runs alternate between the two, alternating which goes first; the figures are ratios of medians
per epoch, of wall time and of process CPU time (this machine's wall times drift by ±20% between
minutes; CPU time is steadier).

    .venv/bin/python benchmarks/loop_overhead.py [--rounds 9] [--epochs 3]
"""

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from ticketlab.config import TrainConfig
from ticketlab.data import load_dataset
from ticketlab.mask import Mask
from ticketlab.models import create_model
from ticketlab.trainer import train


def bare_run(model, data, batch, masks, epochs):
    optimizer = torch.optim.Adam(model.parameters(), lr=1.2e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(data.train_y))
        for start in range(0, len(perm), batch):
            idx = perm[start:start + batch]
            loss = F.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for p, m in masks:
                    p.mul_(m)
        with torch.inference_mode():
            for x, y in ((data.val_x, data.val_y), (data.test_x, data.test_y)):
                (model(x).argmax(1) == y).float().mean()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    data = load_dataset("fashion-mnist")
    cfg = TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, steps=f"{args.epochs}ep", eval_every="1ep")
    model = create_model("lenet_300_100", data.input_shape, data.num_classes, seed=0)
    g = torch.Generator().manual_seed(0)
    params = dict(model.named_parameters())
    mask = Mask({n: torch.rand(params[n].shape, generator=g) < 0.2 for n in model.prunable_names})
    masks = [(params[n], mask[n].float()) for n in mask.names()]
    bare_run(create_model("lenet_300_100", data.input_shape, data.num_classes, seed=0), data, 60, masks, 1)  # warm-up

    def timed(run):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        return (time.perf_counter() - wall) / args.epochs, (time.process_time() - cpu) / args.epochs

    def time_bare():
        model = create_model("lenet_300_100", data.input_shape, data.num_classes, seed=0)
        params = dict(model.named_parameters())
        return timed(lambda: bare_run(model, data, 60, [(params[n], m) for n, (_, m) in zip(mask.names(), masks)],
                                      args.epochs))

    def time_ours(r):
        model = create_model("lenet_300_100", data.input_shape, data.num_classes, seed=0)
        with tempfile.TemporaryDirectory() as out:
            return timed(lambda: train(model, data, cfg, out_dir=out, data_seed=r, mask=mask, quiet=True))

    bare, ours = [], []
    for r in range(args.rounds):
        if r % 2:
            ours.append(time_ours(r))
            bare.append(time_bare())
        else:
            bare.append(time_bare())
            ours.append(time_ours(r))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds of {args.epochs} epochs")
    for i, what in enumerate(("wall", "CPU")):
        b, o = statistics.median(t[i] for t in bare), statistics.median(t[i] for t in ours)
        print(f"{what:4s} time: bare PyTorch loop {b:.3f} s/epoch; ticketlab train {o:.3f} s/epoch; ratio {o / b:.3f}")


if __name__ == "__main__":
    main()
