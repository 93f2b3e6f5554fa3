"""The machine a training runs on: how many torch threads it uses, and what it records about the machine.

Small networks gain little from more than a few threads, and on a busy machine extra threads spin and
wait for cores that others hold (two threads per process ran up to ten times slower than one on a shared
two-core machine). So unless `--threads` says otherwise, a training uses its process's share of the cores,
at most MAX_DEFAULT_THREADS (or OMP_NUM_THREADS when set), and one thread when the machine is already busy (a 1-minute load average of
at least its cores). Seed workers get their share from their pool (`share_threads`). Every training's
summary records the threads, the cores and the load average at its start, since timings mean little
without them.
"""

from __future__ import annotations

import contextlib
import os

import torch

MAX_DEFAULT_THREADS = 4
_SHARE: dict[str, int] = {}  # this process's share of the cores, set in seed and sweep workers


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages; None where the system has none."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def threads_per_worker(workers: int) -> int:
    """Threads for each of `workers` parallel processes: the cores shared out, at most MAX_DEFAULT_THREADS."""
    return max(1, min(MAX_DEFAULT_THREADS, cores() // max(1, workers)))


def share_threads(threads: int) -> None:
    """Make `threads` this process's default (a worker of a pool that shares the cores out)."""
    _SHARE["threads"] = threads
    torch.set_num_threads(threads)


def default_threads() -> int:
    """A worker's share; else OMP_NUM_THREADS when the user set it; else the cores up to MAX_DEFAULT_THREADS,
    or 1 on a machine already busy."""
    if "threads" in _SHARE:
        return _SHARE["threads"]
    requested = os.environ.get("OMP_NUM_THREADS", "").strip()
    if requested.isdigit() and int(requested) > 0:  # the usual way to pin threads: respect it
        return int(requested)
    load = load_average()
    if load is not None and load[0] >= cores():
        return 1
    return threads_per_worker(1)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run with `threads` torch threads (default_threads() when None), the previous count restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads())
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def describe() -> dict:
    """What a result records about where it ran: torch threads, cores, load averages (1, 5, 15 min) now."""
    return {"threads": torch.get_num_threads(), "cores": cores(), "load_average": load_average()}
