"""The pruning-at-initialization and CTS commands: prune, cts, train-ticket, pai (methods × densities × seeds), sanity."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ticketlab import checks
from ticketlab.commands.spec import Command, Replicates, Runs, announce, arg, seed_list
from ticketlab.config import PaiConfig, validate_density, validate_pai, validate_train
from ticketlab.cts.config import validate_config as validate_cts
from ticketlab.errors import TicketlabError
from ticketlab.pai.jobs import check_method, check_pai_request, prune_seed, run_pai_sweep, run_train_ticket
from ticketlab.pai.sanity import check_sanity_request, run_sanity, sanity_table
from ticketlab.runs import open_run
from ticketlab.runtime import checked_data, default_workers, load_data_config
from ticketlab.ticket import load_ticket, read_metadata

PAI_SECTIONS = ("data", "model", "train", "pai", "cts")
AT_INIT = ("0it", "0ep", "0")


def check_configs(configs: dict) -> None:
    """A recipe about to train here, and the PaI and CTS settings."""
    validate_train(configs["train"])
    validate_pai(configs["pai"])
    validate_cts(configs["cts"])


# ---- prune and cts ----------------------------------------------------------------------------------

@dataclass(kw_only=True)
class PruneOptions(Runs):
    at: str | None = arg(None, "score at initialization (same as --rewind-step 0it)", choices=("init",))


def prune(configs: dict, options: Runs, log) -> dict:
    """One method's ticket at one density (`cts` runs this with --method cts and no --at)."""
    check_configs(configs)
    pai = configs["pai"]
    check_method(pai.method)
    if getattr(options, "at", None) == "init" and pai.rewind_step not in AT_INIT:
        raise TicketlabError("--at init and --rewind-step conflict; give one of them")
    data, model = checked_data(configs, {"--rewind-step": pai.rewind_step})
    check_pai_request(configs, data, model, pai.method, pai.density)
    announce(configs["train"], log)
    open_run(options.runs_dir, "prune", configs)
    path = prune_seed(options.seed, configs, data, options.runs_dir, options.silent)
    meta = read_metadata(path)
    return {"ticket": str(path), "run_dir": str(path.parent), "method": meta["method"], "density": meta["density"],
            "layers": meta["layers"], "collapsed_layers": meta["collapsed_layers"], "search_cost": meta["search_cost"]}


def prune_text(result: dict, options) -> str:
    collapsed = f"; layer collapse: {', '.join(result['collapsed_layers'])}" if result["collapsed_layers"] else ""
    return f"{result['method']} ticket at density {result['density']:.5f}: {result['ticket']}{collapsed}"


# ---- train-ticket ---------------------------------------------------------------------------------

@dataclass(kw_only=True)
class TrainTicketOptions(Runs):
    ticket: str = arg(help="ticket file", positional=True)
    data_root: str | None = arg(None, "folder holding datasets, if not where the ticket's run found them")


def train_ticket(configs: dict, options: TrainTicketOptions, log) -> dict:
    ticket = load_ticket(options.ticket)
    if ticket.provenance.train_config is None or ticket.provenance.data_config is None:
        raise TicketlabError(f"{options.ticket} records no training recipe; give one with the train options")
    recipe = dataclasses.replace(ticket.recipe(), **configs["train"])
    validate_train(recipe)
    data_config = ticket.data_config()
    if options.data_root:
        data_config = dataclasses.replace(data_config, data_root=options.data_root)
    announce(recipe, log)
    return run_train_ticket(Path(options.ticket), recipe, lambda: load_data_config(data_config), options.runs_dir,
                            options.silent)


def train_ticket_text(result: dict, options) -> str:
    s = result["summary"]
    return (f"test accuracy {s['test_accuracy']:.4f}, early-stop iteration {s['early_stop_iteration']} "
            f"(test accuracy there {s['early_stop_test_accuracy']:.4f}); trained ticket {result['ticket']}")


# ---- pai: methods × densities × seeds ------------------------------------------------------------------

@dataclass(kw_only=True)
class PaiOptions(Replicates, Runs):
    methods: str = arg("snip,grasp,synflow", "comma-separated methods (cts included)")
    densities: str = arg("0.1,0.036,0.012", "comma-separated densities")
    seeds: str = arg("0", "comma-separated seeds", rank=3)
    workers: int | None = arg(None, "parallel processes for seeds (default: up to the cores)", rank=4)

    def check(self):
        checks.text("--methods", self.methods)
        checks.text("--densities", self.densities)


