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
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ticketlab import checks
from ticketlab.config import DataConfig, ModelConfig, PaiConfig, PruneConfig, TrainConfig, derive_seed
from ticketlab.cts.config import CtsConfig
from ticketlab.data import Dataset
from ticketlab.data.registry import remember_in_memory
from ticketlab.deploy.export import export_ticket
from ticketlab.errors import TicketlabError
from ticketlab.lth.controls import CONTROL_KINDS
from ticketlab.lth.imp import imp_levels_keep_weights
from ticketlab.lth.jobs import run_imp_job
from ticketlab.lth.report import load_run, write_report
from ticketlab.models import model_from_config
from ticketlab.pai.jobs import check_method, check_pai_request, prune_seed, run_train_ticket
from ticketlab.recipes import preset, presets
from ticketlab.runs import open_run
from ticketlab.runtime import checked_data, load_data_config
from ticketlab.ticket import Ticket, load_ticket

__all__ = ["Dataset", "ImpLevel", "ImpRun", "TrainResult", "create_model", "export", "imp", "load_dataset",
           "load_ticket", "preset", "presets", "prune", "report", "train"]


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
                 exclude: list[str] | None = None, output: str | None = None, **kwargs) -> nn.Module:
    """θ₀ of `seed` (the weights every run of that seed starts from) for `data`'s inputs and classes.

    `model`: a registry name (`ticketlab models`), `"package.module:factory"`, or an importable nn.Module
    class or function of your own (kwargs are its JSON keyword arguments; it gets input_shape and
    num_classes when its signature names them). `prunable` / `exclude`: name patterns narrowing the
    pruned tensors; `output`: the output layer's weight (default: the last Linear's).
    """
    config = _model_config(model, kwargs, prunable, exclude, output)
    checks.seed("seed", seed)
    return model_from_config(config, data.input_shape, data.num_classes, seed=derive_seed(seed, "init"))


def _model_config(model, kwargs=None, prunable=None, exclude=None, output=None) -> ModelConfig:
    if isinstance(model, nn.Module):
        architecture = getattr(model, "architecture", None)
        if not isinstance(architecture, dict):
            raise TicketlabError(f"a {type(model).__name__} instance cannot be rebuilt for every seed and from its "
                                 "ticket files; make it with tl.create_model(YourClass or 'package.module:factory', data)")
        described = architecture.get("prunable") or {}
        return ModelConfig(model=architecture["name"], kwargs=json.dumps(architecture.get("kwargs") or {}) if
                           architecture.get("kwargs") else "", prunable=",".join(described.get("include", [])),
                           exclude=",".join(described.get("exclude", [])), output=architecture.get("output") or "")
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
               "prune": PruneConfig(levels=levels, prune_fraction=prune_fraction, rewind_step=rewind_step,
                                    strategy=strategy, schedule=schedule, retrain=retrain, **prune_options)}
    unknown = [c for c in controls if c not in CONTROL_KINDS]
    if unknown:
        raise TicketlabError(f"unknown control kind(s) {unknown}; known: {', '.join(CONTROL_KINDS)}")
    seeds = [checks.seed("seeds", s) for s in seeds]
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
               "pai": PaiConfig(method=method, density=density, rewind_step=rewind_step, **method_options),
               "cts": cts or CtsConfig()}
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


def train(ticket: Ticket | str | Path, data: Dataset, recipe: TrainConfig | None = None, *,
          runs_dir: str | Path = "runs", quiet: bool = True) -> TrainResult:
    """Train a ticket from its rewind step with `recipe` (default: the recipe it records)."""
    path = _ticket_file(ticket, runs_dir)
    stored = load_ticket(path)
    if recipe is None:
        recipe = TrainConfig(**stored.info["train_config"]) if "train_config" in stored.info else TrainConfig()
    result = run_train_ticket(path, _recipe(recipe), data, str(runs_dir), quiet)
    return TrainResult(load_ticket(result["ticket"]), result["summary"]["test_accuracy"], result["summary"],
                       Path(result["run_dir"]))


EXPORT_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}


def export(ticket: Ticket | str | Path, out: str | Path, *, format: str | None = None, half: bool = False,
           weights: str = "auto", runs_dir: str | Path = "runs") -> dict:
    """Write the ticket as compact, dense (shrunk), TorchScript or ONNX; the format from the suffix
    (.onnx, .pt/.ts, .compact.safetensors, .dense.safetensors) or `format=`."""
    out = Path(out)
    if format is None:
        name = out.name
        format = ("compact" if name.endswith(".compact.safetensors") else "dense" if name.endswith(".dense.safetensors")
                  else EXPORT_SUFFIXES.get(out.suffix))
        if format is None:
            raise TicketlabError(f"cannot tell the export format from {out.name}; give format= (compact, dense, "
                                 "torchscript, onnx) or a suffix .onnx, .pt, .compact.safetensors, .dense.safetensors")
    checks.writable_file(out, "export file")
    return export_ticket(_ticket_file(ticket, runs_dir), format, out, half=half, weights=weights)


def report(runs, out: str | Path, *, title: str = "Lottery tickets", html: bool = False) -> dict:
    """report.md (and report.html) with tables and plots comparing IMP runs (ImpRun objects or run folders)."""
    loaded = [load_run(r.run_dir if isinstance(r, ImpRun) else r) for r in runs]
    return write_report(loaded, out, title, html=html)


# ---- helpers ------------------------------------------------------------------------------------------

def _recipe(recipe) -> TrainConfig:
    if recipe is None:
        return TrainConfig()
    if isinstance(recipe, str):
        return preset(recipe)
    if not isinstance(recipe, TrainConfig):
        raise TicketlabError(f"recipe must be a TrainConfig (tl.preset(...)) or a preset name; got {recipe!r}")
    return recipe


def _ticket_file(ticket, runs_dir) -> Path:
    """A ticket's file: its own path, or, for a ticket made in memory, a copy saved under runs_dir."""
    if isinstance(ticket, (str, Path)):
        return Path(ticket)
    if not isinstance(ticket, Ticket):
        raise TicketlabError(f"expected a Ticket or a ticket file; got a {type(ticket).__name__}")
    if ticket.path is not None:
        return Path(ticket.path)
    digest = hashlib.sha256(json.dumps(ticket.info, sort_keys=True, default=str).encode())
    for name in sorted(ticket.init_state):
        digest.update(ticket.init_state[name].contiguous().numpy().tobytes())
    for name in ticket.mask.names():
        digest.update(ticket.mask[name].numpy().tobytes())
    path = Path(runs_dir) / "tickets" / f"ticket-{digest.hexdigest()[:12]}.safetensors"
    if not path.exists():
        ticket.save(path)
    return path


def _workers(configs: dict, workers: int | None) -> int | None:
    # Data held in memory lives in this process only: its seeds run here, one after another.
    return 1 if configs["data"].dataset.startswith("memory-") else workers


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def _quiet_log(message: str) -> None:
    pass

