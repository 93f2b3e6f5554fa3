"""The `layers`, `filters` and `robustness` commands: structured tickets trained with the dense recipe.

`runs/layers-<hash>/seed-<s>/` (or `filters-<hash>`) holds the ticket (`ticket.safetensors`: the
rebuilt network, mask all ones, θ₀ and trained weights), its training files and `result.json`. The
dense network of the same recipe and seed is the `train` run of the same config (trained once,
reused): every ticket is compared with it on parameters, FLOPs per example, measured training time
(optimization steps only, `step_time_seconds`), and an energy estimate = that time × a power figure
(watts, an assumption the user states; labelled as an estimate everywhere).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ticketlab.config import FilterConfig, derive_seed
from ticketlab.deploy.export import ticket_model
from ticketlab.deploy.flops import count
from ticketlab.errors import TicketlabError
from ticketlab.files import read_json, write_json
from ticketlab.layers.filter_tickets import (blocks, choose_filters, conv_filters, filter_scores, narrow,
                                             removals_to_match, structure_cost)
from ticketlab.layers.layer_tickets import block_scores, check_resnet, choose_removed, removable_blocks, remove_blocks
from ticketlab.layers.robustness import robustness_table
from ticketlab.lth.aggregate import mean_std
from ticketlab.mask import Mask
from ticketlab.models import model_from_architecture, model_from_config
from ticketlab.provenance import Provenance
from ticketlab.runs import open_run, run_dir_for
from ticketlab.runtime import TICKET, load_data, load_data_config, run_seeds, run_train
from ticketlab.ticket import Ticket, load_ticket
from ticketlab.trainer import train

RESULT = "result.json"
DENSE_SECTIONS = ("data", "model", "train")


def dense_for(configs: dict, seed: int, runs_dir: str, quiet: bool) -> dict:
    """The dense network's run with the same data, model, recipe and seed (trained if missing)."""
    return run_train({k: configs[k] for k in DENSE_SECTIONS}, seed, runs_dir, quiet, log=lambda _: None)


def training_seconds(summary: dict) -> float:
    return summary.get("step_time_seconds") or summary["wall_time_seconds"]


def costs(model, summary: dict, input_shape) -> dict:
    counted = count(model, input_shape)
    return {"parameters": counted["parameters"], "flops": counted["flops"], "conv_filters": conv_filters(model),
            "training_seconds": training_seconds(summary)}


def structured_seed(seed: int, kind: str, configs: dict, runs_dir: str, quiet: bool, build) -> dict:
    """Shared by layer and filter tickets: build(θ₀ model, data, dense result) -> (small model, info)."""
    seed_dir = run_dir_for(runs_dir, kind, configs) / f"seed-{seed}"
    if (seed_dir / RESULT).exists():
        return read_json(seed_dir / RESULT)
    data = load_data(configs)
    dense_result = dense_for(configs, seed, runs_dir, quiet)
    model = model_from_config(configs["model"], data.input_shape, data.num_classes, seed=derive_seed(seed, "init"))
    small, info = build(model, data, dense_result)
    start = {k: v.clone() for k, v in small.state_dict().items()}
    summary = train(small, data, configs["train"], out_dir=seed_dir, data_seed=derive_seed(seed, "data"), quiet=quiet,
                    label=f"{kind} seed {seed}")
    dense_summary = dense_result["summary"]
    dense_model = model_from_config(configs["model"], data.input_shape, data.num_classes, seed=0)
    dense_costs, ticket_costs = costs(dense_model, dense_summary, data.input_shape), costs(small, summary, data.input_shape)
    compare = {"dense_costs": dense_costs, "ticket_costs": ticket_costs,
               "training_speedup": dense_costs["training_seconds"] / ticket_costs["training_seconds"],
               "flops_saved": 1 - ticket_costs["flops"] / dense_costs["flops"],
               "parameters_saved": 1 - ticket_costs["parameters"] / dense_costs["parameters"]}
    provenance = Provenance(dataset=configs["data"].dataset, data_config=configs["data"], train_config=configs["train"],
                            method=info["method"], seed=seed, init_seed=derive_seed(seed, "init"),
                            data_seed=derive_seed(seed, "data"), rewind_step=0, metrics=summary, costs=compare,
                            dense_ticket=dense_result["ticket"], original_architecture=model.architecture,
                            extra={k: v for k, v in info.items() if k != "method"})
    ticket_path = seed_dir / TICKET
    Ticket(small.architecture, Mask.ones(small), start, small.state_dict(), provenance).save(ticket_path)
    result = {"seed": seed, "ticket": str(ticket_path), "dense_ticket": dense_result["ticket"],
              "test_accuracy": summary["test_accuracy"], "dense_test_accuracy": dense_summary["test_accuracy"],
              "early_stop_test_accuracy": summary["early_stop_test_accuracy"], **info, **compare}
    write_json(seed_dir / RESULT, result)
    return result