def pai_sweep(configs: dict, options: PaiOptions, log) -> dict:
    validate_train(configs["train"])
    validate_cts(configs["cts"])
    methods = [m.strip() for m in options.methods.split(",") if m.strip()]
    try:
        densities = [float(d) for d in options.densities.split(",") if d.strip()]
    except ValueError:
        raise TicketlabError(f"bad --densities {options.densities!r}: give numbers in (0, 1] separated by commas") from None
    for density in densities:
        validate_density(density, "--densities")
    validate_pai(configs["pai"])
    seeds = seed_list(options)
    if not methods or not densities:
        raise TicketlabError("give at least one method (--methods snip,grasp) and one density (--densities 0.1)")
    for name, values in (("--methods", methods), ("--densities", densities)):
        if len(set(values)) != len(values):
            raise TicketlabError(f"{name} {getattr(options, name[2:])} lists a value twice; give each once")
    for method in methods:
        check_method(method)
    data, model = checked_data(configs, {"--rewind-step": configs["pai"].rewind_step})
    for method in methods:
        for density in densities:
            check_pai_request(configs, data, model, method, density, "--densities")
    announce(configs["train"], log)
    return run_pai_sweep(configs, methods, densities, seeds, options.runs_dir, options.silent,
                         options.workers or default_workers(seeds), log)


def pai_text(result: dict, options) -> str:
    lines = [f"{'method':12s} {'density':>9s} {'test acc':>17s} {'early stop':>15s}  collapsed layers"]
    for r in result["results"]:
        lines.append(f"{r['method']:12s} {r['density']:9.5f} {r['test_accuracy']:.4f} ± {r['test_accuracy_std']:.4f} "
                     f"{r['early_stop_iteration']:8.0f} ± {r['early_stop_iteration_std']:4.0f}  "
                     f"{', '.join(r['collapsed_layers']) or '—'}")
    return "\n".join(lines)


# ---- sanity ------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class SanityOptions(Replicates, Runs):
    seeds: str = arg("0,1,2", "comma-separated seeds (≥ 2 for a verdict)", rank=3)
    workers: int | None = arg(None, "parallel processes for seeds (default: up to the cores)", rank=4)
    imp_schedule: str | None = arg(None, "imp/ltr only: density schedule of the IMP run, containing --density "
                                         "(default: 20% per level down to --density)")


def sanity(configs: dict, options: SanityOptions, log) -> dict:
    check_configs(configs)
    seeds = seed_list(options)
    check_sanity_request(configs, options.imp_schedule)
    announce(configs["train"], log)
    return run_sanity(configs, seeds, options.runs_dir, options.silent, options.workers or default_workers(seeds),
                      schedule=options.imp_schedule)


COMMANDS = (
    Command("prune", "prune at initialization (or at θ_k) with one method; writes a ticket",
            "Score every prunable weight of θ₀ (or of θ_k after k iterations of dense training) with a "
            "pruning-at-initialization method and keep exactly density·d weights (see `ticketlab methods`).",
            PruneOptions, prune, prune_text, sections=PAI_SECTIONS),
    Command("cts", "Concrete Ticket Search (CTS, CTS-KL): a ticket by optimizing the mask",
            "Train one logit per prunable weight (weights frozen at θ_k) through a binary Concrete relaxation on "
            "the reverse KL to the dense net (--objective kl, CTS-KL) or the task loss (CTS), with GradBalance "
            "holding the expected density at 1.1·κ·d; keep exactly the top κ·d logits.",
            Runs, prune, prune_text, sections=PAI_SECTIONS, defaults={"pai": PaiConfig(method="cts")},
            skip={"pai": ("method", "score_batches", "score_batch_size", "iterations", "min_per_layer")}),
    Command("train-ticket", "train a ticket with the recipe it records (or one given)",
            "Train any ticket file from its rewind step with the recipe stored in it; train options given here "
            "replace the stored ones. Same metrics as imp.",
            TrainTicketOptions, train_ticket, train_ticket_text, sections=("train",), overrides=("train",)),
    Command("pai", "run pruning-at-initialization methods across densities and seeds",
            "Prune and train every method at every density for every seed (each a resumable prune run) and print "
            "accuracy mean ± std and layer collapse.",
            PaiOptions, pai_sweep, pai_text, sections=PAI_SECTIONS, skip={"pai": ("method", "density")}),
    Command("sanity", "sanity checks: ticket vs layer-wise shuffle, reinit and inversion",
            "Train a method's ticket and its ablations (layer-wise shuffle, reinitialization, inversion by the "
            "method's own score) over seeds. Each ablation is compared with the ticket seed by seed (paired t-test, "
            "95% interval of the loss; exact sign and Wilcoxon tests beside it): supported (the ablation loses "
            "accuracy) when the interval lies above 0, not supported when it lies below +1 pp, inconclusive "
            "otherwise, with one seed, or when the ticket did not train. --json gives each ablation's paired "
            "statistics and the rule. --method also takes imp, ltr and cts.",
            SanityOptions, sanity, lambda result, options: sanity_table(result), sections=PAI_SECTIONS),
)
