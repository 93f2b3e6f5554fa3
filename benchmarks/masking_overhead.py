"""Masked vs unmasked training step, measured in one run: prints the cost ratio per model.

A masked step is the same SGD step followed by ticketlab's in-place masking (Mask.apply_) at 20%
density. Steps of both kinds are interleaved in rounds, alternating which goes first, so drift on
the machine hits both alike; the figure is the ratio of medians.

    .venv/bin/python benchmarks/masking_overhead.py [--rounds 30] [--steps 20]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ticketlab.mask import Mask
from ticketlab.models import create_model


def time_steps(model, optimizer, x, y, steps, mask):
    start = time.process_time() if CPU_TIME else time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if mask is not None:
            mask.apply_(model)
    return ((time.process_time() if CPU_TIME else time.perf_counter()) - start) / steps


CPU_TIME = False


def measure(name, input_shape, batch, rounds, steps):
    model = create_model(name, input_shape, 10, seed=0)
    g = torch.Generator().manual_seed(0)
    params = dict(model.named_parameters())
    mask = Mask({n: torch.rand(params[n].shape, generator=g) < 0.2 for n in model.prunable_names})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, *input_shape, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    time_steps(model, optimizer, x, y, 3, mask)  # warm-up
    plain, masked = [], []
    for r in range(rounds):
        if r % 2:
            masked.append(time_steps(model, optimizer, x, y, steps, mask))
            plain.append(time_steps(model, optimizer, x, y, steps, None))
        else:
            plain.append(time_steps(model, optimizer, x, y, steps, None))
            masked.append(time_steps(model, optimizer, x, y, steps, mask))
    p, m = statistics.median(plain), statistics.median(masked)
    print(f"{name:16s} batch {batch:4d}: unmasked {1e3 * p:8.3f} ms/step, masked {1e3 * m:8.3f} ms/step, ratio {m / p:.3f}")
    return m / p


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cpu-time", action="store_true", help="measure process CPU time instead of wall time")
    args = parser.parse_args()
    global CPU_TIME
    CPU_TIME = args.cpu_time
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {'CPU' if CPU_TIME else 'wall'} time")
    measure("lenet_300_100", (1, 28, 28), 60, args.rounds, args.steps)
    measure("lenet_300_100", (1, 28, 28), 128, args.rounds, args.steps)
    measure("resnet20", (3, 32, 32), 128, max(3, args.rounds // 3), max(2, args.steps // 10))


if __name__ == "__main__":
    main()