def layer_seed(seed: int, configs: dict, runs_dir: str, quiet: bool) -> dict:
    cfg = configs["layers"]

    def build(model, data, dense_result):
        check_resnet(model)
        scored = model
        if cfg.at == "after-training":  # the paper's post-training variant: score trained weights, rewind to θ₀
            scored = model_from_architecture(model.architecture)
            scored.load_state_dict(load_ticket(dense_result["ticket"]).trained_state)
        scores = block_scores(scored, data, cfg.criterion, cfg.aggregate, seed=derive_seed(seed, "layers"),
                              score_batches=cfg.score_batches, batch_size=cfg.score_batch_size,
                              grasp_batches=cfg.grasp_batches)
        removed = choose_removed(model, scores, cfg.remove, cfg.min_per_stage)
        info = {"method": f"layers-{cfg.criterion}", "removed_blocks": [list(b) for b in removed],
                "block_scores": {f"{s}.{i}": v for (s, i), v in scores.items()}, "aggregate": cfg.aggregate,
                "scored_at": cfg.at}
        return remove_blocks(model, removed), info

    return structured_seed(seed, "layers", configs, runs_dir, quiet, build)


def filter_seed(seed: int, configs: dict, runs_dir: str, quiet: bool) -> dict:
    cfg = configs["filters"]

    def build(model, data, dense_result):
        scores = filter_scores(model, data, cfg.criterion, seed=derive_seed(seed, "filters"),
                               grasp_batches=cfg.grasp_batches)
        if cfg.layer_run:  # matched to this seed's layer ticket
            layer_path = layer_ticket_of_seed(cfg, seed)
            target = structure_cost(model_from_architecture(load_ticket(layer_path).architecture), data.input_shape,
                                    cfg.match)
            remove, matched = removals_to_match(model, scores, cfg.match, target, data.input_shape)
            matching = {"match": cfg.match, "match_target": target, "match_value": matched,
                        "matched_layer_ticket": str(layer_path)}
        else:  # one filter count for every seed
            remove = conv_filters(model) - cfg.target_filters
            matching = {"match": "filters", "match_target": cfg.target_filters, "match_value": cfg.target_filters}
        kept = choose_filters(scores, remove)
        small = narrow(model, kept)
        return small, {"method": f"filters-{cfg.criterion}", "removed_filters": remove,
                       "kept_filters": {p: len(k) for p, k in kept.items()}, **matching}

    return structured_seed(seed, "filters", configs, runs_dir, quiet, build)


def summarize(per_seed: dict[int, dict], seeds: list[int], power_watts: float) -> dict:
    rows = [per_seed[s] for s in seeds]
    out = {}
    for key in ("test_accuracy", "dense_test_accuracy", "early_stop_test_accuracy", "training_speedup", "flops_saved",
                "parameters_saved"):
        out[key], out[f"{key}_std"] = mean_std([r[key] for r in rows])
    for part in ("dense", "ticket"):
        for key in ("parameters", "flops", "conv_filters", "training_seconds"):
            out[f"{part}_{key}"] = mean_std([r[f"{part}_costs"][key] for r in rows])[0]
        out[f"{part}_energy_wh_estimate"] = out[f"{part}_training_seconds"] * power_watts / 3600
    out["power_watts_assumed"] = power_watts
    return out


def run_structured(kind: str, configs: dict, seeds: list[int], runs_dir: str, quiet: bool, workers: int,
                   power_watts: float) -> dict:
    """Layer tickets (configs["layers"]) or filter tickets (configs["filters"]) over seeds, with their costs."""
    if power_watts <= 0:
        raise TicketlabError(f"--power-watts must be positive, got {power_watts}")
    data = load_data(configs)
    model = check_resnet(model_from_config(configs["model"], data.input_shape, data.num_classes, seed=0))
    # Impossible requests fail here, before any directory exists: a dry run of the selection.
    if kind == "layers":
        choose_removed(model, {b: 0.0 for b in removable_blocks(model)}, configs["layers"].remove,
                       configs["layers"].min_per_stage)
    elif not configs["filters"].layer_run:
        choose_filters({p: torch.zeros(b.conv1.out_channels) for p, b in blocks(model)},
                       conv_filters(model) - configs["filters"].target_filters)
    else:
        check_filter_targets(model, configs["filters"], seeds, data.input_shape)
    run_dir = open_run(runs_dir, kind, configs)
    open_run(runs_dir, "train", {k: configs[k] for k in DENSE_SECTIONS})  # the dense runs the seed workers share
    per_seed = run_seeds(layer_seed if kind == "layers" else filter_seed, seeds, workers, configs, runs_dir, quiet)
    matched = kind == "filters" and bool(configs["filters"].layer_run)
    return {"kind": kind, "run_dir": str(run_dir), "seeds": seeds, "per_seed": {str(s): per_seed[s] for s in seeds},
            "match": configs["filters"].match if matched else None,
            "tickets": [per_seed[s]["ticket"] for s in seeds], **summarize(per_seed, seeds, power_watts)}


