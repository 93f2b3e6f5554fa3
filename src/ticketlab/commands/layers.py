"""The structured-ticket commands: layers (whole residual blocks removed), filters (matched filter count), robustness."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ticketlab import checks
from ticketlab.commands.spec import Alias, Command, Json, Replicates, Runs, Seed, announce, arg, seed_list
from ticketlab.config import FILTER_MATCHES, ModelConfig, validate_layers, validate_train
from ticketlab.errors import TicketlabError
from ticketlab.layers.jobs import filter_configs, robustness_job, run_structured
from ticketlab.runtime import checked_data, default_workers
from ticketlab.ticket import load_ticket


@dataclass(kw_only=True)
class StructuredOptions(Replicates, Runs):
    power_watts: float = arg(65.0, "power figure for the energy estimate (training time × watts), an assumption")

    def check(self):
        checks.positive("--power-watts", self.power_watts)


def layers(configs: dict, options: StructuredOptions, log) -> dict:
    validate_train(configs["train"])
    validate_layers(configs["layers"])
    seeds = seed_list(options)
    checked_data(configs)
    announce(configs["train"], log)
    return run_structured("layers", configs, seeds, options.runs_dir, options.silent,
                          options.workers or default_workers(seeds), options.power_watts)


@dataclass(kw_only=True)
class FilterOptions(StructuredOptions):
    match_ticket: str = arg(help="a layer ticket of the run to match: each seed's filter ticket is matched to the "
                                 "same seed's layer ticket of that run (seed-<s>/ticket.safetensors beside it)")
    criterion: str = arg("snip", "filter score", choices=("snip", "grasp", "magnitude", "random"))
    match: str = arg("flops", "what is matched, at most the layer ticket's: flops (FLOPs per example), params "
                              "(parameters) or filters (convolution filters)", choices=FILTER_MATCHES)
    data_root: str | None = arg(None, "folder holding datasets")


def filters(configs: dict, options: FilterOptions, log) -> dict:
    layer = load_ticket(options.match_ticket)
    if layer.provenance.original_architecture is None:
        raise TicketlabError(f"{options.match_ticket} is not a layer ticket; give one written by `ticketlab layers`")
    data = layer.data_config()
    if options.data_root:
        data = dataclasses.replace(data, data_root=options.data_root)
    base = {"data": data, "model": ModelConfig(model=layer.provenance.original_architecture["name"]),
            "train": layer.recipe()}
    seeds = seed_list(options)
    return run_structured("filters", filter_configs(base, options.match_ticket, options.criterion, options.match, seeds),
                          seeds,
                          options.runs_dir, options.silent, options.workers or default_workers(seeds),
                          options.power_watts)


def structured_text(result: dict, options) -> str:
    def pm(key, scale=100.0, spec=".2f"):
        return f"{scale * result[key]:{spec}} ± {scale * (result[key + '_std'] or 0):{spec}}"
    lines = [f"{result['kind']} tickets over seeds {result['seeds']} (run {result['run_dir']})"]
    if result.get("match"):
        lines.append(f"  matched by {result['match']} to the same seed's layer ticket: "
                     + ", ".join(f"seed {s}: {r['match_value']:,} of {r['match_target']:,}"
                                 for s, r in result["per_seed"].items()))
    lines += [
              f"  test accuracy      {pm('test_accuracy')} %   (dense {pm('dense_test_accuracy')} %)",
              f"  parameters         {result['ticket_parameters']:,.0f} vs {result['dense_parameters']:,.0f} dense "
              f"({pm('parameters_saved')} % saved)",
              f"  FLOPs per example  {result['ticket_flops']:,.0f} vs {result['dense_flops']:,.0f} dense "
              f"({pm('flops_saved')} % saved)",
              f"  conv filters       {result['ticket_conv_filters']:,.0f} vs {result['dense_conv_filters']:,.0f} dense",
              f"  training time      {result['ticket_training_seconds']:.1f} s vs {result['dense_training_seconds']:.1f} s "
              f"dense (speedup {pm('training_speedup', 1.0)}×, measured)",
              f"  energy (estimate)  {result['ticket_energy_wh_estimate']:.3f} Wh vs "
              f"{result['dense_energy_wh_estimate']:.3f} Wh dense, assuming {result['power_watts_assumed']:g} W"]
    return "\n".join(lines + [f"  ticket (seed {s}): {t}" for s, t in zip(result["seeds"], result["tickets"])])


@dataclass(kw_only=True)
class RobustnessOptions(Seed, Json):
    tickets: list[str] = arg(help="ticket files, made on the same data", positional=True, nargs="+", metavar="TICKET")
    dense: str | None = arg(None, "ticket file of the dense network (default: the one the tickets record)")
    data_root: str | None = arg(None, "folder holding datasets")
    seed: int = arg(0, "seed of the noise and shift draws", rank=1)


def robustness(configs: dict, options: RobustnessOptions, log) -> dict:
    return robustness_job(options.tickets, options.dense, options.data_root, options.seed)


def robustness_text(result: dict, options) -> str:
    labels = [f"T{i + 1}" for i in range(len(result["tickets"]))]
    lines = [f"{label}: {path}" for label, path in zip(labels, result["tickets"])] + [f"dense: {result['dense']}"]
    lines.append(f"{'corruption':16s} {'severity':>8s} {'dense':>8s} "
                 + " ".join(f"{label:>8s} {'Δ':>7s}" for label in labels))
    for row in result["rows"]:
        lines.append(f"{row['corruption']:16s} {row['severity']:8d} {100 * row['dense']:8.2f} "
                     + " ".join(f"{100 * acc:8.2f} {100 * (acc - row['dense']):+7.2f}" for acc in row["tickets"]))
    return "\n".join(lines)


COMMANDS = (
    Command("layers", "layer tickets: remove whole residual blocks at initialization",
            "Score every removable residual block (identity shortcut) of a ResNet at θ₀, remove the p lowest, "
            "rebuild a shallower network holding θ₀ and train it with the dense recipe; compare parameters, FLOPs, "
            "measured training time and an energy estimate with the dense network (trained once, reused).",
            StructuredOptions, layers, structured_text, sections=("data", "model", "train", "layers"),
            defaults={"model": ModelConfig(model="resnet20")},
            aliases=(Alias("after_training", "layers", "at", const="after-training",
                           help="same as --at after-training"),)),
    Command("filters", "filter tickets matched seed by seed to layer tickets by FLOPs, parameters or filters",
            "For each seed, remove the lowest-scored internal filters of every residual block until the network "
            "costs at most what the same seed's layer ticket costs (--match flops, params or filters: the fewest "
            "removals that get there), rebuild it physically narrower from θ₀ and train it with the layer "
            "ticket's recipe.",
            FilterOptions, filters, structured_text),
    Command("robustness", "accuracy on corrupted and shifted test sets, ticket vs dense",
            "Gaussian noise, blur and contrast at severities 1-5 and a translated test set, as batched tensor ops; "
            "the tickets next to their dense network (recorded in layer and filter tickets, or --dense), which is "
            "evaluated once for all of them.",
            RobustnessOptions, robustness, robustness_text),
)
