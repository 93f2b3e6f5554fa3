"""IMP runs and their controls, from checked configs to finished run directories (`imp`, `demo`,
`control`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ticketlab import progress
from ticketlab.config import DataConfig, ModelConfig, PruneConfig, TrainConfig, config_hash
from ticketlab.errors import TicketlabError
from ticketlab.files import read_json, write_json
from ticketlab.lth.aggregate import aggregate_levels, level_records, parse_levels, seed_dirs
from ticketlab.lth.controls import CONTROL_KINDS, MASK_CONTROLS, control_companion, train_control, trains_with_ticket
from ticketlab.lth.imp import TICKET, Companion, ImpSetup, run_imp
from ticketlab.runs import open_dir, open_run, run_dir_for
from ticketlab.runtime import RESULT, default_workers, load_data, run_seeds
from ticketlab.ticket import load_ticket

SECTION_TYPES = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "prune": PruneConfig}


# ---- imp and demo ----------------------------------------------------------------------------

def imp_seed(seed: int, kind: str, configs: dict, runs_dir: str, quiet: bool, controls: tuple[str, ...]) -> dict:
    """One seed of an IMP run (with controls at every level); stored in seed-<s>/result.json."""
    seed_dir = run_dir_for(runs_dir, kind, configs) / f"seed-{seed}"
    if (seed_dir / RESULT).exists():
        return read_json(seed_dir / RESULT)
    data = load_data(configs)
    setup = ImpSetup(data, configs["data"], configs["model"], configs["train"], configs["prune"], seed, quiet)

    def level_controls(level):
        # a shuffled or random dense mask is the dense mask: nothing to learn
        return [c for c in controls if not (level == 0 and c in MASK_CONTROLS)]

    trained = {}  # (level, control) -> summary of the controls trained together with their ticket

    def remembered(companion: Companion, key: tuple[int, str]) -> Companion:
        def finish(summary):
            companion.finish(summary)
            trained[key] = summary
        return Companion(companion.member, finish)

    def beside_ticket(level, mask):
        return [remembered(control_companion(control, setup, seed_dir, level, mask), (level, control))
                for control in level_controls(level) if trains_with_ticket(control, setup, level)]

    def after_level(level, mask, record):
        log_line = (f"seed {seed} level {level}: {record['percent_remaining']:.2f}% of weights, test accuracy "
                    f"{record['test_accuracy']:.4f}, early stop at iteration {record['early_stop_iteration']}")
        for control in level_controls(level):
            summary = trained.get((level, control)) or train_control(control, setup, seed_dir, level, mask)
            log_line += f"; {control} {summary['test_accuracy']:.4f}"
        progress.write_line(log_line)

    run_imp(setup, seed_dir, on_level=after_level, companions=beside_ticket)
    result = {"seed": seed, "run_dir": str(seed_dir), "levels": level_records(seed_dir)}
    write_json(seed_dir / RESULT, result)
    return result


def run_imp_job(kind: str, configs: dict, seeds: list[int], runs_dir: str, quiet: bool, log,
                controls: tuple[str, ...] = (), workers: int | None = None) -> dict:
    run_dir = run_dir_for(runs_dir, kind, configs)
    if not all((run_dir / f"seed-{s}" / RESULT).exists() for s in seeds):
        load_data(configs)  # check the inputs before creating anything
        open_run(runs_dir, kind, configs)
    else:
        log(f"{run_dir} is finished for seeds {seeds}; printing its stored result")
    per_seed = run_seeds(imp_seed, seeds, workers or default_workers(seeds), kind, configs, runs_dir, quiet, controls)
    levels = aggregate_levels({s: r["levels"] for s, r in per_seed.items()})
    for level in levels:
        level["ticket"] = level["tickets"][0]
        for key in ("test_accuracy", "early_stop_iteration", "early_stop_test_accuracy"):
            if f"control_random-reinit_{key}" in level:  # the demo's names for its reinit control
                level[f"reinit_{key}"] = level[f"control_random-reinit_{key}"]
    result = {"run_dir": str(run_dir), "seeds": seeds, "levels": levels, "config_hash": config_hash(kind, configs)}
    return result


# ---- controls on an existing run -------------------------------------------------------------

def open_existing_run(path: str | Path, data_root: str | None) -> tuple[Path, str, dict]:
    """The run directory, its kind and its configs, rebuilt from config.json."""
    path = Path(path)
    run_dir = path.parent if path.name.startswith("seed-") else path
    if not (run_dir / "config.json").exists():
        raise TicketlabError(f"{path} is not a ticketlab run directory (no config.json); give runs/<kind>-<hash>")
    stored = read_json(run_dir / "config.json")
    try:
        configs = {name: SECTION_TYPES[name](**values) for name, values in stored["config"].items()}
    except (KeyError, TypeError) as exc:
        raise TicketlabError(f"{run_dir}/config.json does not match this ticketlab's options ({exc})") from None
    if data_root is not None:
        configs["data"] = dataclasses.replace(configs["data"], data_root=data_root)
    if stored["kind"] not in ("imp", "demo"):
        raise TicketlabError(f"{run_dir} is a {stored['kind']} run; controls need an imp or demo run")
    return run_dir, stored["kind"], configs


def control_seed(seed: int, run_dir: Path, kind: str, configs: dict, levels: list[int], quiet: bool) -> list[dict]:
    seed_dir = run_dir / f"seed-{seed}"
    data = load_data(configs)
    setup = ImpSetup(data, configs["data"], configs["model"], configs["train"], configs["prune"], seed, quiet)
    out = []
    for level in levels:
        ticket_path = seed_dir / f"level-{level}" / TICKET
        ticket = load_ticket(ticket_path)
        summary = train_control(kind, setup, seed_dir, level, ticket.mask)
        ticket_summary = read_json(seed_dir / f"level-{level}" / "summary.json")
        out.append({"seed": seed, "level": level, "density": ticket.mask.density(),
                    "test_accuracy": summary["test_accuracy"],
                    "early_stop_iteration": summary["early_stop_iteration"],
                    "ticket_test_accuracy": ticket_summary["test_accuracy"],
                    "ticket": str(seed_dir / f"level-{level}" / f"control-{kind}" / TICKET)})
    return out


def run_control_job(path: str, kind: str, levels_spec: str, seeds: list[int] | None, data_root: str | None,
                    quiet: bool, workers: int | None) -> dict:
    if kind not in CONTROL_KINDS:
        raise TicketlabError(f"unknown control kind {kind!r}; known: {', '.join(CONTROL_KINDS)}")
    run_dir, _, configs = open_existing_run(path, data_root)
    available_seeds = seed_dirs(run_dir)
    if Path(path).name.startswith("seed-") and seeds is None:
        seeds = [int(Path(path).name[5:])]
    seeds = seeds if seeds is not None else sorted(available_seeds)
    missing = [s for s in seeds if s not in available_seeds]
    if missing or not seeds:
        raise TicketlabError(f"seed(s) {missing} not in {run_dir}; it has seeds {sorted(available_seeds)}")
    levels = {}
    for seed in seeds:
        finished = [r["level"] for r in level_records(available_seeds[seed])]
        levels[seed] = parse_levels(levels_spec, finished)
    load_data(configs)  # check the data is there before training anything
    open_dir(run_dir)
    chosen = levels[seeds[0]]
    per_seed = run_seeds(control_seed, seeds, workers or default_workers(seeds), run_dir, kind, configs, chosen, quiet)
    rows = [row for seed in seeds for row in per_seed[seed]]
    return {"run_dir": str(run_dir), "kind": kind, "seeds": seeds, "levels": chosen, "controls": rows}
