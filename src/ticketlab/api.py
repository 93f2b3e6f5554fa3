"""The Python API: ticketlab's capabilities as calls on data, models, recipes and tickets.

    import ticketlab as tl
    data = tl.load_dataset("fashion-mnist", train_subset=5000)
    model = tl.create_model("lenet_300_100", data, seed=0)
    run = tl.imp(model, data, tl.preset("lth-lenet", steps="2000it"), levels=3, seeds=[0])
    ticket = tl.prune(model, data, method="snip", density=0.05)
    result = tl.train(ticket, data)
    tl.export(result.ticket, "model.onnx")

Every call runs the same checks and writes the same resumable run directories as the command of
the same name (docs/api.md): a call interrupted and made again resumes, a finished one returns its
stored results. Data may be a registry dataset or any tensors / map-style torch Dataset
(`Dataset.from_tensors`, `Dataset.from_torch`); a model a registry name, a `package.module:factory`,
or an importable nn.Module class or function of your own.

The other commands are calls too: `stability`, `controls` (lth), `sanity`, `pai_sweep` (pai),
`layer_tickets`, `filter_tickets`, `robustness` (layers), `supertickets`, `transfer`, `frontier`,
`profile`, `infer` (deploy) and `sweep`. Each returns a small dataclass of its headline numbers with
the job's whole result dict as `.result` (what `ticketlab COMMAND --json` prints).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ticketlab import checks, progress
from ticketlab.commands.lth import MAX_POINTS
from ticketlab.commands.spec import MAX_WORKERS
from ticketlab.config import (FILTER_MATCHES, MAX_SCORE_BATCHES, DataConfig, LayerConfig, ModelConfig, PaiConfig,
                              PruneConfig, TrainConfig, derive_seed, identity_values, validate_density)
from ticketlab.cts.config import CtsConfig
from ticketlab.data import Dataset
from ticketlab.data.registry import remember_in_memory
from ticketlab.deploy.export import export_ticket
from ticketlab.deploy.infer import run_inference
from ticketlab.deploy.profile import BATCH_SIZES, check_profile_request, profile_table, profile_ticket
from ticketlab.errors import TicketlabError
from ticketlab.layers.jobs import filter_configs, robustness_job, run_structured
from ticketlab.lth.aggregate import MAX_SEEDS
from ticketlab.lth.controls import CONTROL_KINDS
from ticketlab.lth.imp import imp_levels_keep_weights
from ticketlab.lth.jobs import open_existing_run, run_control_job, run_imp_job
from ticketlab.lth.stability import run_stability
from ticketlab.models import model_from_config
from ticketlab.pai.jobs import check_method, check_pai_request, prune_seed, run_pai_sweep, run_train_ticket
from ticketlab.pai.sanity import check_sanity_request, run_sanity, sanity_table
from ticketlab.recipes import preset, presets
from ticketlab.reports.labels import check_labels
from ticketlab.reports.loading import load_runs
from ticketlab.reports.writer import write_report
from ticketlab.runs import open_run
from ticketlab.runtime import checked_data, default_workers, finished, load_data_config, run_train
from ticketlab.supertickets.config import SuperConfig
from ticketlab.supertickets.frontier import write_frontier
from ticketlab.supertickets.jobs import run_supertickets, run_transfer
from ticketlab.sweeps import run_sweep
from ticketlab.ticket import Ticket, load_ticket

__all__ = ["ControlsResult", "Dataset", "ImpLevel", "ImpRun", "InferResult", "PaiSweepResult", "ProfileResult",
           "RobustnessResult", "SanityResult", "StabilityResult", "StructuredResult", "SuperticketsResult",
           "SweepResult", "TrainResult", "TransferResult", "controls", "create_model", "export", "filter_tickets", "find_supertickets",
           "frontier", "imp", "infer", "layer_tickets", "load_dataset", "load_ticket", "pai_sweep", "preset",
           "presets", "profile", "progress_every", "prune", "report", "robustness", "sanity", "stability", "sweep",
           "train", "transfer"]


# ---- data and models ------------------------------------------------------------------------------

def load_dataset(name: str, *, data_root: str | None = None, val_size: int | None = None, train_subset: int = 0,
                 test_subset: int = 0, pad: int = 0, resize: int = 0) -> Dataset:
    """A registry dataset (see `ticketlab datasets`) or `package.module:factory`, in memory with its
    validation split held out of the training set."""
    config = DataConfig(dataset=name, data_root=data_root, val_size=val_size, train_subset=train_subset,
                        test_subset=test_subset, pad=pad, resize=resize)
    data = load_data_config(config)
    data.source = config
    return data


def _data_config(data: Dataset) -> DataConfig:
    """How the run directories name this data: its loading options, or a fingerprint of data held in memory."""
    if not isinstance(data, Dataset):
        raise TicketlabError(f"data must be a ticketlab Dataset (tl.load_dataset, Dataset.from_torch or "
                             f"Dataset.from_tensors); got a {type(data).__name__}")
    return data.source if isinstance(data.source, DataConfig) else DataConfig(dataset=remember_in_memory(data))


def create_model(model, data: Dataset, *, seed: int = 0, prunable: list[str] | None = None,
                 exclude: list[str] | None = None, output: str | None = None, init: str | None = None,
                 bias: str | None = None, **kwargs) -> nn.Module:
    """θ₀ of `seed` (the weights every run of that seed starts from) for `data`'s inputs and classes.

    `model`: a registry name (`ticketlab models`), `"package.module:factory"`, or an importable nn.Module
    class or function of your own (kwargs are its JSON keyword arguments; it gets input_shape and
    num_classes when its signature names them). `prunable` / `exclude`: name patterns narrowing the
    pruned tensors; `output`: the output layer's weight (default: the last Linear's). `init`: "kaiming"
    (normal, fan_in, ReLU gain; open_lth's) or "glorot" (normal; the LTH paper's); `bias`: "zero" or
    "uniform" (PyTorch's default, kept as open_lth keeps it); the runs of the model keep both (default:
    Kaiming with zero biases, or a given model's own).
    """
    config = _model_config(model, kwargs, prunable, exclude, output)
    config = dataclasses.replace(config, init=init or config.init, bias=bias or config.bias)
    checks.seed("seed", seed)
    return model_from_config(config, data.input_shape, data.num_classes, seed=derive_seed(seed, "init"))


def _model_config(model, kwargs=None, prunable=None, exclude=None, output=None) -> ModelConfig:
    if isinstance(model, nn.Module):
        architecture = getattr(model, "architecture", None)
        if not isinstance(architecture, dict):
            raise TicketlabError(f"a {type(model).__name__} instance cannot be rebuilt for every seed and from its "
                                 "ticket files; make it with tl.create_model(YourClass or 'package.module:factory', data)")
        described = architecture.get("prunable") or {}
        init = architecture.get("init") or {}
        return ModelConfig(model=architecture["name"], kwargs=json.dumps(architecture.get("kwargs") or {}) if
                           architecture.get("kwargs") else "", prunable=",".join(described.get("include", [])),
                           exclude=",".join(described.get("exclude", [])), output=architecture.get("output") or "",
                           init=init.get("weights", "kaiming"), bias=init.get("bias", "zero"))
    if callable(model) and not isinstance(model, str):
        if "<locals>" in getattr(model, "__qualname__", "<locals>") or model.__module__ is None:
            raise TicketlabError(f"{model!r} is not importable by name; define it at the top level of a module")
        model = f"{model.__module__}:{model.__qualname__}"
    if not isinstance(model, str):
        raise TicketlabError(f"model must be a name, 'package.module:factory' or an nn.Module class; got {model!r}")
    return ModelConfig(model=model, kwargs=json.dumps(kwargs, sort_keys=True) if kwargs else "",
                       prunable=",".join(prunable or []), exclude=",".join(exclude or []), output=output or "")


# ---- iterative magnitude pruning --------------------------------------------------------------------

@dataclass
class ImpLevel:
    """One IMP level over the run's seeds: mean (and std) metrics and the tickets."""
    level: int
    density: float
    test_accuracy: float
    test_accuracy_std: float | None
    early_stop_iteration: float | None
    ticket_paths: list[str]
    record: dict = field(repr=False)

    @property
    def ticket(self) -> Ticket:
        """The first seed's ticket of this level."""
        return load_ticket(self.ticket_paths[0])


@dataclass
class ImpRun:
    run_dir: Path
    seeds: list[int]
    levels: list[ImpLevel]
    result: dict = field(repr=False)


def imp(model, data: Dataset, recipe: TrainConfig | None = None, *, levels: int = 7, prune_fraction: float = 0.2,
        seeds=(0,), runs_dir: str | Path = "runs", rewind_step: str = "0it", controls=(), strategy: str = "global",
        schedule: str = "", retrain: str = "rewind", workers: int | None = None, quiet: bool = True,
        **prune_options) -> ImpRun:
    """Iterative magnitude pruning with reset to θ₀ (rewind_step "0it", LTH) or rewinding to θ_k (LTR),
    `levels` levels of `prune_fraction` (or an explicit density `schedule`), controls at every level."""
    configs = {"data": _data_config(data), "model": _model_config(model), "train": _recipe(recipe),
               "prune": _options(PruneConfig, prune_options, levels=levels, prune_fraction=prune_fraction,
                                 rewind_step=rewind_step, strategy=strategy, schedule=schedule, retrain=retrain)}
    unknown = [c for c in controls if c not in CONTROL_KINDS]
    if unknown:
        raise TicketlabError(f"unknown control kind(s) {unknown}; known: {', '.join(CONTROL_KINDS)}")
    seeds = _seeds(seeds)
    _, built = checked_data(configs, {"rewind_step": rewind_step}, data=data)
    imp_levels_keep_weights(configs["prune"], built, configs["model"].model)
    result = run_imp_job("imp", configs, seeds, str(runs_dir), quiet=quiet, log=_quiet_log if quiet else _log,
                         controls=tuple(controls), workers=_workers(configs, workers))
    rows = [ImpLevel(r["level"], r["density"], r["test_accuracy"], r.get("test_accuracy_std"),
                     r.get("early_stop_iteration"), r["tickets"], r) for r in result["levels"]]
    return ImpRun(Path(result["run_dir"]), seeds, rows, result)


# ---- pruning at initialization, training, export -------------------------------------------------

def prune(model, data: Dataset, *, method: str = "snip", density: float = 0.1, recipe: TrainConfig | None = None,
          rewind_step: str = "0it", seed: int = 0, runs_dir: str | Path = "runs", quiet: bool = True,
          cts: CtsConfig | None = None, **method_options) -> Ticket:
    """A ticket at `density` by a pruning-at-initialization method (`ticketlab methods`), or by "cts"
    (Concrete Ticket Search; `cts=CtsConfig(objective="kl")` for CTS-KL), scored at θ₀ or at θ_k."""
    check_method(method)
    configs = {"data": _data_config(data), "model": _model_config(model), "train": _recipe(recipe),
               "pai": _options(PaiConfig, method_options, method=method, density=density, rewind_step=rewind_step),
               "cts": _cts(cts)}
    checks.seed("seed", seed)
    data, built = checked_data(configs, {"rewind_step": rewind_step}, data=data)
    check_pai_request(configs, data, built, method, density)
    open_run(str(runs_dir), "prune", configs)
    return load_ticket(prune_seed(seed, configs, data, str(runs_dir), quiet))


@dataclass
class TrainResult:
    ticket: Ticket           # the trained ticket (trained weights included)
    test_accuracy: float
    summary: dict
    run_dir: Path


def train(ticket, data: Dataset, recipe: TrainConfig | None = None, *, seed: int = 0,
          runs_dir: str | Path = "runs", quiet: bool = True) -> TrainResult:
    """Train a ticket from its rewind step with `recipe` (default: the recipe it records), as
    `ticketlab train-ticket` does; or, given a model instead (a name, an nn.Module from tl.create_model, or
    a class or function of your own), train the dense network of `seed` with `recipe` (default
    TrainConfig()) as `ticketlab train` does: its result's ticket is the density-1 ticket (θ₀ and trained
    weights). A string is a ticket file when it ends in .safetensors or names an existing file."""
    if not _is_ticket(ticket):
        configs = {"data": _data_config(data), "model": _model_config(ticket), "train": _recipe(recipe)}
        checks.seed("seed", seed)
        if not finished(str(runs_dir), "train", configs, [seed]):
            checked_data(configs, data=data)
        result = run_train(configs, seed, str(runs_dir), quiet, _quiet_log if quiet else _log)
        return TrainResult(load_ticket(result["ticket"]), result["summary"]["test_accuracy"], result["summary"],
                           Path(result["run_dir"]))
    path = _ticket_file(ticket, runs_dir)
    stored = load_ticket(path)
    if recipe is None:
        recipe = stored.recipe()  # the recorded one; TrainConfig() with a NoRecipeWarning when there is none
    result = run_train_ticket(path, _recipe(recipe), data, str(runs_dir), quiet)
    return TrainResult(load_ticket(result["ticket"]), result["summary"]["test_accuracy"], result["summary"],
                       Path(result["run_dir"]))


EXPORT_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}


