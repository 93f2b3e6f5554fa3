"""The commands' work, from checked configs to finished run directories.

Inputs (data, model name, densities) are checked before any directory is created, so a mistake
leaves nothing behind. A finished run prints its stored result without loading any data.
"""

from __future__ import annotations


from ticketlab.config import config_hash, derive_seed, to_dict
from ticketlab.controls import train_reinit_control
from ticketlab.data import load_dataset
from ticketlab.files import read_json, write_json
from ticketlab.imp import ImpSetup, run_imp, ticket_info
from ticketlab.models import create_model
from ticketlab.report import write_report
from ticketlab.runs import open_run, run_dir_for
from ticketlab.ticket import Ticket
from ticketlab.trainer import train
from ticketlab.mask import Mask

RESULT = "result.json"


def _load(configs):
    d = configs["data"]
    data = load_dataset(d.dataset, data_root=d.data_root, val_size=d.val_size, train_subset=d.train_subset)
    # Build once to fail early on an unknown model or one that does not fit the data.
    create_model(configs["model"].model, data.input_shape, data.num_classes, seed=0)
    return data


def _stored(seed_dir, log):
    if (seed_dir / RESULT).exists():
        log(f"{seed_dir} is finished; printing its stored result")
        return read_json(seed_dir / RESULT)
    return None


def run_train(configs: dict, seed: int, runs_dir: str, quiet: bool, log) -> dict:
    seed_dir = run_dir_for(runs_dir, "train", configs) / f"seed-{seed}"
    stored = _stored(seed_dir, log)
    if stored:
        return stored
    data = _load(configs)
    seed_dir = open_run(runs_dir, "train", configs) / f"seed-{seed}"
    model = create_model(configs["model"].model, data.input_shape, data.num_classes, seed=derive_seed(seed, "init"))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    summary = train(model, data, configs["train"], out_dir=seed_dir, data_seed=derive_seed(seed, "data"),
                    snapshot_at=0, quiet=quiet, label="train")
    ticket_path = seed_dir / "ticket.safetensors"
    Ticket(model.architecture, Mask.ones(model), initial, model.state_dict(),
           {"dataset": configs["data"].dataset, "method": "dense", "seed": seed, "rewind_step": 0,
            "train_config": vars(configs["train"]).copy(), "metrics": summary}).save(ticket_path)
    result = {"run_dir": str(seed_dir), "ticket": str(ticket_path), "summary": summary,
              "config_hash": config_hash("train", configs)}
    write_json(seed_dir / RESULT, result)
    return result


def run_imp_job(kind: str, configs: dict, seed: int, runs_dir: str, quiet: bool, log, reinit_control: bool) -> dict:
    seed_dir = run_dir_for(runs_dir, kind, configs) / f"seed-{seed}"
    stored = _stored(seed_dir, log)
    if stored:
        return stored
    data = _load(configs)
    seed_dir = open_run(runs_dir, kind, configs) / f"seed-{seed}"
    setup = ImpSetup(data, configs["data"], configs["model"], configs["train"], configs["prune"], seed, quiet)

    def after_level(level, mask, record):
        log(f"level {level}: {record['percent_remaining']:.2f}% of weights, test accuracy {record['test_accuracy']:.4f}, "
            f"early stop at iteration {record['early_stop_iteration']}")
        if reinit_control:
            control = train_reinit_control(setup, seed_dir / f"level-{level}", mask, level)
            record["reinit_test_accuracy"] = control["test_accuracy"]
            record["reinit_early_stop_iteration"] = control["early_stop_iteration"]
            record["reinit_early_stop_test_accuracy"] = control["early_stop_test_accuracy"]
            log(f"level {level} random reinit: test accuracy {control['test_accuracy']:.4f}")

    levels = run_imp(setup, seed_dir, on_level=after_level)
    result = {"run_dir": str(seed_dir), "levels": levels, "config_hash": config_hash(kind, configs)}
    if kind == "demo":
        model_name, dataset = configs["model"].model, configs["data"].dataset
        notes = [f"Iterative magnitude pruning ({configs['prune'].strategy}, {configs['prune'].prune_fraction:.0%} per level) "
                 f"of {model_name} on {dataset}, seed {seed}, rewind step {configs['prune'].rewind_step}, with a random-"
                 "reinitialization control at every level. Test accuracy is at the end of training; the early-stopping "
                 "iteration is the iteration of minimum validation loss."]
        write_report(seed_dir, f"Lottery ticket: {model_name} on {dataset}", levels, to_dict(configs), notes)
        result["report"] = str(seed_dir / "report.md")
        result["plot"] = str(seed_dir / "accuracy.png")
    write_json(seed_dir / RESULT, result)
    return result
