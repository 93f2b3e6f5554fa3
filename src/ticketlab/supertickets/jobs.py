"""The `supertickets` and `transfer` commands: runs over seeds, baselines, ticket files, results.

`runs/supertickets-<hash>/seed-<s>/` holds the ticket (`ticket.safetensors`: the searched architecture
in `architecture["paths"]`, the mask — classifier kept whole —, θ₀ cut to the searched channels and
the final weights), `events.json` (every shrink and prune event), the retraining's training files
under `retrain/` when asked, and `result.json`: accuracy of the found network without retraining
(`found`) and after it (`retrained`), next to its costs — parameters of the shrunk architecture and
live ones, FLOPs per example of the shrunk architecture dense and at the ticket's mask (the effective
cost the frontier plots), and the training examples spent (search + scoring + retraining).

Baselines (`--baseline M`) run the same training with search and no pruning, then prune the searched,
trained network once to κ with method M (magnitude, SNIP, GraSP, SynFlow, random over the same
weights: every conv and linear weight but the classifier).
"""

from __future__ import annotations

import dataclasses
import time

import torch

from ticketlab import progress
from ticketlab.batchnorm import recalibrate_batchnorm
from ticketlab.config import derive_seed
from ticketlab.deploy.flops import count
from ticketlab.errors import TicketlabError
from ticketlab.files import read_json, read_safetensors, write_json, write_safetensors
from ticketlab.lth.aggregate import mean_std
from ticketlab.mask import Mask
from ticketlab.models import model_from_architecture, model_from_config
from ticketlab.models.supernet import mixed_blocks, path_widths
from ticketlab.pai.find import find_mask
from ticketlab.provenance import Provenance
from ticketlab.runs import open_run, run_dir_for
from ticketlab.runtime import TICKET, load_data, load_data_config, run_seeds
from ticketlab.steps import to_iterations
from ticketlab.supertickets.config import SuperConfig, TransferSource
from ticketlab.supertickets.progressive import SparseState, ticket_names
from ticketlab.supertickets.search import SearchOutcome, accuracy, two_in_one
from ticketlab.ticket import Ticket, load_ticket, read_metadata
from ticketlab.trainer import train

RESULT = "result.json"


def method_name(scfg: SuperConfig) -> str:
    """How results name the run: supertickets, an ablation, or search-then-<method>."""
    if scfg.baseline != "none":
        return f"search+{scfg.baseline}"
    parts = ["supertickets"]
    if not scfg.search:
        parts.append("no-search")
    if scfg.schedule == "one-shot":
        parts.append("one-shot")
    if not scfg.reactivation:
        parts.append("no-reactivation")
    if scfg.masks_on_shrink == "keep":
        parts.append("keep-masks")
    if scfg.reset_masks_after_prune:
        parts.append("reset-masks")
    return "-".join(parts)


def costs(model, mask: Mask, input_shape) -> dict:
    counted = count(model, input_shape, mask)
    return {"parameters": counted["parameters"], "live_parameters": counted["nonzero_parameters"],
            "flops": counted["flops"], "architecture_flops": counted["dense_flops"]}


def baseline_prune(model, data, state: SparseState, scfg: SuperConfig, seed: int) -> dict:
    """One-shot pruning of the searched network to κ with a PaI method, over the ticket's weights."""
    full_names = model.prunable_names
    model.prunable_names = ticket_names(model)  # the classifier stays whole, as in two-in-one training
    try:
        found = find_mask(scfg.baseline, model, data, scfg.density, seed=derive_seed(seed, "baseline"),
                          score_batches=scfg.score_batches, grasp_batches=scfg.grasp_batches or "halves")
    finally:
        model.prunable_names = full_names
    state.set_mask(found.mask.tensors)
    state.apply_(model)
    return {"examples_used": found.info["examples_used"], "wall_time_seconds": found.info["wall_time_seconds"],
            "collapsed_layers": found.collapsed_layers}


SEARCH_FIELDS = ("shrink_interval", "rho", "rho_warmup", "gamma_threshold")


def search_configs(configs: dict) -> dict:
    """The configs of the search-only run a baseline prunes: what the search depends on, nothing else."""
    scfg = configs["supertickets"]
    return {"data": configs["data"], "model": configs["model"], "train": configs["train"],
            "search": SuperConfig(**{name: getattr(scfg, name) for name in SEARCH_FIELDS})}


