"""The `ticketlab` command line: one subcommand per job; options come from the config dataclasses.

User mistakes end as one line on stderr and exit code 2; with --json a command prints exactly one
JSON object on stdout and sends progress and logs to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from ticketlab.config import DataConfig, ModelConfig, PruneConfig, TrainConfig, validate_prune, validate_train
from ticketlab.errors import TicketlabError

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "prune": PruneConfig}

# The main job's recipe: LeNet-300-100 on Fashion-MNIST with the LTH paper's optimizer (Adam 1.2e-3,
# batch 60), shortened so that 8 levels and their controls finish in a few minutes on 2 CPU cores.
DEMO_DEFAULTS = {
    "train": TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, steps="6000it", eval_every="100it"),
    "prune": PruneConfig(levels=7, prune_fraction=0.2, strategy="global"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other user mistake
        self.exit(2, f"ticketlab {self.prog.split(' ', 1)[-1]}: error: {message}; see --help\n")


def add_config_options(parser: argparse.ArgumentParser, section: str, defaults=None) -> None:
    cls = SECTIONS[section]
    defaults = defaults or cls()
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{section} options")
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        kind = hints[f.name]
        if kind is bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                               help=f.metadata["help"].replace("%", "%%"))
            continue
        base = next(t for t in typing.get_args(kind) if t is not type(None)) if typing.get_args(kind) else kind
        group.add_argument(flag, dest=f.name, type=base, default=default, choices=f.metadata.get("choices"),
                           help=f.metadata["help"].replace("%", "%%"))


def configs_from_args(args: argparse.Namespace, sections: list[str]) -> dict[str, object]:
    return {s: SECTIONS[s](**{f.name: getattr(args, f.name) for f in dataclasses.fields(SECTIONS[s])})
            for s in sections}


def add_common_options(parser: argparse.ArgumentParser, runs: bool = True) -> None:
    if runs:
        parser.add_argument("--seed", type=int, default=0, help="seed for initialization, data order and pruning")
        parser.add_argument("--runs-dir", default="runs", help="where run directories are created")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object with the results on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def emit(args: argparse.Namespace, result: dict, text: str) -> None:
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(text)


def log(message: str) -> None:
    print(message, file=sys.stderr)


# ---- commands -------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from ticketlab.jobs import run_train
    configs = configs_from_args(args, ["data", "model", "train"])
    validate_train(configs["train"])
    result = run_train(configs, args.seed, args.runs_dir, quiet=args.quiet or args.json, log=log)
    summary = result["summary"]
    emit(args, result, f"test accuracy {summary['test_accuracy']:.4f}, early-stop iteration "
                       f"{summary['early_stop_iteration']}; run in {result['run_dir']}")
    return 0


def cmd_imp(args, kind: str = "imp") -> int:
    from ticketlab.jobs import run_imp_job
    from ticketlab.report import level_table
    configs = configs_from_args(args, ["data", "model", "train", "prune"])
    validate_train(configs["train"])
    validate_prune(configs["prune"])
    result = run_imp_job(kind, configs, args.seed, args.runs_dir, quiet=args.quiet or args.json, log=log,
                         reinit_control=(kind == "demo"))
    text = level_table(result["levels"]) + f"\n\nrun directory: {result['run_dir']}"
    if kind == "demo":
        text += f"\nreport: {result['report']}\nplot: {result['plot']}"
    emit(args, result, text)
    return 0


def cmd_show(args) -> int:
    from ticketlab.ticket import read_metadata, load_ticket
    load_ticket(args.ticket)  # validates the whole file, not only its header
    meta = read_metadata(args.ticket)
    meta.pop("mask_shapes", None)
    lines = [f"ticket {args.ticket}",
             f"  model {meta['architecture']['name']} on {meta.get('dataset')}, method {meta.get('method')}, "
             f"level {meta.get('level')}, seed {meta.get('seed')}, rewind step {meta.get('rewind_step')}",
             f"  density {meta['density']:.4f} ({meta['kept']} of {meta['prunable']} prunable weights)"]
    lines += [f"    {name:40s} {d:.4f}" for name, d in meta["layers"].items()]
    metrics = meta.get("metrics") or {}
    if metrics:
        lines.append(f"  test accuracy {metrics.get('test_accuracy')}, early-stop iteration {metrics.get('early_stop_iteration')}")
    emit(args, meta, "\n".join(lines))
    return 0


def cmd_models(args) -> int:
    from ticketlab.models import describe_models
    rows = describe_models()
    emit(args, {"models": [{"name": n, "description": d} for n, d in rows]},
         "\n".join(f"{n:24s} {d}" for n, d in rows))
    return 0


def cmd_datasets(args) -> int:
    from ticketlab.data import DATASETS
    rows = [(name, entry.description) for name, entry in DATASETS.items()]
    emit(args, {"datasets": [{"name": n, "description": d} for n, d in rows]},
         "\n".join(f"{n:18s} {d}" for n, d in rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ticketlab", formatter_class=HelpFormatter,
                    description="Find, test, compress and protect lottery tickets.")
    parser.add_argument("--version", action="version", version=f"ticketlab {__import__('ticketlab').__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(name, handler, help, description):
        sub = commands.add_parser(name, help=help, description=description, formatter_class=HelpFormatter)
        sub.set_defaults(handler=handler)
        return sub

    sub = command("demo", lambda a: cmd_imp(a, "demo"), "the main job: an IMP winning ticket of LeNet-300-100 on Fashion-MNIST with reinit controls",
                  "Iterative magnitude pruning with reset to initialization, 7 levels at 20% (down to 21% of "
                  "weights), a random-reinitialization control at every level, a table, report.md and a plot.")
    for section in ("data", "model", "train", "prune"):
        add_config_options(sub, section, DEMO_DEFAULTS.get(section))
    add_common_options(sub)

    sub = command("train", cmd_train, "train a dense network", "Train a dense network with the given recipe; "
                  "writes metrics, checkpoints and a density-1 ticket into a resumable run directory.")
    for section in ("data", "model", "train"):
        add_config_options(sub, section)
    add_common_options(sub)

    sub = command("imp", cmd_imp, "iterative magnitude pruning (LTH; LTR with --rewind-step)",
                  "Train, prune a fraction of the surviving weights by magnitude, rewind the survivors to θ_k, "
                  "repeat. Each level writes a ticket file.")
    for section in ("data", "model", "train", "prune"):
        add_config_options(sub, section)
    add_common_options(sub)

    sub = command("show", cmd_show, "summarize a ticket file", "Print a ticket's model, method, densities and metrics.")
    sub.add_argument("ticket", help="path of a ticket.safetensors file")
    add_common_options(sub, runs=False)

    sub = command("models", cmd_models, "list the known models", "List the model names ticketlab can build.")
    add_common_options(sub, runs=False)
    sub = command("datasets", cmd_datasets, "list the known datasets", "List the datasets ticketlab can load.")
    add_common_options(sub, runs=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except TicketlabError as exc:
        print(f"ticketlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ticketlab: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
