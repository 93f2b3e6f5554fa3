"""The shared runtime of every family's jobs: data loading, the seed pool, finished-run lookup and
dense training in a run directory.

Inputs (data, model, lengths) are checked before any directory is created, so a mistake leaves
nothing behind. A finished run prints its stored result without loading any data. Replicate seeds
run in parallel worker processes when there are cores for them, each worker's torch limited to its
share of the threads so they do not fight.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
from pathlib import Path

from ticketlab import checks, distributed, machine, progress
from ticketlab.config import DataConfig, config_hash, derive_seed
from ticketlab.data import load_dataset
from ticketlab.files import read_json, write_json
from ticketlab.mask import Mask
from ticketlab.models import model_from_architecture, model_from_config
from ticketlab.provenance import Provenance
from ticketlab.runs import open_run, run_dir_for
from ticketlab.ticket import Ticket, load_ticket
from ticketlab.trainer import train

RESULT = "result.json"
TICKET = "ticket.safetensors"


def load_data_config(d: DataConfig):
    """The data of `d`, loaded once per process: a run's checks and its jobs share one object."""
    return load_dataset(d.dataset, data_root=d.data_root, val_size=d.val_size, train_subset=d.train_subset,
                        test_subset=d.test_subset, pad=d.pad, resize=d.resize, reuse=True)


def load_data(configs):
    data = load_data_config(configs["data"])
    # Build once to fail early on an unknown model or one that does not fit the data.
    model_from_config(configs["model"], data.input_shape, data.num_classes, seed=0)
    return data


def worker_setup(threads: int, progress_channel=None, progress_settings: dict | None = None) -> None:
    """A seed worker: its share of the torch threads, its progress and log lines sent to the parent's
    display (`progress_channel`), and it dies with its parent (Linux), so killing a command never leaves
    orphaned workers computing on."""
    machine.share_threads(threads)
    if progress_channel is not None:
        progress.worker_init(progress_channel, progress_settings or {})
    if sys.platform.startswith("linux"):
        import ctypes
        import signal
        try:
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


def run_seeds(function, seeds: list[int], workers: int, *args) -> dict[int, dict]:
    """function(seed, *args) for every seed; in parallel processes when workers > 1.

    A data-parallel run (torchrun) runs its seeds one after another: its ranks already share the
    machine's cores, and every rank must make the same collective calls in the same order.
    """
    workers = max(1, min(workers, len(seeds)))
    parallel = workers > 1 and distributed.world()[1] == 1
    # One display for all the seeds: a bar (or progress lines) per seed and the seeds finished overall;
    # parallel workers send theirs to this process, which alone writes to the terminal.
    with progress.seed_display(seeds, parallel) as channel:
        if not parallel:
            results = {}
            for seed in seeds:
                results[seed] = progress.for_seed(function, seed, *args)
                progress.seed_finished()
            return results
        threads = machine.threads_per_worker(workers)
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=worker_setup,
                                                    initargs=(threads, channel, progress.settings())) as pool:
            futures = {seed: pool.submit(progress.for_seed, function, seed, *args) for seed in seeds}
            for future in concurrent.futures.as_completed(futures.values()):
                future.result()  # a failed seed raises here, as soon as it fails
                progress.seed_finished()
            return {seed: future.result() for seed, future in futures.items()}


def default_workers(seeds: list[int]) -> int:
    return min(len(seeds), os.cpu_count() or 1)


def finished(runs_dir: str, kind: str, configs: dict, seeds: list[int]) -> bool:
    """Whether every seed of this run has its result (then the job prints it without loading data)."""
    run_dir = run_dir_for(runs_dir, kind, configs)
    return all((run_dir / f"seed-{s}" / "result.json").is_file() for s in seeds)


def checked_data(configs: dict, rewinds: dict[str, str] | None = None, data_config: DataConfig | None = None,
                 data=None):
    """Load the data (or take `data`, already loaded) and check what depends on it (batch size, length in
    iterations, rewind points) before anything is written; returns (data, a freshly built model of
    configs["model"], or None with `data_config`)."""
    if data_config is not None:
        data, model = load_data_config(data_config), None
    else:
        if data is None:
            data = load_data(configs)
        model = model_from_config(configs["model"], data.input_shape, data.num_classes, seed=0)
    checks.check_training_data(configs["train"], len(data.train_y), data.name, rewinds, data.input_shape)
    return data, model


# ---- train ---------------------------------------------------------------------------------

def run_train(configs: dict, seed: int, runs_dir: str, quiet: bool, log) -> dict:
    seed_dir = run_dir_for(runs_dir, "train", configs) / f"seed-{seed}"
    if (seed_dir / RESULT).exists():
        log(f"{seed_dir} is finished; printing its stored result")
        return read_json(seed_dir / RESULT)
    data = load_data(configs)
    seed_dir = open_run(runs_dir, "train", configs) / f"seed-{seed}"
    model = model_from_config(configs["model"], data.input_shape, data.num_classes, seed=derive_seed(seed, "init"))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    summary = train(model, data, configs["train"], out_dir=seed_dir, data_seed=derive_seed(seed, "data"),
                    snapshot_at=0, quiet=quiet, label="train")
    ticket_path = seed_dir / TICKET
    Ticket(model.architecture, Mask.ones(model), initial, model.state_dict(),
           Provenance(dataset=configs["data"].dataset, data_config=configs["data"], train_config=configs["train"],
                      method="dense", seed=seed, data_seed=derive_seed(seed, "data"), rewind_step=0,
                      metrics=summary)).save(ticket_path)
    result = {"run_dir": str(seed_dir), "ticket": str(ticket_path), "summary": summary,
              "config_hash": config_hash("train", configs)}
    write_json(seed_dir / RESULT, result)
    return result


# ---- train a ticket ------------------------------------------------------------------------

def train_ticket_file(ticket_path: Path, out_dir: Path, data, quiet: bool, train_cfg=None, mask: Mask | None = None,
                      weights: dict | None = None, label: str = "ticket") -> dict:
    """Train a ticket with its recorded recipe (or `train_cfg`) from its rewind step; optionally with
    another mask or other starting weights (the sanity ablations and controls). Writes
    out_dir/ticket.safetensors: the ticket's provenance with the recipe used and the new metrics."""
    ticket = load_ticket(ticket_path)
    cfg = train_cfg or ticket.recipe()
    mask = mask or ticket.mask
    model = model_from_architecture(ticket.architecture)
    model.load_state_dict(weights or ticket.init_state)
    start = {n: (v * mask[n] if n in mask.tensors else v).clone() for n, v in model.state_dict().items()}
    summary = train(model, data, cfg, out_dir=out_dir, data_seed=ticket.provenance.data_seed or 0, mask=mask,
                    start_iteration=int(ticket.provenance.rewind_step or 0), quiet=quiet, label=label)
    if not (out_dir / TICKET).exists():
        provenance = ticket.provenance.replace(train_config=cfg, metrics=summary)
        Ticket(ticket.architecture, mask, start, model.state_dict(), provenance).save(out_dir / TICKET)
    return summary