def searched_network(seed: int, configs: dict, runs_dir: str, quiet: bool, data):
    """Search-only training of the supernet (no pruning), run once per seed and shared by every baseline:
    the baselines differ only in how they prune its result. Returns (model, outcome)."""
    scfg = configs["supertickets"]
    seed_dir = run_dir_for(runs_dir, "supernet-search", search_configs(configs)) / f"seed-{seed}"
    done = seed_dir / "search.json"
    if done.exists():
        record = read_json(done)
        model = model_from_architecture(record["architecture"])
        tensors, _ = read_safetensors(seed_dir / "searched.safetensors")
        model.load_state_dict({k[len("trained/"):]: v for k, v in tensors.items() if k.startswith("trained/")})
        outcome = SearchOutcome(SparseState(model), {k[len("init/"):]: v for k, v in tensors.items() if k.startswith("init/")},
                                record["events"], record["iterations"], record["train_examples"], record["wall_time_seconds"])
        return model, outcome
    model = model_from_config(configs["model"], data.input_shape, data.num_classes, seed=derive_seed(seed, "init"))
    log = (lambda message: None) if quiet else (lambda message: progress.write_line(f"seed {seed} search: {message}"))
    outcome = two_in_one(model, data, configs["train"], scfg, data_seed=derive_seed(seed, "data"), prune=False, log=log,
                         quiet=quiet, label=f"search seed {seed}")
    model.architecture = {**model.architecture, "paths": path_widths(model)}
    write_safetensors(seed_dir / "searched.safetensors", {**{f"trained/{k}": v for k, v in model.state_dict().items()},
                                                          **{f"init/{k}": v for k, v in outcome.init_state.items()}})
    write_json(done, {"architecture": model.architecture, "events": outcome.events, "iterations": outcome.iterations,
                      "train_examples": outcome.train_examples, "wall_time_seconds": outcome.wall_time_seconds})
    return model, outcome


def supertickets_seed(seed: int, configs: dict, runs_dir: str, quiet: bool) -> dict:
    seed_dir = run_dir_for(runs_dir, "supertickets", configs) / f"seed-{seed}"
    if (seed_dir / RESULT).exists():
        return read_json(seed_dir / RESULT)
    cfg, scfg = configs["train"], configs["supertickets"]
    data = load_data(configs)
    model = model_from_config(configs["model"], data.input_shape, data.num_classes, seed=derive_seed(seed, "init"))
    supernet_costs = costs(model, Mask.ones(model), data.input_shape)
    log = (lambda message: None) if quiet else (lambda message: progress.write_line(f"seed {seed}: {message}"))
    started = time.perf_counter()
    baseline = None
    if scfg.baseline == "none":
        outcome = two_in_one(model, data, cfg, scfg, data_seed=derive_seed(seed, "data"), log=log, quiet=quiet,
                             label=f"supertickets seed {seed}")
        examples = outcome.train_examples
    else:
        model, outcome = searched_network(seed, configs, runs_dir, quiet, data)
        baseline = baseline_prune(model, data, outcome.state, scfg, seed)
        examples = outcome.train_examples + baseline["examples_used"]
    # A baseline's pipeline costs its (possibly shared, earlier) search plus its scoring.
    found_seconds = (outcome.wall_time_seconds + baseline["wall_time_seconds"]) if baseline else time.perf_counter() - started
    if scfg.search:
        model.architecture = {**model.architecture, "paths": path_widths(model)}
    mask = outcome.state.full_mask(model)
    recalibrate_batchnorm(model, data, scfg.calibration_batches, cfg.batch_size, derive_seed(seed, "calibration"))
    found = {**accuracy(model, data), **costs(model, mask, data.input_shape)}
    result = {"seed": seed, "method": method_name(scfg), "density": outcome.state.density(),
              "target_density": scfg.density, "found": found, "supernet_costs": supernet_costs,
              "paths": path_widths(model) if scfg.search else None, "search_examples": outcome.train_examples,
              "search_iterations": outcome.iterations, "baseline": baseline,
              "revived_weights": sum(e.get("revived", 0) for e in outcome.events)}
    retrain_summary = None
    if train_length(scfg.retrain) > 0:
        retrain_cfg = dataclasses.replace(cfg, steps=scfg.retrain, milestones="", warmup="0it")
        retrain_summary = train(model, data, retrain_cfg, out_dir=seed_dir / "retrain", mask=mask,
                                data_seed=derive_seed(seed, "retrain"), quiet=quiet, label=f"retrain seed {seed}")
        examples += retrain_summary["train_examples"]
        result["retrained"] = {"test_accuracy": retrain_summary["test_accuracy"],
                               "val_accuracy": retrain_summary["val_accuracy"],
                               "early_stop_test_accuracy": retrain_summary["early_stop_test_accuracy"]}
    retrain_seconds = retrain_summary["wall_time_seconds"] if retrain_summary else 0.0
    result.update(train_examples=examples, find_seconds=found_seconds, wall_time_seconds=found_seconds + retrain_seconds)
    init_state = {k: v * mask[k] if k in mask.tensors else v for k, v in outcome.init_state.items()}
    provenance = Provenance(dataset=configs["data"].dataset, data_config=configs["data"], train_config=cfg,
                            method=result["method"], seed=seed, init_seed=derive_seed(seed, "init"),
                            data_seed=derive_seed(seed, "data"), rewind_step=0,
                            metrics={**found, **({"retrained": result["retrained"]} if retrain_summary else {})},
                            extra={"supertickets_config": vars(scfg).copy(), "ticket_density": result["density"]})
    seed_dir.mkdir(parents=True, exist_ok=True)
    write_json(seed_dir / "events.json", outcome.events)
    ticket_path = seed_dir / TICKET
    Ticket(model.architecture, mask, init_state, model.state_dict(), provenance).save(ticket_path)
    result["ticket"] = str(ticket_path)
    write_json(seed_dir / RESULT, result)
    return result


