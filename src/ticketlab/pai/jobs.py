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
from ticketlab.config import TrainConfig, derive_seed
from ticketlab.cts import search_mask
from ticketlab.data import Dataset
from ticketlab.errors import TicketlabError
from ticketlab.files import read_json, write_json
from ticketlab.lth.aggregate import mean_std
from ticketlab.mask import Mask
from ticketlab.models import model_from_architecture, model_from_config
from ticketlab.pai import PaiResult, find_mask, method_names
from ticketlab.pai.find import build_request
from ticketlab.runs import open_dir, open_run, run_dir_for
from ticketlab.runtime import TICKET, load_data, run_seeds
from ticketlab.steps import to_iterations
from ticketlab.ticket import Ticket, load_ticket, read_metadata
from ticketlab.trainer import Schedule, train



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
    return {n: v.clone() for n, v in model.state_dict().items()}, k, cost


def ticket_info(configs: dict, seed: int, k: int, extra: dict) -> dict:
    return {"dataset": configs["data"].dataset, "data_config": vars(configs["data"]).copy(),
            "train_config": vars(configs["train"]).copy(), "seed": seed, "init_seed": derive_seed(seed, "init"),
            "data_seed": derive_seed(seed, "data"), "rewind_step": k, **extra}


def prune_seed(seed: int, configs: dict, data: Dataset, runs_dir: str, quiet: bool, invert: bool = False) -> Path:
    """Find (or reuse) this seed's ticket; returns its path. `invert` writes the inverted ticket beside it."""
    seed_dir = run_dir_for(runs_dir, "prune", configs) / f"seed-{seed}"
    path = seed_dir / ("ablation-invert" if invert else "") / TICKET
    if path.exists():
        return path
    pai = configs["pai"]
    state, k, cost = rewind_weights(configs, data, seed, seed_dir, quiet)
    model = model_from_config(configs["model"], data.input_shape, data.num_classes, seed=0)
    model.load_state_dict(state)
    started = time.perf_counter()
    if pai.method == "cts":
        result = run_cts(configs, model, data, seed, invert)
    else:
        result = find_mask(pai.method, model, data, pai.density, seed=derive_seed(seed, "prune"),
                           score_batches=pai.score_batches, batch_size=pai.score_batch_size, iterations=pai.iterations,
                           min_per_layer=pai.min_per_layer, invert=invert)
    search = {"scoring_examples": result.info["examples_used"], "scoring_wall_time_seconds": time.perf_counter() - started,
              "dense_train_examples": cost["train_examples"], "dense_wall_time_seconds": cost["wall_time_seconds"]}
    search["total_examples"] = search["scoring_examples"] + search["dense_train_examples"]
    search["total_wall_time_seconds"] = search["scoring_wall_time_seconds"] + search["dense_wall_time_seconds"]
    init_state = {n: (v * result.mask[n] if n in result.mask.tensors else v) for n, v in state.items()}
    method = result.info["method"]
    info = ticket_info(configs, seed, k, {"method": method + ("-inverted" if invert else ""), "pai": result.info,
                                          "collapsed_layers": result.collapsed_layers, "search_cost": search})
    Ticket(model.architecture, result.mask, init_state, None, info).save(path)
    return path


def search_length(spec: str, schedule: Schedule) -> int:
    """CTS search length: "2000it", "20ep" or a percentage of the training length ("12.5%")."""
    text = spec.strip()
    if text.endswith("%"):
        try:
            fraction = float(text[:-1]) / 100
        except ValueError:
            raise TicketlabError(f"bad --search-steps {spec!r}: write e.g. 12.5%, 20ep or 2000it") from None
        steps = int(round(fraction * schedule.total))
    else:
        steps = to_iterations(text, schedule.iterations_per_epoch, "search-steps")
    if steps < 1:
        raise TicketlabError(f"--search-steps {spec} is less than one iteration; give a longer search")
    return steps