def export(ticket: Ticket | str | Path, out: str | Path, *, format: str | None = None, half: bool = False,
           weights: str = "auto", runs_dir: str | Path = "runs", data_root: str | None = None,
           data: Dataset | None = None) -> dict:
    """Write the ticket as compact, dense (shrunk), TorchScript or ONNX; the format from the suffix
    (.onnx, .pt/.ts, .compact.safetensors, .dense.safetensors) or `format=`. dense, TorchScript and
    ONNX take raw inputs: the standardization of the ticket's training data (`data`, else loaded
    from the ticket's data config and `data_root`) is folded in."""
    out = Path(out)
    if format is None:
        name = out.name
        format = ("compact" if name.endswith(".compact.safetensors") else "dense" if name.endswith(".dense.safetensors")
                  else EXPORT_SUFFIXES.get(out.suffix))
        if format is None:
            raise TicketlabError(f"cannot tell the export format from {out.name}; give format= (compact, dense, "
                                 "torchscript, onnx) or a suffix .onnx, .pt, .compact.safetensors, .dense.safetensors")
    checks.writable_file(out, "export file")
    return export_ticket(_ticket_file(ticket, runs_dir), format, out, half=half, weights=weights, data_root=data_root,
                         data=data)


def _report_folders(run) -> list:
    """The folders a result object stands for: its run or sweep folder, or (a PaI sweep) each cell's run."""
    for name in ("run_dir", "sweep_dir"):
        if getattr(run, name, None) is not None:
            return [getattr(run, name)]
    if isinstance(getattr(run, "rows", None), list):
        return list(dict.fromkeys(row["run_dir"] for row in run.rows if row.get("run_dir")))
    return [run]


