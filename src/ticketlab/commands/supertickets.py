"""The SuperTickets commands: supertickets (architecture and ticket in one training), transfer, frontier."""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.commands.spec import Command, Json, Replicates, Runs, announce, arg, seed_list
from ticketlab.config import ModelConfig, TrainConfig, validate_train
from ticketlab.runtime import checked_data, default_workers
from ticketlab.supertickets.config import validate_super
from ticketlab.supertickets.frontier import frontier_table, write_frontier
from ticketlab.supertickets.jobs import run_supertickets, run_transfer

# SuperTickets' recipe: SGD with momentum, as for the paper's supernets, short enough for a CPU.
SUPERTICKETS_DEFAULTS = {
    "model": ModelConfig(model="supernet"),
    "train": TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-5, batch_size=128, steps="10ep"),
}


@dataclass(kw_only=True)
class SuperOptions(Replicates, Runs):
    """Options of supertickets: seeds, workers and where runs go."""


def supertickets(configs: dict, options: SuperOptions, log) -> dict:
    validate_train(configs["train"])
    validate_super(configs["supertickets"])
    seeds = seed_list(options)
    checked_data(configs)
    announce(configs["train"], log)
    return run_supertickets(configs, seeds, options.runs_dir, options.silent, options.workers or default_workers(seeds))


def supertickets_text(result: dict, options) -> str:
    def pm(key):
        return f"{100 * result[key]:.2f} ± {100 * (result[key + '_std'] or 0):.2f} %"
    lines = [f"{result['method']} at density {result['target_density']:g} over seeds {result['seeds']} "
             f"(run {result['run_dir']})",
             f"  test accuracy, found      {pm('test_accuracy')}"]
    if result.get("retrained_test_accuracy") is not None:
        lines.append(f"  test accuracy, retrained  {pm('retrained_test_accuracy')}")
    lines += [f"  FLOPs per example         {result['flops'] / 1e6:.2f} M at the mask, "
              f"{result['architecture_flops'] / 1e6:.2f} M dense shrunk architecture, "
              f"{result['supernet_flops'] / 1e6:.2f} M supernet",
              f"  parameters                {result['live_parameters']:,.0f} live of {result['parameters']:,.0f}",
              f"  training examples         {result['train_examples']:,.0f}"]
    return "\n".join(lines + [f"  ticket (seed {s}): {t}" for s, t in zip(result["seeds"], result["tickets"])])


@dataclass(kw_only=True)
class TransferOptions(SuperOptions):
    ticket: str = arg(help="ticket file (e.g. from `ticketlab supertickets`)", positional=True)


def transfer(configs: dict, options: TransferOptions, log) -> dict:
    validate_train(configs["train"])
    seeds = seed_list(options)
    checked_data(configs, data_config=configs["data"])
    announce(configs["train"], log)
    return run_transfer(options.ticket, configs, seeds, options.runs_dir, options.silent,
                        options.workers or default_workers(seeds))


def transfer_text(result: dict, options: TransferOptions) -> str:
    return (f"transfer of {options.ticket} to {result['dataset']}: test accuracy {100 * result['test_accuracy']:.2f} ± "
            f"{100 * (result['test_accuracy_std'] or 0):.2f} % at density {result['density']:.4f}, "
            f"{result['flops'] / 1e6:.2f} MFLOPs per example (run {result['run_dir']})")


@dataclass(kw_only=True)
class FrontierOptions(Json):
    runs: list[str] = arg(help="run directories (runs/supertickets-<hash>)", positional=True, nargs="+")
    out: str = arg(help="folder for the table and plot", writes="folder")


def frontier(configs: dict, options: FrontierOptions, log) -> dict:
    return write_frontier(options.runs, options.out)


COMMANDS = (
    Command("supertickets", "SuperTickets: search an architecture and its ticket in one training",
            "Two-in-one training of a supernet: task loss plus a FLOPs-weighted L1 on the depthwise BN scales (ρ "
            "warmed up linearly), channels with |γ| <= threshold removed physically every --shrink-interval, global "
            "magnitude pruning with reactivation every --prune-interval down to --density. Ablations and "
            "search-then-prune baselines (--baseline) by option; --retrain fine-tunes with the mask fixed.",
            SuperOptions, supertickets, supertickets_text, sections=("data", "model", "train", "supertickets"),
            defaults=SUPERTICKETS_DEFAULTS),
    Command("transfer", "reuse a ticket on another dataset: new head, mask fixed",
            "Keep the ticket's architecture, weights and mask, replace the classifier head for the new dataset's "
            "classes, and fine-tune with the mask fixed.",
            TransferOptions, transfer, transfer_text, sections=("data", "train"), defaults=SUPERTICKETS_DEFAULTS),
    Command("frontier", "accuracy vs effective cost of SuperTickets runs: table and plot",
            "Read `ticketlab supertickets` run directories and write frontier.md, frontier.png and frontier.json: "
            "test accuracy (found and retrained) against FLOPs per example at the mask.",
            FrontierOptions, frontier,
            lambda result, options: frontier_table(result["points"]) + f"\nplot: {result['plot']}"),
)
