"""The listing commands: methods, show (one ticket's summary), models, datasets."""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.commands.spec import Command, Output, arg
from ticketlab.data import DATASETS
from ticketlab.models import describe_models
from ticketlab.pai import PAI_METHODS
from ticketlab.ticket import load_ticket, read_metadata


def methods(configs: dict, options: Output, log) -> dict:
    return {"methods": [{"name": name, "description": info.description, "bn_mode": info.bn_mode or "—"}
                        for name, info in PAI_METHODS.items()]}


def methods_text(result: dict, options) -> str:
    return "\n".join(f"{m['name']:12s} {m['description']} [BatchNorm while scoring: {m['bn_mode']}]"
                     for m in result["methods"])


@dataclass(kw_only=True)
class ShowOptions(Output):
    ticket: str = arg(help="path of a ticket.safetensors file", positional=True)


def show(configs: dict, options: ShowOptions, log) -> dict:
    load_ticket(options.ticket)  # validates the whole file, not only its header
    meta = read_metadata(options.ticket)
    meta.pop("mask_shapes", None)
    return meta


def show_text(meta: dict, options: ShowOptions) -> str:
    lines = [f"ticket {options.ticket}",
             f"  model {meta['architecture']['name']} on {meta.get('dataset')}, method {meta.get('method')}, "
             f"level {meta.get('level')}, seed {meta.get('seed')}, rewind step {meta.get('rewind_step')}",
             f"  density {meta['density']:.4f} ({meta['kept']} of {meta['prunable']} prunable weights)"]
    lines += [f"    {name:40s} {d:.4f}" for name, d in meta["layers"].items()]
    # What to feed it: tickets take standardized inputs, the deployable exports raw ones (deploy/export.py).
    lines.append(f"  inputs {tuple(meta['architecture'].get('input_shape', ()))} standardized per channel with the "
                 "mean and std of its training set; its dense, torchscript and onnx exports take raw inputs "
                 "(pixels in [0, 1]) and standardize them themselves")
    metrics = meta.get("metrics") or {}
    if metrics:
        lines.append(f"  test accuracy {metrics.get('test_accuracy')}, early-stop iteration "
                     f"{metrics.get('early_stop_iteration')}")
    return "\n".join(lines)


def models(configs: dict, options: Output, log) -> dict:
    return {"models": [{"name": name, "description": description} for name, description in describe_models()]}


def datasets(configs: dict, options: Output, log) -> dict:
    return {"datasets": [{"name": name, "description": entry.description} for name, entry in DATASETS.items()]}


COMMANDS = (
    Command("methods", "list the pruning-at-initialization methods", "List the PaI methods.", Output, methods,
            methods_text),
    Command("show", "summarize a ticket file", "Print a ticket's model, method, densities and metrics.",
            ShowOptions, show, show_text),
    Command("models", "list the known models", "List the model names ticketlab can build.", Output, models,
            lambda result, options: "\n".join(f"{m['name']:24s} {m['description']}" for m in result["models"])),
    Command("datasets", "list the known datasets", "List the datasets ticketlab can load.", Output, datasets,
            lambda result, options: "\n".join(f"{d['name']:18s} {d['description']}" for d in result["datasets"])),
)