def report(runs, out: str | Path, *, title: str = "Lottery tickets", labels: list[str] | None = None,
           curves: list[int] | None = None, html: bool = False, csv: bool = False) -> dict:
    """report.md and report.json (report.csv with `csv`, a self-contained report.html with `html`) and
    plots comparing runs of any kind: result objects of the calls (ImpRun, PaiSweepResult, ...), run
    folders or sweep folders. `labels`: one name per run (default: the config values that differ);
    `curves`: IMP levels whose training curves are drawn. Returns the paths written."""
    folders = [folder for r in ([runs] if isinstance(runs, (str, Path)) else runs) for folder in _report_folders(r)]
    checks.writable_dir(out, "report folder")
    loaded = load_runs(folders)
    if labels is not None:
        labels = check_labels(list(labels), len(loaded), "labels")
    command = f"tl.report({[str(f) for f in folders]!r}, {str(out)!r}" + (f", labels={labels!r}" if labels else "") + ")"
    return write_report(loaded, out, title, curve_levels=curves, html=html, csv=csv, labels=labels, command=command)


# ---- instability analysis and controls of IMP runs ------------------------------------------------

@dataclass
class StabilityResult:
    """Two copies of a ticket trained from θ_k with different data orders: the test error along the
    straight line between their final weights and its barrier (about 0: training from k is stable)."""
    barrier: float            # largest test error on the path minus the mean of its ends (a fraction)
    rewind_step: int          # k, in iterations
    test_errors: list[float]  # at `points` evenly spaced points, ends included
    density: float
    plot: Path
    run_dir: Path
    result: dict = field(repr=False)


