"""What a CTS search step costs next to a plain training step of the same model.

Both are timed on the same random data, interleaved in rounds so that load from other processes hits
them alike; the reported times are medians over rounds, in wall-clock seconds and in CPU seconds of
this process (the latter barely moves when other jobs share the machine, so its ratio is the one to
quote from a busy machine). The training step is the trainer's: forward,
cross-entropy, backward, SGD step. The search step is `ConcreteSearch.step` (noise, dense forward
without grad when the objective needs it, masked forward, backward to the logits, balance, Adam).

    .venv/bin/python benchmarks/cts_step_cost.py [--threads 1]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ticketlab.cts.config import CtsConfig
from ticketlab.cts.search import ConcreteSearch
from ticketlab.data import Dataset
from ticketlab.models import create_model


def random_dataset(input_shape: tuple[int, ...], num_classes: int, count: int, seed: int = 0) -> Dataset:
    """Gaussian inputs with random labels: enough to time steps, nothing to learn."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((count, *input_shape), generator=generator)
    y = torch.randint(num_classes, (count,), generator=generator)
    return Dataset("random", x, y, x[:0], y[:0], x[:0], y[:0], num_classes, "none")


def measure_step_cost(model_name: str = "lenet_300_100", input_shape: tuple[int, ...] = (1, 28, 28),
                      num_classes: int = 10, batch_size: int = 128, steps_per_round: int = 20, rounds: int = 7,
                      objective: str = "kl", lr: float = 0.1) -> dict:
    """Seconds per step of training and of CTS, and their ratio (search / train)."""
    data = random_dataset(input_shape, num_classes, batch_size * steps_per_round)
    model = create_model(model_name, input_shape, num_classes, seed=0)
    config = CtsConfig(objective=objective, lr=lr, batch_size=batch_size)
    search = ConcreteSearch(model, data, 0.1, config, lr=lr, total_steps=rounds * steps_per_round + 1)
    trained = create_model(model_name, input_shape, num_classes, seed=0).train()
    optimizer = torch.optim.SGD(trained.parameters(), lr=lr)
    batches = [(data.train_x[i:i + batch_size], data.train_y[i:i + batch_size])
               for i in range(0, len(data.train_y), batch_size)]

    def train_step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(trained(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def timed(run) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        return (time.perf_counter() - wall) / steps_per_round, (time.process_time() - cpu) / steps_per_round

    train_step(*batches[0])  # warm-up: first calls allocate
    search.step()
    train_times, search_times = [], []
    for _ in range(rounds):
        train_times.append(timed(lambda: [train_step(x, y) for x, y in batches]))
        search_times.append(timed(lambda: [search.step() for _ in batches]))
    result = {"model": model_name, "batch_size": batch_size, "objective": objective, "threads": torch.get_num_threads()}
    for clock, index in (("wall", 0), ("cpu", 1)):
        train_seconds = statistics.median(t[index] for t in train_times)
        search_seconds = statistics.median(t[index] for t in search_times)
        result[clock] = {"train_steps_per_second": 1 / train_seconds, "search_steps_per_second": 1 / search_seconds,
                         "ratio": search_seconds / train_seconds}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for model, shape, objective in (("lenet_300_100", (1, 28, 28), "kl"), ("lenet_300_100", (1, 28, 28), "task"),
                                    ("resnet20", (3, 32, 32), "kl")):
        r = measure_step_cost(model, shape, objective=objective, rounds=7 if model.startswith("lenet") else 3,
                              steps_per_round=20 if model.startswith("lenet") else 2)
        print(f"{model:14s} {objective:5s} batch {r['batch_size']}, {r['threads']} thread(s): "
              f"train {r['wall']['train_steps_per_second']:.2f} steps/s, search {r['wall']['search_steps_per_second']:.2f} "
              f"steps/s; search/train ratio {r['wall']['ratio']:.2f} (wall), {r['cpu']['ratio']:.2f} (CPU)")


if __name__ == "__main__":
    main()
