"""Pruning-at-initialization runs: prune a ticket, train it, sweep methods × densities × seeds.

`runs/prune-<hash>/seed-<s>/` holds the ticket found by one method at one density
(`ticket.safetensors`), the dense training up to the rewind step k when k > 0 (`dense-to-k/`),
and, once trained, the ticket's training (`train/`). Every method records the wall time and the
training examples it spent (forward/backward passes) to find its ticket.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from ticketlab import checks
from ticketlab import cts  # noqa: F401  (registers cts: prune --method cts)
from ticketlab.config import derive_seed
from ticketlab.data import Dataset
from ticketlab.errors import TicketlabError
from ticketlab.files import read_json, write_json
from ticketlab.lth.aggregate import mean_std
from ticketlab.models import model_from_config
from ticketlab.pai import MaskRequest, finding_method
from ticketlab.provenance import Provenance
from ticketlab.runs import open_dir, open_run, run_dir_for
from ticketlab.runtime import TICKET, load_data, run_seeds, train_ticket_file
from ticketlab.steps import to_iterations
from ticketlab.ticket import Ticket, load_ticket, read_metadata
from ticketlab.trainer import Schedule, train, training_device


def rewind_weights(configs: dict, data: Dataset, seed: int, seed_dir: Path, quiet: bool) -> tuple[dict, int, dict]:
    """θ_k for this seed: θ₀, or the dense net trained k iterations. Returns (state, k, cost)."""
    model = model_from_config(configs["model"], data.input_shape, data.num_classes, seed=derive_seed(seed, "init"))
    schedule = Schedule.of(configs["train"], len(data.train_y))
    k = to_iterations(configs["pai"].rewind_step, schedule.iterations_per_epoch, "rewind-step")
    if not 0 <= k < schedule.total:
        raise TicketlabError(f"--rewind-step {k} must be shorter than the training length {schedule.total}")
    cost = {"train_examples": 0, "wall_time_seconds": 0.0}
    if k > 0:
        to_k = dataclasses.replace(configs["train"], steps=f"{k}it", eval_every=f"{k}it")
        summary = train(model, data, to_k, out_dir=seed_dir / "dense-to-k", data_seed=derive_seed(seed, "data"),
                        quiet=quiet, label=f"dense to k={k}")
        cost = {"train_examples": summary["train_examples"], "wall_time_seconds": summary["wall_time_seconds"]}
    return {n: v.detach().cpu().clone() for n, v in model.state_dict().items()}, k, cost


def ticket_provenance(configs: dict, seed: int, k: int, **fields) -> Provenance:
    return Provenance(dataset=configs["data"].dataset, data_config=configs["data"], train_config=configs["train"],
                      seed=seed, init_seed=derive_seed(seed, "init"), data_seed=derive_seed(seed, "data"),
                      rewind_step=k, **fields)


def prune_seed(seed: int, configs: dict, data: Dataset, runs_dir: str, quiet: bool, invert: bool = False) -> Path:
    """Find (or reuse) this seed's ticket; returns its path. `invert` writes the inverted ticket beside it."""
    seed_dir = run_dir_for(runs_dir, "prune", configs) / f"seed-{seed}"
    path = seed_dir / ("ablation-invert" if invert else "") / TICKET
    if path.exists():
        return path
    method = finding_method(configs["pai"].method)
    state, k, cost = rewind_weights(configs, data, seed, seed_dir, quiet)
    model = model_from_config(configs["model"], data.input_shape, data.num_classes, seed=0)
    model.load_state_dict(state)
    model.to(training_device(configs["train"]))  # scored where it trains: SNIP, GraSP, SynFlow, CTS on the GPU
    started = time.perf_counter()
    result = method.find(MaskRequest(method.name, configs, model, data, seed, invert))
    search = {"scoring_examples": result.info["examples_used"], "scoring_wall_time_seconds": time.perf_counter() - started,
              "dense_train_examples": cost["train_examples"], "dense_wall_time_seconds": cost["wall_time_seconds"]}
    search["total_examples"] = search["scoring_examples"] + search["dense_train_examples"]
    search["total_wall_time_seconds"] = search["scoring_wall_time_seconds"] + search["dense_wall_time_seconds"]
    init_state = {n: (v * result.mask[n] if n in result.mask.tensors else v) for n, v in state.items()}
    provenance = ticket_provenance(configs, seed, k, method=result.info["method"] + ("-inverted" if invert else ""),
                                   pai=result.info, collapsed_layers=result.collapsed_layers, search_cost=search)
    Ticket(model.architecture, result.mask, init_state, None, provenance).save(path)
    return path