def stability(ticket: Ticket | str | Path, data: Dataset | None = None, *, rewind_step: str | None = None,
              points: int = 11, seed: int = 0, bn_reestimate: int = 0, runs_dir: str | Path = "runs",
              quiet: bool = True) -> StabilityResult:
    """Instability analysis of a ticket (or a dense `train` run's density-1 ticket) from `rewind_step`
    (default: the ticket's own rewind point) with the recipe and data it records. `bn_reestimate`: training
    batches on which BatchNorm statistics are re-estimated at every point (0: interpolated with the
    weights). `data`: that data, needed only when it was held in memory by another Python process."""
    checks.integer("points", points, 3, MAX_POINTS)
    checks.integer("bn_reestimate", bn_reestimate, 0, MAX_SCORE_BATCHES)
    if rewind_step is not None:
        checks.length(rewind_step, "rewind-step")
    checks.seed("seed", seed)
    path = _ticket_file(ticket, runs_dir)
    result = run_stability(str(path), rewind_step, str(runs_dir), seed, points, _ticket_data_root(path, data), quiet,
                           bn_reestimate=bn_reestimate)
    return StabilityResult(result["barrier"], result["rewind_step"], result["test_errors"], result["density"],
                           Path(result["plot"]), Path(result["run_dir"]), result)


@dataclass
class ControlsResult:
    """A control trained for chosen levels of an IMP run. `rows`: the job's dict per seed and level (seed,
    level, density, test_accuracy, early_stop_iteration, ticket_test_accuracy, ticket)."""
    kind: str
    seeds: list[int]
    levels: list[int]
    rows: list[dict]
    run_dir: Path
    result: dict = field(repr=False)


def controls(run: ImpRun | str | Path, kind: str, *, levels="all", seeds=None, data: Dataset | None = None,
             workers: int | None = None, quiet: bool = True) -> ControlsResult:
    """Train the `kind` control (random-reinit, random-reinit-sign, shuffle-layerwise, random-global) of an
    IMP run's `levels` ("all", "0-5,8" or a list) for `seeds` (default: all the run's seeds), with the run's
    own recipe, rewind point and data order. `run`: an ImpRun, the run folder or one of its seed folders."""
    if kind not in CONTROL_KINDS:
        raise TicketlabError(f"unknown control kind {kind!r}; known: {', '.join(CONTROL_KINDS)}")
    path = run.run_dir if isinstance(run, ImpRun) else _path(run, "run")
    spec = _levels(levels)
    seeds = None if seeds is None else _seeds(seeds)
    run_dir, _, configs = open_existing_run(path, None)
    data_root = _data_root(configs["data"], data, run_dir)
    result = run_control_job(str(path), kind, spec, seeds, data_root, quiet, _workers(configs, workers))
    return ControlsResult(kind, result["seeds"], result["levels"], result["controls"], Path(result["run_dir"]), result)


# ---- sanity checks and sweeps of pruning methods ---------------------------------------------------

@dataclass
class SanityResult:
    """A method's ticket against its ablations over seeds. `rows`: the job's dict per variant (variant,
    test_accuracy, test_accuracy_std, delta, verdict, and for an ablation its reason and `paired`
    statistics), the ticket first; `rule`: how the verdicts are decided."""
    method: str
    density: float
    seeds: list[int]
    rows: list[dict]
    run_dir: Path
    result: dict = field(repr=False)

    @property
    def verdicts(self) -> dict[str, str]:
        """Each ablation's verdict on "it loses accuracy": supported, not supported or inconclusive (or why
        there is none: a method without scores has no inversion)."""
        return {row["variant"]: row["verdict"] for row in self.rows[1:]}

    @property
    def paired(self) -> dict[str, dict]:
        """Each ablation's paired statistics over seeds (differences ticket − ablation, mean, 95% CI,
        p-values of the paired t-test and the exact sign and Wilcoxon tests) and its verdict's reason."""
        return {row["variant"]: row["paired"] | {"reason": row["reason"]} for row in self.rows[1:] if "paired" in row}

    @property
    def rule(self) -> str:
        return self.result["rule"]

    def table(self) -> str:
        return sanity_table(self.result)


def sanity(model, data: Dataset, method: str, density: float, recipe: TrainConfig | None = None, *, seeds=(0, 1, 2),
           rewind_step: str = "0it", imp_schedule: str | None = None, runs_dir: str | Path = "runs",
           workers: int | None = None, quiet: bool = True, cts: CtsConfig | None = None,
           **method_options) -> SanityResult:
    """Sanity checks of a pruning method at `density`: its ticket against a layer-wise shuffle, a
    reinitialization and the inversion of its own scores, each trained over `seeds` (two or more for a
    verdict). `method`: a PaI method, "cts", or "imp" / "ltr" (the IMP level at `density`, along
    `imp_schedule` or 20% per level)."""
    configs = {"data": _data_config(data), "model": _model_config(model), "train": _recipe(recipe),
               "pai": _options(PaiConfig, method_options, method=method, density=density, rewind_step=rewind_step),
               "cts": _cts(cts)}
    seeds = _seeds(seeds)
    workers = _workers(configs, workers, seeds)
    check_sanity_request(configs, imp_schedule, data=data)
    result = run_sanity(configs, seeds, str(runs_dir), quiet, workers, schedule=imp_schedule)
    return SanityResult(result["method"], result["density"], result["seeds"], result["rows"], Path(result["run_dir"]),
                        result)