def run_cts(configs: dict, model, data: Dataset, seed: int, invert: bool) -> PaiResult:
    """Concrete Ticket Search as a ticket-finding method with the PaI result shape; the search's cost
    counts both its masked and its dense forward passes over training examples."""
    cts = configs["cts"]
    steps = search_length(cts.search_steps, Schedule.of(configs["train"], len(data.train_y)))
    result = search_mask(model, data, configs["pai"].density, steps, cts, seed=derive_seed(seed, "prune"),
                         invert=invert, training_lr=configs["train"].lr)
    info = dict(result.info)
    info["examples_used"] = info["masked_forward_examples"] + info["dense_forward_examples"]
    info["search_log"] = result.log
    collapsed = [n for n in result.mask.names() if not bool(result.mask[n].any())]
    return PaiResult(result.mask, None, collapsed, info)


def train_ticket_file(ticket_path: Path, out_dir: Path, data: Dataset, quiet: bool, train_cfg=None,
                      mask: Mask | None = None, weights: dict | None = None, label: str = "ticket") -> dict:
    """Train a ticket with its recorded recipe (or `train_cfg`) from its rewind step; optionally with
    another mask or other starting weights (the sanity ablations). Writes out_dir/ticket.safetensors."""
    ticket = load_ticket(ticket_path)
    cfg = train_cfg or TrainConfig(**ticket.info["train_config"])
    mask = mask or ticket.mask
    model = model_from_architecture(ticket.architecture)
    model.load_state_dict(weights or ticket.init_state)
    start = {n: (v * mask[n] if n in mask.tensors else v).clone() for n, v in model.state_dict().items()}
    summary = train(model, data, cfg, out_dir=out_dir, data_seed=ticket.info.get("data_seed", 0), mask=mask,
                    start_iteration=int(ticket.info.get("rewind_step", 0)), quiet=quiet, label=label)
    if not (out_dir / TICKET).exists():
        info = {**ticket.info, "train_config": vars(cfg).copy(), "metrics": summary}
        Ticket(ticket.architecture, mask, start, model.state_dict(), info).save(out_dir / TICKET)
    return summary


def check_pai_request(configs: dict, data, model, method: str, density: float, flag: str = "--density") -> None:
    """Dry run of a PaI request on the model (density keeps a weight, per-layer floors fit, options
    apply to the method), and for CTS the search length: all of it before a run directory exists."""
    pai = configs["pai"]
    if method == "cts":
        checks.density_keeps_a_weight(density, sum(checks.prunable_sizes(model).values()), flag, configs["model"].model)
        search_length(configs["cts"].search_steps, Schedule.of(configs["train"], len(data.train_y)))
        return
    if method in ("imp", "ltr"):
        return
    checks.density_keeps_a_weight(density, sum(checks.prunable_sizes(model).values()), flag, configs["model"].model)
    build_request(method, model, data, density, score_batches=pai.score_batches, batch_size=pai.score_batch_size,
                  iterations=pai.iterations, min_per_layer=pai.min_per_layer)


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
                               {"the ticket's rewind step": f"{int(ticket.info.get('rewind_step', 0))}it"},
                               data.input_shape)
    open_dir(out_dir)
    summary = train_ticket_file(Path(ticket_path), out_dir, data, quiet, train_cfg=train_cfg)
    result = {"run_dir": str(out_dir), "ticket": str(out_dir / TICKET), "density": ticket.mask.density(),
              "summary": summary}
    write_json(out_dir / "result.json", result)
    return result


def check_method(method: str) -> None:
    if method not in method_names() + ["cts"]:
        raise TicketlabError(f"unknown pruning method {method!r}; known: {', '.join(method_names() + ['cts'])}")


def prune_and_train(seed: int, configs: dict, runs_dir: str, quiet: bool) -> dict:
    """One seed of a PaI run: the ticket and its training (for `pai` sweeps)."""
    data = load_data(configs)
    path = prune_seed(seed, configs, data, runs_dir, quiet)
    summary = train_ticket_file(path, path.parent / "train", data, quiet, label=f"{configs['pai'].method} seed {seed}")
    meta = load_ticket(path).info
    return {"seed": seed, "ticket": str(path), "trained_ticket": str(path.parent / "train" / TICKET),
            "collapsed_layers": meta["collapsed_layers"], "search_cost": meta["search_cost"],
            "compute": total_compute(meta["search_cost"]["total_examples"], meta["search_cost"]["total_wall_time_seconds"],
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
                   "run_dir": str(run_dir_for(runs_dir, "prune", configs))}
            log(f"{method} at density {density}: test accuracy {acc:.4f} ± {acc_std:.4f}")
            rows.append(row)
    return {"results": rows}