def train_length(spec: str) -> int:
    """Iterations of a length spec where epochs count as positive (only zero matters here)."""
    return to_iterations(spec, 1, "retrain")


def summarize(rows: list[dict]) -> dict:
    out = {"method": rows[0]["method"], "target_density": rows[0]["target_density"]}
    for key in ("test_accuracy", "flops", "architecture_flops", "parameters", "live_parameters"):
        out[key], out[f"{key}_std"] = mean_std([r["found"][key] for r in rows])
    if all("retrained" in r for r in rows):
        out["retrained_test_accuracy"], out["retrained_test_accuracy_std"] = mean_std(
            [r["retrained"]["test_accuracy"] for r in rows])
    out["density"] = mean_std([r["density"] for r in rows])[0]
    out["train_examples"] = mean_std([r["train_examples"] for r in rows])[0]
    out["wall_time_seconds"] = mean_std([r["wall_time_seconds"] for r in rows])[0]
    out["supernet_flops"] = rows[0]["supernet_costs"]["flops"]
    return out


def run_supertickets(configs: dict, seeds: list[int], runs_dir: str, quiet: bool, workers: int) -> dict:
    data = load_data(configs)
    model = model_from_config(configs["model"], data.input_shape, data.num_classes, seed=0)
    if configs["supertickets"].search and not mixed_blocks(model):
        raise TicketlabError(f"model {configs['model'].model} has no searchable blocks; use a supernet model "
                             "(see `ticketlab models`) or --no-search")
    run_dir = open_run(runs_dir, "supertickets", configs)
    if configs["supertickets"].baseline != "none":  # opened (and locked) here: the seed workers share it
        open_run(runs_dir, "supernet-search", search_configs(configs))
    per_seed = run_seeds(supertickets_seed, seeds, workers, configs, runs_dir, quiet)
    rows = [per_seed[s] for s in seeds]
    result = {"kind": "supertickets", "run_dir": str(run_dir), "seeds": seeds,
              "per_seed": {str(s): per_seed[s] for s in seeds}, "tickets": [r["ticket"] for r in rows],
              **summarize(rows)}
    write_json(run_dir / "summary.json", result)
    return result


# ---- transfer --------------------------------------------------------------------------------