@dataclass
class PaiSweepResult:
    """Every method at every density, trained over seeds. `rows`: the job's dict per (method, density):
    test_accuracy(_std), early_stop_iteration(_std), collapsed_layers, tickets, compute, run_dir."""
    rows: list[dict]
    result: dict = field(repr=False)

    def row(self, method: str, density: float) -> dict:
        return next(r for r in self.rows if r["method"] == method and r["density"] == density)


def pai_sweep(model, data: Dataset, methods, densities, recipe: TrainConfig | None = None, *, seeds=(0,),
              rewind_step: str = "0it", runs_dir: str | Path = "runs", workers: int | None = None, quiet: bool = True,
              cts: CtsConfig | None = None, **method_options) -> PaiSweepResult:
    """Prune with every method (PaI methods and "cts") at every density and train each ticket, over `seeds`;
    each cell is the `prune` run `tl.prune` makes, trained."""
    methods = [methods] if isinstance(methods, str) else list(methods)
    densities = [densities] if checks.is_real(densities) else list(densities)
    for density in densities:
        validate_density(density, "densities")
    densities = [float(d) for d in densities]
    if not methods or not densities:
        raise TicketlabError("give at least one method (e.g. ['snip', 'grasp']) and one density (e.g. [0.1])")
    for name, values in (("methods", methods), ("densities", densities)):
        if len(set(values)) != len(values):
            raise TicketlabError(f"{name} {values} lists a value twice; give each once")
    for method in methods:
        check_method(method)
    base = {"data": _data_config(data), "model": _model_config(model), "train": _recipe(recipe),
            "pai": _options(PaiConfig, method_options, rewind_step=rewind_step), "cts": _cts(cts)}
    seeds = _seeds(seeds)
    workers = _workers(base, workers, seeds)
    data, built = checked_data(base, {"--rewind-step": rewind_step}, data=data)
    for method in methods:
        for density in densities:
            check_pai_request(base, data, built, method, density, "densities")
    result = run_pai_sweep(base, methods, densities, seeds, str(runs_dir), quiet, workers,
                           _quiet_log if quiet else _log)
    return PaiSweepResult(result["results"], result)


# ---- layer and filter tickets, robustness ------------------------------------------------------------

class _FirstTicket:
    """Results over seeds: `tickets` holds one ticket path per seed."""

    @property
    def ticket(self) -> Ticket:
        """The first seed's ticket."""
        return load_ticket(self.tickets[0])


@dataclass
class StructuredResult(_FirstTicket):
    """Layer or filter tickets over seeds next to the dense network trained with the same recipe: means
    over seeds (their std and the per-seed dicts are in `result`)."""
    kind: str                     # "layers" or "filters"
    test_accuracy: float
    dense_test_accuracy: float
    parameters_saved: float       # fractions of the dense network's
    flops_saved: float
    training_speedup: float       # dense training time / ticket training time, measured
    tickets: list[str]
    run_dir: Path
    result: dict = field(repr=False)


def layer_tickets(model, data: Dataset, recipe: TrainConfig | None = None, *, remove: int = 1,
                  criterion: str = "grasp", seeds=(0,), power_watts: float = 65.0, runs_dir: str | Path = "runs",
                  workers: int | None = None, quiet: bool = True, **layer_options) -> StructuredResult:
    """Layer tickets: remove the `remove` lowest-scored residual blocks of a ResNet at θ₀ (`criterion`
    grasp, snip, magnitude or random), rebuild it shallower and train it with `recipe`, next to the dense
    network of the same recipe (trained once, reused). layer_options: aggregate, at, min_per_stage,
    score_batches, score_batch_size, grasp_batches ("halves", the default, or "whole": which examples share
    GraSP's BatchNorm statistics); `power_watts`: the figure of the energy estimate."""
    configs = {"data": _data_config(data), "model": _model_config(model), "train": _recipe(recipe),
               "layers": _options(LayerConfig, layer_options, criterion=criterion, remove=remove)}
    seeds = _seeds(seeds)
    checks.positive("power_watts", power_watts)
    workers = _workers(configs, workers, seeds)
    checked_data(configs, data=data)
    return _structured(run_structured("layers", configs, seeds, str(runs_dir), quiet, workers, power_watts))


