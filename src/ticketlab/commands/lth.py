"""The lottery-ticket commands: demo, train (the dense network), imp, control, stability, report."""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass
from pathlib import Path

from ticketlab import checks
from ticketlab.commands.spec import Command, Output, Replicates, Runs, announce, arg, flag, seed_list
from ticketlab.config import MAX_SCORE_BATCHES, PruneConfig, validate_prune, validate_train
from ticketlab.errors import TicketlabError
from ticketlab.lth.aggregate import parse_levels, parse_seeds
from ticketlab.lth.controls import CONTROL_KINDS
from ticketlab.lth.imp import imp_levels_keep_weights
from ticketlab.lth.jobs import run_control_job, run_imp_job
from ticketlab.lth.stability import run_stability
from ticketlab.recipes import preset
from ticketlab.reports.labels import parse_labels
from ticketlab.reports.loading import load_run, load_runs
from ticketlab.reports.tables import level_table
from ticketlab.reports.writer import report_summary, write_report
from ticketlab.runtime import checked_data, finished, run_train

MAX_POINTS = 1001  # stability: points along the interpolation path (each evaluates the test set)

# The main job's recipe: LeNet-300-100 on Fashion-MNIST with the LTH paper's optimizer (Adam 1.2e-3,
# batch 60), shortened (2,000 iterations, evaluated every 250) so that 16 levels, down to 3.5% of the weights
# where the ticket holds and its random reinitialization falls behind, finish in under 5 minutes on one thread
# with each level's control trained together with its ticket (ticketlab.multitrain).
DEMO_DEFAULTS = {
    "train": preset("demo"),
    "prune": PruneConfig(levels=15, prune_fraction=0.2, strategy="global"),
}
IMP_SECTIONS = ("data", "model", "train", "prune")


# ---- train ----------------------------------------------------------------------------------------

def train(configs: dict, options: Runs, log) -> dict:
    validate_train(configs["train"])
    if not finished(options.runs_dir, "train", configs, [options.seed]):
        checked_data(configs)
    announce(configs["train"], log)
    return run_train(configs, options.seed, options.runs_dir, quiet=options.silent, log=log)


def train_text(result: dict, options) -> str:
    summary = result["summary"]
    return (f"test accuracy {summary['test_accuracy']:.4f}, early-stop iteration {summary['early_stop_iteration']}; "
            f"run in {result['run_dir']}")


# ---- imp and demo ---------------------------------------------------------------------------------

@dataclass(kw_only=True)
class DemoOptions(Replicates, Runs):
    """Replicate seeds of an IMP run and where it goes."""


@dataclass(kw_only=True)
class ImpOptions(DemoOptions):
    controls: str = arg("", "controls to train at every level, comma-separated: random-reinit, random-reinit-sign, "
                            "shuffle-layerwise, random-global")

    def check(self):
        checks.text("--controls", self.controls)
        unknown = [c for c in self.control_kinds() if c not in CONTROL_KINDS]
        if unknown:
            raise TicketlabError(f"unknown control kind(s) {unknown}; known: {', '.join(CONTROL_KINDS)}")

    def control_kinds(self) -> tuple[str, ...]:
        return tuple(c for c in self.controls.split(",") if c)


def imp_job(kind: str, controls: tuple[str, ...], configs: dict, options: DemoOptions, log) -> dict:
    validate_train(configs["train"])
    validate_prune(configs["prune"])
    seeds = seed_list(options)
    if not finished(options.runs_dir, kind, configs, seeds):
        _, model = checked_data(configs, {"--rewind-step": configs["prune"].rewind_step})
        imp_levels_keep_weights(configs["prune"], model, configs["model"].model)
    announce(configs["train"], log)
    result = run_imp_job(kind, configs, seeds, options.runs_dir, quiet=options.silent, log=log, controls=controls,
                         workers=options.workers)
    load_run(result["run_dir"], seeds)  # read back as the table reads it: a damaged file is refused, --json too
    return result


def imp(configs: dict, options: ImpOptions, log) -> dict:
    return imp_job("imp", options.control_kinds(), configs, options, log)