def transferred_model(ticket: Ticket, data, seed: int):
    """The ticket's architecture and weights for another dataset: a new, seeded classifier head."""
    channels = ticket.architecture["input_shape"][0]
    if len(data.input_shape) != 3 or data.input_shape[0] != channels:
        raise TicketlabError(f"the ticket takes images with {channels} channel(s) but {data.name} has inputs of shape "
                             f"{tuple(data.input_shape)}; transfer to an image dataset with {channels} channel(s)")
    arch = {**ticket.architecture, "input_shape": list(data.input_shape), "num_classes": data.num_classes}
    model = model_from_architecture(arch, seed=derive_seed(seed, "transfer-head"))
    head = model.output_name.rpartition(".")[0]
    state = ticket.trained_state if ticket.trained_state is not None else ticket.init_state
    body = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    missing, unexpected = model.load_state_dict(body, strict=False)
    if unexpected or any(not k.startswith(head + ".") for k in missing):
        raise TicketlabError("the ticket's weights do not fit its architecture; the ticket file may be damaged")
    return model


def transferred_mask(ticket: Ticket, model) -> Mask:
    """The ticket's mask on the body; the new head is whole."""
    params = dict(model.named_parameters())
    return Mask({n: ticket.mask[n] if n != model.output_name and n in ticket.mask.tensors
                 else torch.ones_like(params[n], dtype=torch.bool) for n in model.prunable_names})


def transfer_seed(seed: int, ticket_path: str, configs: dict, runs_dir: str, quiet: bool) -> dict:
    """Keep the ticket's architecture and mask, replace the head, fine-tune on another task with the mask fixed."""
    seed_dir = run_dir_for(runs_dir, "transfer", configs) / f"seed-{seed}"
    if (seed_dir / RESULT).exists():
        return read_json(seed_dir / RESULT)
    ticket = load_ticket(ticket_path)
    data = load_data_config(configs["data"])
    model = transferred_model(ticket, data, seed)
    mask = transferred_mask(ticket, model)
    mask.apply_(model)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    summary = train(model, data, configs["train"], out_dir=seed_dir, mask=mask, data_seed=derive_seed(seed, "data"),
                    quiet=quiet, label=f"transfer seed {seed}")
    source = ticket.provenance
    provenance = Provenance(dataset=configs["data"].dataset, data_config=configs["data"], train_config=configs["train"],
                            method=f"transfer:{source.method or 'ticket'}", seed=seed, rewind_step=0, metrics=summary,
                            extra={"transfer_source": str(ticket_path), "source_dataset": source.dataset})
    ticket_out = seed_dir / TICKET
    Ticket(model.architecture, mask, start, model.state_dict(), provenance).save(ticket_out)
    result = {"seed": seed, "ticket": str(ticket_out), "source_ticket": str(ticket_path),
              "source_dataset": source.dataset, "dataset": configs["data"].dataset,
              "method": provenance.method, "test_accuracy": summary["test_accuracy"],
              "early_stop_test_accuracy": summary["early_stop_test_accuracy"], "density": mask.density(),
              "train_examples": summary["train_examples"], **costs(model, mask, data.input_shape)}
    write_json(seed_dir / RESULT, result)
    return result


def run_transfer(ticket_path: str, configs: dict, seeds: list[int], runs_dir: str, quiet: bool, workers: int) -> dict:
    ticket = load_ticket(ticket_path)
    transferred_model(ticket, load_data_config(configs["data"]), 0)  # a mismatch fails before any directory exists
    configs = {**configs, "source": TransferSource(ticket_checksum=read_metadata(ticket_path)["checksum"])}
    run_dir = open_run(runs_dir, "transfer", configs)
    per_seed = run_seeds(transfer_seed, seeds, workers, ticket_path, configs, runs_dir, quiet)
    rows = [per_seed[s] for s in seeds]
    accuracy_mean, accuracy_std = mean_std([r["test_accuracy"] for r in rows])
    result = {"kind": "transfer", "run_dir": str(run_dir), "seeds": seeds, "source_ticket": str(ticket_path),
              "dataset": configs["data"].dataset, "per_seed": {str(s): per_seed[s] for s in seeds},
              "tickets": [r["ticket"] for r in rows], "test_accuracy": accuracy_mean, "test_accuracy_std": accuracy_std,
              "flops": rows[0]["flops"], "live_parameters": rows[0]["live_parameters"], "density": rows[0]["density"]}
    write_json(run_dir / "summary.json", result)
    return result