def filter_tickets(layer_ticket: Ticket | str | Path, data: Dataset | None = None, *, criterion: str = "snip",
                   match: str = "flops", seeds=(0,), power_watts: float = 65.0, runs_dir: str | Path = "runs",
                   workers: int | None = None, quiet: bool = True) -> StructuredResult:
    """Filter tickets matched seed by seed to the layer tickets of `layer_ticket`'s run: for each seed, the
    lowest-scored internal filters of every residual block removed until the network costs at most what
    that seed's layer ticket costs (`match`: "flops" per example, "params" or "filters"), rebuilt narrower
    from θ₀ and trained with the layer ticket's recipe and data (`data`: needed only when it was held in
    memory by another Python process)."""
    seeds = _seeds(seeds)
    checks.positive("power_watts", power_watts)
    checks.text("match", match, FILTER_MATCHES)
    path = _ticket_file(layer_ticket, runs_dir)
    layer = load_ticket(path)
    recorded = layer.provenance
    if recorded.original_architecture is None or recorded.data_config is None or recorded.train_config is None:
        raise TicketlabError(f"{path} is not a layer ticket; give one made by tl.layer_tickets or `ticketlab layers`")
    data_config = layer.data_config()
    root = _data_root(data_config, data, path)
    if root:
        data_config = dataclasses.replace(data_config, data_root=root)
    base = {"data": data_config, "model": ModelConfig(model=recorded.original_architecture["name"]),
            "train": layer.recipe()}
    configs = filter_configs(base, str(path), criterion, match, seeds)
    workers = _workers(configs, workers, seeds)
    return _structured(run_structured("filters", configs, seeds, str(runs_dir), quiet, workers, power_watts))


def _structured(result: dict) -> StructuredResult:
    return StructuredResult(result["kind"], result["test_accuracy"], result["dense_test_accuracy"],
                            result["parameters_saved"], result["flops_saved"], result["training_speedup"],
                            result["tickets"], Path(result["run_dir"]), result)


@dataclass
class RobustnessResult:
    """Accuracy on the clean, corrupted (noise, blur, contrast at severities 1-5) and shifted test sets.
    `rows`: the job's dict per set (corruption, severity, dense, tickets: one accuracy per ticket, in order)."""
    tickets: list[str]
    dense: str
    rows: list[dict]
    result: dict = field(repr=False)


def robustness(tickets, dense: Ticket | str | Path | None = None, *, data: Dataset | None = None, seed: int = 0,
               runs_dir: str | Path = "runs") -> RobustnessResult:
    """Tickets of one dense network (and that network, evaluated once) on the same corrupted and shifted
    test sets. `dense`: default, the dense network the tickets record (layer and filter tickets do);
    `seed`: the noise and shift draws; `data`: needed only when it was held in memory by another process."""
    checks.seed("seed", seed)
    tickets = [tickets] if isinstance(tickets, (Ticket, str, Path)) else list(tickets)
    if not tickets:
        raise TicketlabError("give at least one ticket")
    paths = [str(_ticket_file(t, runs_dir)) for t in tickets]
    dense_path = None if dense is None else str(_ticket_file(dense, runs_dir))
    result = robustness_job(paths, dense_path, _ticket_data_root(Path(paths[0]), data), seed)
    return RobustnessResult(result["tickets"], result["dense"], result["rows"], result)


# ---- SuperTickets and transfer ----------------------------------------------------------------------

@dataclass
class SuperticketsResult(_FirstTicket):
    """SuperTickets (or a baseline or ablation) over seeds: means of the found networks (BatchNorm
    re-estimated) and, with `retrain`, of the retrained ones; the std and per-seed dicts are in `result`."""
    method: str
    density: float                          # reached, mean over seeds
    test_accuracy: float                    # as found
    retrained_test_accuracy: float | None   # None without retraining
    flops: float                            # per example, of the shrunk architecture at the mask
    tickets: list[str]
    run_dir: Path
    result: dict = field(repr=False)


def find_supertickets(model, data: Dataset, recipe: TrainConfig | None = None, *, density: float = 0.1,
                 retrain: str = "0it", baseline: str = "none", seeds=(0,), runs_dir: str | Path = "runs",
                 workers: int | None = None, quiet: bool = True, **options) -> SuperticketsResult:
    """Search a supernet's architecture and its ticket at `density` in one training (`recipe`, default
    tl.preset("supertickets")); `retrain` then fine-tunes with the mask fixed; `baseline` (magnitude, snip,
    grasp, synflow, random) searches only and prunes once instead. options: the other SuperConfig fields
    (rho, rho_warmup, shrink_interval, prune_interval, schedule, reactivation, search, ...)."""
    configs = {"data": _data_config(data), "model": _model_config(model), "train": _recipe(recipe, "supertickets"),
               "supertickets": _options(SuperConfig, options, density=density, retrain=retrain, baseline=baseline)}
    seeds = _seeds(seeds)
    workers = _workers(configs, workers, seeds)
    checked_data(configs, data=data)
    result = run_supertickets(configs, seeds, str(runs_dir), quiet, workers)
    return SuperticketsResult(result["method"], result["density"], result["test_accuracy"],
                              result.get("retrained_test_accuracy"), result["flops"], result["tickets"],
                              Path(result["run_dir"]), result)


@dataclass
class TransferResult(_FirstTicket):
    """A ticket moved to other data (new head, mask fixed) and fine-tuned, over seeds."""
    test_accuracy: float
    test_accuracy_std: float | None
    density: float
    flops: float
    tickets: list[str]
    run_dir: Path
    result: dict = field(repr=False)


def transfer(ticket: Ticket | str | Path, data: Dataset, recipe: TrainConfig | None = None, *, seeds=(0,),
             runs_dir: str | Path = "runs", workers: int | None = None, quiet: bool = True) -> TransferResult:
    """Keep a ticket's architecture, weights and mask, give it a new classifier head for `data`'s classes
    and fine-tune with the mask fixed (`recipe`, default tl.preset("supertickets"))."""
    configs = {"data": _data_config(data), "train": _recipe(recipe, "supertickets")}
    seeds = _seeds(seeds)
    workers = _workers(configs, workers, seeds)
    checks.check_training_data(configs["train"], len(data.train_y), data.name, None, data.input_shape)
    path = _ticket_file(ticket, runs_dir)
    result = run_transfer(str(path), configs, seeds, str(runs_dir), quiet, workers)
    return TransferResult(result["test_accuracy"], result["test_accuracy_std"], result["density"], result["flops"],
                          result["tickets"], Path(result["run_dir"]), result)