def demo(configs: dict, options: DemoOptions, log) -> dict:
    result = imp_job("demo", ("random-reinit",), configs, options, log)
    model_name, dataset, prune = configs["model"].model, configs["data"].dataset, configs["prune"]
    notes = [f"Iterative magnitude pruning ({prune.strategy}, {prune.prune_fraction:.0%} per level) of {model_name} "
             f"on {dataset}, rewind step {prune.rewind_step}, with a random-reinitialization control at every level."]
    run = load_run(result["run_dir"], seed_list(options))
    result.update(write_report([run], result["run_dir"], f"Lottery ticket: {model_name} on {dataset}", notes=notes,
                               command=command_line("demo", options)))
    result["plot"] = result["accuracy_plot"]
    return result


def imp_text(result: dict, options: DemoOptions) -> str:
    text = level_table(load_run(result["run_dir"], seed_list(options))) + f"\n\nrun directory: {result['run_dir']}"
    if "report" in result:
        text += f"\nreport: {result['report']}\nplot: {result['plot']}"
    return text


# ---- control ----------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class ControlOptions(Replicates, Output):
    run: str = arg(help="run directory, runs/<kind>-<hash> (all its seeds) or .../seed-<s>", positional=True)
    kind: str = arg(help="random-reinit, random-reinit-sign, shuffle-layerwise or random-global")
    levels: str = arg("all", "levels to control, e.g. 0-5,8")
    data_root: str | None = arg(None, "folder holding datasets, if not where the run found them")

    def check(self):
        run = Path(self.run)
        if run.name.startswith("seed-") and not run.name[5:].isdigit():
            raise TicketlabError(f"{run} is not a seed folder (seed-<number>); give runs/<kind>-<hash> or .../seed-<s>")


def control(configs: dict, options: ControlOptions, log) -> dict:
    run = Path(options.run)
    config_file = (run.parent if run.name.startswith("seed-") else run) / "config.json"
    if config_file.exists():  # open_existing_run reads it: refuse a damaged one here, by name
        stored = checks.read_json_file(config_file, "run config")
        if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict) or \
                not all(isinstance(v, dict) for v in stored["config"].values()):
            raise TicketlabError(f"{config_file} is not a ticketlab run config; give runs/<kind>-<hash>")
    seeds = parse_seeds(options.seeds) if options.seeds is not None else None
    return run_control_job(options.run, options.kind, options.levels, seeds, options.data_root, options.silent,
                           options.workers)


def control_text(result: dict, options: ControlOptions) -> str:
    return "\n".join(f"seed {r['seed']} level {r['level']} ({100 * r['density']:.2f}% weights): {result['kind']} "
                     f"{r['test_accuracy']:.4f} vs ticket {r['ticket_test_accuracy']:.4f}, early stop "
                     f"{r['early_stop_iteration']}" for r in result["controls"])


# ---- stability -------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class StabilityOptions(Runs):
    ticket: str = arg(help="ticket file", positional=True)
    rewind_step: str | None = arg(None, "k (e.g. 500it or 2ep); default: the ticket's own rewind point")
    points: int = arg(11, "points along the interpolation path, ends included")
    data_root: str | None = arg(None, "folder holding datasets, if not where the ticket's run found them")
    bn_reestimate: int = arg(0, "re-estimate BatchNorm running statistics at every interpolation point on this many "
                                "training batches (0: interpolate them with the weights)")

    def check(self):
        checks.integer("--points", self.points, 3, MAX_POINTS)
        checks.integer("--bn-reestimate", self.bn_reestimate, 0, MAX_SCORE_BATCHES)
        if self.rewind_step is not None:
            checks.length(self.rewind_step, "rewind-step")


def stability(configs: dict, options: StabilityOptions, log) -> dict:
    return run_stability(options.ticket, options.rewind_step, options.runs_dir, options.seed, options.points,
                         options.data_root, options.silent, bn_reestimate=options.bn_reestimate)


def stability_text(result: dict, options) -> str:
    return (f"error barrier from rewind step {result['rewind_step']}: {100 * result['barrier']:.2f} percentage points "
            f"(test error along the path: {', '.join(f'{100 * e:.2f}' for e in result['test_errors'])}); "
            f"plot {result['plot']}")


