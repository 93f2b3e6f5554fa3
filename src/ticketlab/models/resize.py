"""Same-type layers at other sizes: what a shrunk model's `architecture["shapes"]` records.

A shrunk model (ticketlab.deploy.shrink) keeps its classes and forward code; only some Linear,
Conv and BatchNorm modules are smaller. `module_shape` describes one module's sizes, `resized`
builds a new module of the same type and hyper-parameters (kernel, stride, padding, eps, ...)
at given sizes, and `resize_modules` applies a whole "shapes" dict to a model built by name.
"""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.initialization import initialize_weights_

# Exact types only: a subclass may have another constructor, so it is never resized.
RESIZABLE_TYPES = {cls.__name__: cls for cls in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)}
SIZE_KEYS = {
    "Linear": ("in_features", "out_features", "bias"),
    "Conv1d": ("in_channels", "out_channels"),
    "Conv2d": ("in_channels", "out_channels"),
    "BatchNorm1d": ("num_features",),
    "BatchNorm2d": ("num_features",),
}


def is_resizable(module: nn.Module) -> bool:
    return RESIZABLE_TYPES.get(type(module).__name__) is type(module)


def module_shape(module: nn.Module) -> dict:
    """The "shapes" entry describing `module`'s sizes, e.g. {"type": "Conv2d", "in_channels": 3, ...}."""
    if not is_resizable(module):
        raise TicketlabError(f"cannot describe the size of a {type(module).__name__}; "
                             f"only {', '.join(RESIZABLE_TYPES)} modules are resizable")
    kind = type(module).__name__
    entry = {"type": kind}
    for key in SIZE_KEYS[kind]:
        entry[key] = module.bias is not None if key == "bias" else getattr(module, key)
    return entry


def resized(module: nn.Module, entry: dict) -> nn.Module:
    """A new module of `module`'s type and hyper-parameters with the sizes in `entry` (fresh values)."""
    kind = type(module).__name__
    factory = _device_and_dtype(module)
    if kind == "Linear":
        return nn.Linear(entry["in_features"], entry["out_features"], bias=entry["bias"], **factory)
    if kind in ("Conv1d", "Conv2d"):
        return RESIZABLE_TYPES[kind](entry["in_channels"], entry["out_channels"], module.kernel_size,
                                     stride=module.stride, padding=module.padding, dilation=module.dilation,
                                     groups=module.groups, bias=module.bias is not None,
                                     padding_mode=module.padding_mode, **factory)
    return RESIZABLE_TYPES[kind](entry["num_features"], eps=module.eps, momentum=module.momentum,
                                 affine=module.affine, track_running_stats=module.track_running_stats, **factory)


def _device_and_dtype(module: nn.Module) -> dict:
    # BatchNorm without affine has buffers only; every resizable module has some floating tensor.
    tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
    return {"device": tensors[0].device, "dtype": tensors[0].dtype} if tensors else {}


def replace_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent_path), child, new)


def resize_modules(model: nn.Module, shapes: dict, seed: int | None = None) -> None:
    """Replace the modules named in `shapes` by resized, freshly initialized ones (in place).

    New modules are initialized like every model (initialization.py); with `seed` the draws come
    from a forked RNG seeded with it, so a seeded rebuild is reproducible. Each entry is checked
    against its module; that neighbouring sizes agree is left to the forward pass.
    """
    new_modules = {}
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        for path, entry in shapes.items():
            module = _find_module(model, path)
            _check_entry(path, module, entry)
            try:
                new_modules[path] = resized(module, entry)
            except (ValueError, RuntimeError) as exc:  # e.g. channels not divisible by groups
                raise TicketlabError(f"architecture shapes: cannot resize {path!r} to {entry}: {exc}") from None
            initialize_weights_(new_modules[path])
    for path, new in new_modules.items():
        replace_module(model, path, new)


def _find_module(model: nn.Module, path) -> nn.Module | None:
    if not isinstance(path, str) or not path:
        return None
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _check_entry(path, module: nn.Module | None, entry) -> None:
    if module is None:
        raise TicketlabError(f"architecture shapes: the model has no module {path!r}; the ticket file may be damaged")
    kind = type(module).__name__
    if not is_resizable(module):
        raise TicketlabError(f"architecture shapes: module {path!r} is a {kind}, which cannot be resized")
    expected = {"type", *SIZE_KEYS[kind]}
    if not isinstance(entry, dict) or set(entry) != expected or entry["type"] != kind:
        raise TicketlabError(f"architecture shapes: entry for {path!r} must be a dict with type {kind!r} and keys "
                             f"{sorted(expected)}; got {entry!r}")
    for key in SIZE_KEYS[kind]:
        value = entry[key]
        valid = isinstance(value, bool) if key == "bias" else (
            isinstance(value, int) and not isinstance(value, bool) and value > 0)
        if not valid:
            raise TicketlabError(f"architecture shapes: {path}.{key} must be "
                                 f"{'true or false' if key == 'bias' else 'a positive int'}; got {value!r}")