def frontier(runs, out: str | Path) -> dict:
    """frontier.md, frontier.png and frontier.json in `out`: test accuracy (found and retrained) against
    FLOPs per example at the mask, for SuperTickets runs (results or run folders). Returns the job's dict
    (points, plot, table)."""
    folders = [str(r.run_dir) if isinstance(r, SuperticketsResult) else str(_path(r, "run")) for r in runs]
    if not folders:
        raise TicketlabError("give at least one SuperTickets run")
    checks.writable_dir(out, "frontier folder")
    return write_frontier(folders, str(out))


# ---- deployment: profile and inference ----------------------------------------------------------------

@dataclass
class ProfileResult:
    """Size, FLOPs and speed of a ticket's variants: dense (the original), masked, shrunk and sparse.
    `counts`: per variant, parameters, nonzero_parameters and flops (per example); `timings`: per variant
    and batch size (as text), latency_ms and throughput_per_s; `file_sizes`: bytes per file format."""
    density: float
    counts: dict
    timings: dict
    file_sizes: dict
    result: dict = field(repr=False)

    def table(self) -> str:
        return profile_table(self.result)


def profile(ticket: Ticket | str | Path, *, batch_sizes=BATCH_SIZES, repeats: int = 30,
            runs_dir: str | Path = "runs") -> ProfileResult:
    """What a ticket costs against its dense original: parameters, non-zeros, FLOPs, every export format's
    file size, and latency (median of `repeats` timed calls after warm-up) at each batch size."""
    sizes = check_profile_request(batch_sizes, repeats)
    result = profile_ticket(_ticket_file(ticket, runs_dir), sizes, repeats)
    return ProfileResult(result["density"], result["counts"], result["timings"], result["file_sizes"], result)


@dataclass
class InferResult:
    test_accuracy: float
    examples: int
    examples_per_second: float | None
    kind: str                 # ticket, compact, dense, torchscript or onnx
    linear_paths: dict        # per Linear layer: the kernel chosen (dense or csr) and why
    result: dict = field(repr=False)


def infer(model_file: Ticket | str | Path, data: Dataset | None = None, *, batch_size: int = 256, path: str = "auto",
          test_subset: int | None = None, torchscript: bool = False, runs_dir: str | Path = "runs") -> InferResult:
    """Test accuracy of a ticket or an exported file (compact, dense, TorchScript, ONNX) on `data`'s test set
    (default: the data the file records). `path`: the Linear layers' kernels, "auto" (the faster of dense
    and CSR, measured per layer at `batch_size`), "csr" or "dense". `torchscript=True` allows a TorchScript
    file, whose loading runs code from it: only for files you trust."""
    checks.text("path", path, ("auto", "csr", "dense"))
    checks.integer("test_subset", test_subset, 1, optional=True)
    if data is not None:
        _data_config(data)
    file = _ticket_file(model_file, runs_dir)
    result = run_inference(str(file), None, None, test_subset, batch_size, path, torchscript=torchscript, data=data)
    return InferResult(result["test_accuracy"], result["examples"], result["examples_per_second"], result["kind"],
                       result["linear_paths"], result)


# ---- sweeps -----------------------------------------------------------------------------------------

@dataclass
class SweepResult:
    """Every run of a grid. `rows`: one dict per run (its options, ok, test_accuracy, run_dir, error)."""
    runs: int
    done: int
    failed: int
    rows: list[dict]
    sweep_dir: Path
    report: Path | None
    result: dict = field(repr=False)


def sweep(grid, *, engine: str = "local", runs_dir: str | Path = "runs", workers: int | None = None,
          address: str | None = None, quiet: bool = True) -> SweepResult:
    """Run every point of a grid as an independent run of one command, on a local process pool or on Ray
    (`engine="ray"`, `address` of an existing cluster). `grid`: a TOML/YAML grid file, or the grid as a dict
    {"command": ..., "fixed": {...}, "grid": {option: [values]}}. Each run goes through the command line
    (registry or `package.module:factory` data only); finished runs are skipped when run again, and a run
    that fails is counted in `failed` with its error in its row."""
    checks.integer("workers", workers, 1, MAX_WORKERS, optional=True)
    summary = run_sweep(grid if isinstance(grid, dict) else str(_path(grid, "grid")), engine, str(runs_dir), workers,
                        address, _quiet_log if quiet else _log)
    return SweepResult(summary["runs"], summary["done"], summary["failed"], summary["rows"], Path(summary["sweep_dir"]),
                       Path(summary["report"]) if summary.get("report") else None, summary)


# ---- progress -----------------------------------------------------------------------------------------

def progress_every(seconds: float) -> None:
    """Seconds between the progress lines (iteration, loss, accuracy, ETA) that calls made with
    quiet=False print when stderr is not a terminal, as in a batch log (default 30; a terminal shows
    bars): the commands' --progress-every. TensorBoard or CSV records are a recipe's `log` field."""
    progress.configure(every=seconds)


# ---- helpers ------------------------------------------------------------------------------------------