# ---- report ------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class ReportOptions(Output):
    runs: list[str] = arg(help="run directories (runs/<kind>-<hash>, any kind: imp, prune, pai cells, sanity, cts, "
                               "train, layers, filters, supertickets, transfer) or sweep folders (runs/sweep-<hash>)",
                          positional=True, nargs="+")
    out: str = arg(help="folder to write the report into", writes="folder")
    title: str = arg("Lottery tickets", "report title")
    label: str | None = arg(None, "names of the runs in tables and legends, one per run, comma-separated (default: "
                                  "the config values that differ between them)")
    curves: str | None = arg(None, "IMP levels whose training curves are plotted (default: first, middle, last)")
    html: bool = arg(False, "also write report.html: one self-contained page (plots inline, sections with anchors)",
                     bare=True)
    csv: bool = arg(False, "also write report.csv: one row per run, level and series, accuracies in percent",
                    bare=True)

    def check(self):
        checks.text("--title", self.title)
        parse_labels(self.label)


def command_line(name: str, options) -> str:
    """The command as one would type it again: its name and every option given a value other than its default."""
    words = ["ticketlab", name]
    ordered = sorted(dataclasses.fields(options), key=lambda f: (not f.metadata.get("positional"), f.metadata.get("rank", 0)))
    for f in ordered:
        value = getattr(options, f.name)
        if f.metadata.get("positional"):
            words += [str(v) for v in (value if isinstance(value, list) else [value])]
        elif f.default is not dataclasses.MISSING and value == f.default:
            continue
        elif value is True:
            words.append(flag(f.name))
        elif value is not False:
            words += [flag(f.name), str(value)]
    return shlex.join(words)


def report(configs: dict, options: ReportOptions, log) -> dict:
    loaded = load_runs(options.runs)
    labels = parse_labels(options.label, len(loaded))
    curves = None
    if options.curves is not None:
        imp_runs = [r for r in loaded if r.kind in ("imp", "demo")]
        if not imp_runs:
            raise TicketlabError("--curves chooses IMP levels, and none of these runs is an IMP run; leave it out")
        curves = parse_levels(options.curves, [r["level"] for r in imp_runs[0].levels])
    result = write_report(loaded, options.out, options.title, curve_levels=curves, html=options.html, csv=options.csv,
                          labels=labels, command=command_line("report", options))
    result["runs"] = [str(r.run_dir) for r in loaded]
    return result


COMMANDS = (
    Command("demo", "the main job: an IMP winning ticket of LeNet-300-100 on Fashion-MNIST with reinit controls",
            "Iterative magnitude pruning with reset to initialization, 15 levels at 20% (down to 3.5% of weights), a "
            "random-reinitialization control at every level trained together with the level's ticket, a table, "
            "report.md and a plot.",
            DemoOptions, demo, imp_text, sections=IMP_SECTIONS, defaults=DEMO_DEFAULTS),
    Command("train", "train a dense network", "Train a dense network with the given recipe; writes metrics, "
            "checkpoints and a density-1 ticket into a resumable run directory.",
            Runs, train, train_text, sections=("data", "model", "train")),
    Command("imp", "iterative magnitude pruning (LTH; LTR with --rewind-step)",
            "Train, prune a fraction of the surviving weights by magnitude, rewind the survivors to θ_k, repeat. "
            "Each level writes a ticket file.",
            ImpOptions, imp, imp_text, sections=IMP_SECTIONS),
    Command("control", "train controls of an existing IMP run",
            "Train a control for chosen levels of an IMP run with the run's own recipe, rewind point and data "
            "order: random-reinit (fresh weights), random-reinit-sign (fresh magnitudes, signs of θ_k), "
            "shuffle-layerwise (each layer's mask permuted), random-global (random mask, same count).",
            ControlOptions, control, control_text),
    Command("stability", "instability analysis: error barrier between two copies trained from θ_k",
            "Train two copies of a ticket (or a dense net's density-1 ticket from `train`) from θ_k with different "
            "data orders and measure the test-error barrier along the linear path between them.",
            StabilityOptions, stability, stability_text),
    Command("report", "tables, plots and verdicts comparing runs of any kind",
            "Write report.md and report.json (with --csv report.csv, with --html a self-contained report.html) and "
            "PNG plots for any number of runs of any kind, or a sweep's runs: accuracy and early-stopping iteration "
            "vs percent of weights remaining, every run's training curves, mean ± std over seeds in percent, each "
            "ticket compared with its controls or ablations paired by seed, and the version, date, command and "
            "machine that wrote it.",
            ReportOptions, report, lambda result, options: report_summary({k: v for k, v in result.items() if k != "runs"})),
)