def check_filter_targets(model, cfg: FilterConfig, seeds: list[int], input_shape) -> None:
    """Every seed's layer ticket can be matched: the narrowest filter ticket (one filter per block, the
    same network whatever the scores) costs no more than it."""
    scores = {p: torch.zeros(b.conv1.out_channels) for p, b in blocks(model)}
    narrowest = structure_cost(narrow(model, choose_filters(scores, sum(len(v) - 1 for v in scores.values()))),
                               input_shape, cfg.match)
    for seed in seeds:
        path = layer_ticket_of_seed(cfg, seed)
        if not path.exists():
            raise TicketlabError(f"no layer ticket of seed {seed} at {path}; run `ticketlab layers` with that seed first")
        target = structure_cost(model_from_architecture(load_ticket(path).architecture), input_shape, cfg.match)
        if narrowest > target:
            raise TicketlabError(f"the layer ticket of seed {seed} costs {target:,} {cfg.match}, less than the narrowest "
                                 f"filter ticket ({narrowest:,}, one filter per block): no filter ticket matches it")


def layer_ticket_of_seed(cfg: FilterConfig, seed: int) -> Path:
    return Path(cfg.layer_run_dir) / f"seed-{seed}" / TICKET


def filter_configs(base: dict, layer_ticket: str, criterion: str, match: str = "flops",
                   seeds: list[int] | None = None) -> dict:
    """The filter-ticket run matched seed by seed to the layer tickets of `layer_ticket`'s run (the
    `seed-<s>/ticket.safetensors` beside it) by `match`; every seed's layer ticket is checked here."""
    ticket = load_ticket(layer_ticket)
    if "removed_blocks" not in ticket.provenance.extra:
        raise TicketlabError(f"{layer_ticket} is not a layer ticket (no removed blocks recorded); give one written by "
                             "`ticketlab layers`")
    run_dir = Path(layer_ticket).resolve().parent.parent
    config = FilterConfig(criterion=criterion, match=match, layer_run=run_dir.name, layer_run_dir=str(run_dir))
    for seed in seeds if seeds is not None else [ticket.provenance.seed]:
        path = layer_ticket_of_seed(config, seed)
        other = load_ticket(path) if path.exists() else None
        if other is None or other.provenance.seed != seed or "removed_blocks" not in other.provenance.extra:
            raise TicketlabError(f"no layer ticket of seed {seed} at {path}: filter tickets are matched seed by seed to "
                                 f"the layer tickets of {run_dir.name}; run `ticketlab layers` with that seed first")
        if (other.provenance.original_architecture or {}).get("name") != \
                ticket.provenance.original_architecture.get("name"):
            raise TicketlabError(f"{path} is not a ticket of the same layer run as {layer_ticket}")
    return {**base, "filters": config}


def robustness_job(ticket_paths: list[str], dense_path: str | None, data_root: str | None, seed: int) -> dict:
    """Every ticket and one dense network on the same clean, corrupted and shifted test sets (the dense
    network is evaluated once however many tickets are compared with it)."""
    tickets = [load_ticket(path) for path in ticket_paths]
    if dense_path is None:
        recorded = {ticket.provenance.dense_ticket for ticket in tickets}
        if None in recorded:
            raise TicketlabError("a ticket does not record its dense network; give one with --dense TICKET")
        if len(recorded) > 1:
            raise TicketlabError("the tickets record different dense networks (e.g. other seeds); compare them in "
                                 "separate calls or give one with --dense TICKET")
        dense_path = recorded.pop()
    if not Path(dense_path).exists():
        raise TicketlabError(f"the dense ticket {dense_path} does not exist; give one with --dense TICKET")
    data_configs = [ticket.provenance.data_config for ticket in tickets]
    unknown = [path for path, config in zip(ticket_paths, data_configs) if config is None]
    if unknown:
        raise TicketlabError(f"{unknown[0]} records no dataset; give tickets made by ticketlab's training commands")
    if any(config != data_configs[0] for config in data_configs):
        raise TicketlabError("the tickets were made on different data; compare them in separate calls")
    data_cfg = data_configs[0]
    if data_root:
        data_cfg = dataclasses.replace(data_cfg, data_root=data_root)
    dense = load_ticket(dense_path)
    data = load_data_config(data_cfg)
    for path, ticket in [*zip(ticket_paths, tickets), (dense_path, dense)]:
        shape, classes = tuple(ticket.architecture["input_shape"]), ticket.architecture["num_classes"]
        if shape != tuple(data.input_shape) or classes != data.num_classes:
            raise TicketlabError(f"{path} is a model of inputs {shape} and {classes} classes, but the tickets' data "
                                 f"({data.name}) has inputs {tuple(data.input_shape)} and {data.num_classes} classes; "
                                 "compare tickets of the same data with a dense network of the same data")
    models = {"dense": ticket_model(dense), **{index: ticket_model(ticket) for index, ticket in enumerate(tickets)}}
    rows = robustness_table(models, data.test_x, data.test_y, seed)
    return {"tickets": list(ticket_paths), "dense": dense_path,
            "rows": [{"corruption": row["corruption"], "severity": row["severity"], "dense": row["dense"],
                      "tickets": [row[index] for index in range(len(tickets))]} for row in rows]}