def _recipe(recipe, default: str | None = None) -> TrainConfig:
    """The training recipe: a TrainConfig, a preset name, or None for the command's default (TrainConfig(),
    or the preset `default`), on a device this machine has."""
    if recipe is None:
        recipe = preset(default) if default else TrainConfig()
    elif isinstance(recipe, str):
        recipe = preset(recipe)
    elif not isinstance(recipe, TrainConfig):
        raise TicketlabError(f"recipe must be a TrainConfig (tl.preset(...)) or a preset name; got {recipe!r}")
    checks.device_available(recipe.device)
    checks.precision_available(recipe.precision, recipe.device)
    return recipe


def _levels(levels) -> str:
    """IMP levels as the job's level list: "all", "0-5,8", or an iterable of levels."""
    if isinstance(levels, str):
        return levels
    levels = [levels] if isinstance(levels, int) and not isinstance(levels, bool) else list(levels)
    for level in levels:
        checks.integer("levels", level, 0)
    if not levels:
        raise TicketlabError("levels is empty; give levels such as [1, 2], \"0-5,8\" or \"all\"")
    return ",".join(str(level) for level in levels)


def _ticket_data_root(path: Path, data: Dataset | None) -> str | None:
    """Where a job finds the data a ticket records, given that data (see _data_root)."""
    if data is None:
        return None
    ticket = load_ticket(path)
    if ticket.provenance.data_config is None:
        raise TicketlabError(f"{path} records no dataset; give a ticket made by ticketlab's training calls")
    return _data_root(ticket.data_config(), data, path)


def _is_ticket(value) -> bool:
    """A Ticket or a ticket file, rather than a model (a name, an nn.Module, a class or function)."""
    if isinstance(value, (Ticket, Path)):
        return True
    return isinstance(value, str) and (value.endswith(".safetensors") or Path(value).is_file())


def _ticket_file(ticket, runs_dir) -> Path:
    """A ticket's file: its own path, or, for a ticket made in memory, a copy saved under runs_dir."""
    if isinstance(ticket, (str, Path)):
        return Path(ticket)
    if not isinstance(ticket, Ticket):
        raise TicketlabError(f"expected a Ticket or a ticket file; got a {type(ticket).__name__}")
    if ticket.path is not None:
        return Path(ticket.path)
    digest = hashlib.sha256(json.dumps(ticket.provenance.to_metadata(), sort_keys=True, default=str).encode())
    for name in sorted(ticket.init_state):
        digest.update(ticket.init_state[name].contiguous().numpy().tobytes())
    for name in ticket.mask.names():
        digest.update(ticket.mask[name].numpy().tobytes())
    path = Path(runs_dir) / "tickets" / f"ticket-{digest.hexdigest()[:12]}.safetensors"
    if not path.exists():
        ticket.save(path)
    return path


def _workers(configs: dict, workers: int | None, seeds: list[int] | None = None) -> int | None:
    """Parallel seed processes: `workers` (checked), or with `seeds` one per seed up to the cores. Data held
    in memory lives in this process only: its seeds run here, one after another."""
    checks.integer("workers", workers, 1, MAX_WORKERS, optional=True)
    if configs["data"].dataset.startswith("memory-"):
        return 1
    return (workers or default_workers(seeds)) if seeds is not None else workers


def _seeds(seeds) -> list[int]:
    """Distinct replicate seeds: an int or an iterable of them."""
    seeds = [seeds] if isinstance(seeds, int) and not isinstance(seeds, bool) else list(seeds)
    for seed in seeds:
        checks.seed("seeds", seed)
    if not seeds or len(set(seeds)) != len(seeds) or len(seeds) > MAX_SEEDS:
        raise TicketlabError(f"seeds must be 1 to {MAX_SEEDS} distinct whole numbers, e.g. [0, 1, 2]; got {seeds!r}")
    return seeds


def _options(cls, options: dict, **given):
    """cls(**given, **options), with an option that is not one of cls's fields refused by name."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TicketlabError(f"unknown option(s) {unknown}; {cls.__name__} takes {', '.join(sorted(known - set(given)))}")
    return cls(**given, **options)


def _cts(cts) -> CtsConfig:
    if cts is None:
        return CtsConfig()
    if not isinstance(cts, CtsConfig):
        raise TicketlabError(f"cts must be a CtsConfig (tl.CtsConfig(objective='kl', ...)); got {cts!r}")
    return cts


def _path(path, what: str) -> Path:
    if not isinstance(path, (str, Path)):
        raise TicketlabError(f"{what} must be a path; got a {type(path).__name__}")
    return Path(path)


def _data_root(recorded: DataConfig, data: Dataset | None, where) -> str | None:
    """Where a job finds the data `where` records. Given `data` must be that data: data held in memory
    becomes loadable in this process, and registry data is read from the folder it was loaded from."""
    if data is None:
        return None
    given = _data_config(data)
    if identity_values({"data": given}) != identity_values({"data": recorded}):
        raise TicketlabError(f"{where} was made on {_describe(recorded)}, not on the data given ({_describe(given)}); "
                             "give that data, or none to load the data it records")
    return given.data_root


def _describe(data: DataConfig) -> str:
    options = [f"{k.split('.', 1)[1]} {v}" for k, v in identity_values({"data": data}).items() if k != "data.dataset"]
    return data.dataset + (f" ({', '.join(options)})" if options else "")


def _log(message: str) -> None:
    progress.write_line(message)


def _quiet_log(message: str) -> None:
    pass