def check_pai_request(configs: dict, data, model, method: str, density: float, flag: str = "--density") -> None:
    """Dry run of a request to a registered method (for PaI: the density keeps a weight, per-layer floors
    fit, the options apply to the method; for CTS also the search length), before a run directory exists."""
    finding_method(method).check(method, configs, data, model, density, flag)


def run_train_ticket(ticket_path: Path, train_cfg, data, runs_dir: str, quiet: bool) -> dict:
    """Train a ticket file with `train_cfg` in `runs/train-ticket-<hash>` (named by the ticket's checksum and
    the recipe); a finished one returns its stored result. `data`: a Dataset, or a function loading it
    (called only when there is training to do)."""
    identity = json.dumps({"ticket": read_metadata(ticket_path)["checksum"], "train": dataclasses.asdict(train_cfg)},
                          sort_keys=True)
    out_dir = Path(runs_dir) / f"train-ticket-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"
    if (out_dir / "result.json").exists():
        return read_json(out_dir / "result.json")
    ticket = load_ticket(ticket_path)
    data = data() if callable(data) else data
    checks.check_training_data(train_cfg, len(data.train_y), data.name,
                               {"the ticket's rewind step": f"{int(ticket.provenance.rewind_step or 0)}it"},
                               data.input_shape)
    open_dir(out_dir)
    summary = train_ticket_file(Path(ticket_path), out_dir, data, quiet, train_cfg=train_cfg)
    result = {"run_dir": str(out_dir), "ticket": str(out_dir / TICKET), "density": ticket.mask.density(),
              "summary": summary}
    write_json(out_dir / "result.json", result)
    return result


def check_method(method: str) -> None:
    """A method `prune` can run: a registered one that finds a mask per request (the PaI methods, cts)."""
    finding_method(method)


def prune_and_train(seed: int, configs: dict, runs_dir: str, quiet: bool) -> dict:
    """One seed of a PaI run: the ticket and its training (for `pai` sweeps)."""
    data = load_data(configs)
    path = prune_seed(seed, configs, data, runs_dir, quiet)
    summary = train_ticket_file(path, path.parent / "train", data, quiet, label=f"{configs['pai'].method} seed {seed}")
    found = load_ticket(path).provenance
    return {"seed": seed, "ticket": str(path), "trained_ticket": str(path.parent / "train" / TICKET),
            "collapsed_layers": found.collapsed_layers, "search_cost": found.search_cost,
            "compute": total_compute(found.search_cost["total_examples"], found.search_cost["total_wall_time_seconds"],
                                     summary), **summary}


def total_compute(search_examples: int, search_seconds: float, training: dict) -> dict:
    """Compute from nothing to the trained ticket: finding it (training examples passed forward or
    forward and backward, and wall time) plus training it."""
    return {"search_examples": search_examples, "search_wall_time_seconds": search_seconds,
            "train_examples": training["train_examples"], "train_wall_time_seconds": training["wall_time_seconds"],
            "total_examples": search_examples + training["train_examples"],
            "total_wall_time_seconds": search_seconds + training["wall_time_seconds"]}


def pai_configs(base: dict, method: str, density: float) -> dict:
    """The configs of one (method, density) cell of a sweep."""
    return {**base, "pai": dataclasses.replace(base["pai"], method=method, density=density)}


def run_pai_sweep(base: dict, methods: list[str], densities: list[float], seeds: list[int], runs_dir: str,
                  quiet: bool, workers: int, log) -> dict:
    for method in methods:
        check_method(method)
    load_data(base)  # inputs checked before anything is written
    rows = []
    for method in methods:
        for density in densities:
            configs = pai_configs(base, method, density)
            open_run(runs_dir, "prune", configs)
            per_seed = run_seeds(prune_and_train, seeds, workers, configs, runs_dir, quiet)
            acc, acc_std = mean_std([r["test_accuracy"] for r in per_seed.values()])
            stop, stop_std = mean_std([r["early_stop_iteration"] for r in per_seed.values()])
            compute = {key: mean_std([r["compute"][key] for r in per_seed.values()])[0]
                       for key in per_seed[seeds[0]]["compute"]}
            row = {"method": method, "density": density, "seeds": seeds, "test_accuracy": acc,
                   "test_accuracy_std": acc_std, "early_stop_iteration": stop, "early_stop_iteration_std": stop_std,
                   "collapsed_layers": sorted({n for r in per_seed.values() for n in r["collapsed_layers"]}),
                   "tickets": [per_seed[s]["ticket"] for s in seeds], "compute": compute,
                   "test_accuracy_per_seed": {str(s): per_seed[s]["test_accuracy"] for s in seeds},
                   "run_dir": str(run_dir_for(runs_dir, "prune", configs))}
            log(f"{method} at density {density}: test accuracy {acc:.4f} ± {acc_std:.4f}")
            rows.append(row)
    return {"results": rows}
