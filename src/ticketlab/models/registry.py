"""The model registry: model names (or name patterns) mapped to builders, and `create_model`.

A family registers a regular expression over names plus a builder. Names carry the
architecture's knobs (`mlp_300_100`, `resnet56_w32`), so a model is fully described by
(name, input_shape, num_classes) — the spec a ticket file stores to rebuild its model.

Every model `create_model` returns carries three attributes the rest of ticketlab relies on:
  - `prunable_names`: names (as in `named_parameters()`) of the weights of every Linear and
    Conv layer — never biases, never BatchNorm;
  - `output_name`: the final classifier Linear's weight (IMP may prune it at its own rate);
  - `architecture`: {"name", "input_shape", "num_classes"}, for `model_from_architecture`
    (a shrunk model adds "shapes", the sizes of its smaller modules).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.factories import check_kwargs, is_factory_name
from ticketlab.models.factory import build_from_factory
from ticketlab.models.initialization import BIAS_INITS, WEIGHT_INITS, initialize_weights_
from ticketlab.models.resize import resize_modules

Builder = Callable[[re.Match, tuple[int, ...], int], nn.Module]

PRUNABLE_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class ModelFamily:
    pattern: str            # what users read, e.g. "resnet<D>[_w<W>]"
    regex: re.Pattern       # matched against the whole name
    examples: tuple[str, ...]
    description: str
    build: Builder          # (name match, input_shape, num_classes) -> uninitialized model


_FAMILIES: list[ModelFamily] = []


def register_model(pattern: str, regex: str, description: str, examples: tuple[str, ...] = ()):
    """Decorator registering `build(match, input_shape, num_classes)` for names matching `regex`."""
    def decorator(build: Builder) -> Builder:
        _FAMILIES.append(ModelFamily(pattern, re.compile(regex), tuple(examples), description, build))
        return build
    return decorator


def _help_entry(family: ModelFamily) -> str:
    # A literal name stands for itself; a pattern needs examples to be readable.
    if family.examples == (family.pattern,) or not family.examples:
        return family.pattern
    return f"{family.pattern} (e.g. {', '.join(family.examples)})"


def model_names() -> list[str]:
    """The registered names and patterns, with examples — for help text and error messages."""
    return [_help_entry(family) for family in _FAMILIES]


def describe_models() -> list[tuple[str, str]]:
    """(name or pattern, one-line description) for every registered family."""
    return [(_help_entry(family), family.description) for family in _FAMILIES]


def known_models_hint() -> str:
    """One line listing the known names, to append to error messages."""
    return "known models: " + "; ".join(model_names())


def _find_family(name: str) -> tuple[ModelFamily, re.Match]:
    for family in _FAMILIES:
        match = family.regex.fullmatch(name)
        if match:
            return family, match
    raise TicketlabError(f"unknown model {name!r}; {known_models_hint()}")


def _check_shape_and_classes(name: str, input_shape, num_classes) -> tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise TicketlabError(f"model {name}: input_shape must be a non-empty tuple of positive ints "
                             f"such as (1, 28, 28); got {input_shape!r}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise TicketlabError(f"model {name}: num_classes must be a positive int; got {num_classes!r}")
    return shape


def require_image_shape(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) for image models; other ranks are a user mistake."""
    if len(input_shape) != 3:
        raise TicketlabError(f"model {name} needs image input_shape (channels, height, width) such as "
                             f"(3, 32, 32); got {tuple(input_shape)}; use an mlp_* model for flat inputs")
    return input_shape


def find_prunable_names(model: nn.Module, include: list[str] | None = None, exclude: list[str] | None = None) -> list[str]:
    """Weights of every Linear and Conv layer (subclasses included) and attention projections (the input
    projection of nn.MultiheadAttention; its output projection is a Linear), in `named_parameters()`
    order; `include` / `exclude` narrow them by name pattern (fnmatch, e.g. "encoder.*")."""
    names = set()
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        if isinstance(module, PRUNABLE_LAYER_TYPES) and isinstance(getattr(module, "weight", None), nn.Parameter):
            names.add(f"{dot}weight")
        elif isinstance(module, nn.MultiheadAttention):
            names.update(f"{dot}{p}" for p in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
                         if getattr(module, p, None) is not None)
    found = [name for name, _ in model.named_parameters() if name in names]
    if include:
        found = [n for n in found if any(fnmatch.fnmatchcase(n, pattern) for pattern in include)]
    if exclude:
        found = [n for n in found if not any(fnmatch.fnmatchcase(n, pattern) for pattern in exclude)]
    return found


def find_output_name(model: nn.Module) -> str:
    """The weight of the last Linear registered in the model: its classifier."""
    linears = [prefix for prefix, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise TicketlabError(f"{type(model).__name__} has no Linear layer, so it has no output layer; "
                             "build models with ticketlab.models.create_model")
    return f"{linears[-1]}.weight" if linears[-1] else "weight"


def prunable_names(model: nn.Module) -> list[str]:
    """Names of the model's prunable tensors (conv and linear weights)."""
    names = getattr(model, "prunable_names", None)
    return list(names) if names is not None else find_prunable_names(model)


def output_name(model: nn.Module) -> str:
    """Parameter name of the output (classifier) layer's weight."""
    name = getattr(model, "output_name", None)
    return name if name is not None else find_output_name(model)


def create_model(name: str, input_shape: tuple[int, ...], num_classes: int, seed: int | None = None, *,
                 kwargs: dict | str | None = None, prunable: dict | None = None, output: str | None = None,
                 init: dict | None = None) -> nn.Module:
    """Build and initialize the model called `name` for inputs of `input_shape` (no batch dim).

    `name` is a registered name or `package.module:factory` (see models/factory.py; `kwargs` are the
    factory's JSON keyword arguments). `prunable` = {"include": [patterns], "exclude": [patterns]}
    narrows the prunable tensors by name, and `output` names the output layer's weight (default: the
    last Linear's). With `seed`, initialization runs on a forked CPU RNG seeded with it, so the same
    seed gives bit-identical weights and the caller's global RNG stream is left exactly where it was.
    `init` = {"weights": "kaiming" or "glorot", "bias": "zero" or "uniform"} chooses the scheme of a
    registered model (models/initialization.py; default Kaiming normal, zero biases).
    """
    if not isinstance(name, str):
        raise TicketlabError(f"model name must be a string; got {name!r}; {known_models_hint()}")
    custom = is_factory_name(name)
    family, match = (None, None) if custom else _find_family(name)
    if kwargs and not custom:
        raise TicketlabError(f"model {name} takes no keyword arguments; they are for package.module:factory models")
    kwargs = check_kwargs(kwargs, name) if custom else {}
    prunable = _check_prunable(prunable)
    shape = _check_shape_and_classes(name, input_shape, num_classes)
    init = _check_init(init, name, custom)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
        raise TicketlabError(f"model seed must be a non-negative int below 2**63 or None; got {seed!r}")

    def build() -> nn.Module:
        if custom:
            return build_from_factory(name, shape, num_classes, kwargs)
        return _build_and_initialize(family, match, shape, num_classes, init)

    if seed is None:
        model = build()
    else:
        # devices=[]: models are built on the CPU, so there is no CUDA RNG state to protect.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build()

    architecture = {"name": name, "input_shape": list(shape), "num_classes": num_classes}
    if custom:
        architecture["kwargs"] = kwargs
    if prunable:
        architecture["prunable"] = prunable
    if output is not None:
        architecture["output"] = output
    if init != DEFAULT_INIT:
        architecture["init"] = init
    return describe(model, architecture)


def model_from_config(cfg, input_shape: tuple[int, ...], num_classes: int, seed: int | None = None) -> nn.Module:
    """The model a ModelConfig names (registry name or factory, with its arguments and pruned tensors)."""
    return create_model(cfg.model, input_shape, num_classes, seed, kwargs=cfg.kwargs or None,
                        prunable=cfg.patterns(), output=cfg.output or None,
                        init={"weights": cfg.init, "bias": cfg.bias})


def describe(model: nn.Module, architecture: dict) -> nn.Module:
    """Attach what ticketlab relies on (prunable_names, output_name, architecture) to a built model."""
    prunable = architecture.get("prunable") or {}
    model.prunable_names = find_prunable_names(model, prunable.get("include"), prunable.get("exclude"))
    if not model.prunable_names:
        raise TicketlabError(f"model {architecture['name']} has no prunable weights (Linear, Conv or attention "
                             "projections) left by the include/exclude patterns; widen them")
    output = architecture.get("output")
    if output is not None and output not in dict(model.named_parameters()):
        raise TicketlabError(f"output layer {output!r} is not a parameter of model {architecture['name']}; "
                             "name its weight as in named_parameters(), e.g. head.weight")
    model.output_name = output if output is not None else find_output_name(model)
    model.architecture = architecture
    return model


def _check_prunable(prunable) -> dict:
    if not prunable:
        return {}
    if (not isinstance(prunable, dict) or not set(prunable) <= {"include", "exclude"}
            or not all(isinstance(v, list) and all(isinstance(p, str) for p in v) for v in prunable.values())):
        raise TicketlabError(f"prunable must be {{'include': [name patterns], 'exclude': [name patterns]}}; "
                             f"got {prunable!r}")
    return {k: list(v) for k, v in prunable.items() if v}


def _build_and_initialize(family: ModelFamily, match: re.Match, shape: tuple[int, ...],
                          num_classes: int, init: dict) -> nn.Module:
    model = family.build(match, shape, num_classes)
    initialize_weights_(model, init["weights"], init["bias"])
    return model


DEFAULT_INIT = {"weights": "kaiming", "bias": "zero"}


def _check_init(init, name: str, custom: bool) -> dict:
    """The initialization scheme, defaults filled in; a model of one's own keeps its factory's."""
    if init is None:
        return dict(DEFAULT_INIT)
    if (not isinstance(init, dict) or not set(init) <= set(DEFAULT_INIT) or init.get("weights", "kaiming")
            not in WEIGHT_INITS or init.get("bias", "zero") not in BIAS_INITS):
        raise TicketlabError(f"init must be {{'weights': one of {list(WEIGHT_INITS)}, 'bias': one of "
                             f"{list(BIAS_INITS)}}}; got {init!r}")
    init = {**DEFAULT_INIT, **init}
    if custom and init != DEFAULT_INIT:
        raise TicketlabError(f"model {name} is initialized by its factory; --init and --bias apply to registered "
                             "models")
    return init


ARCHITECTURE_KEYS = ("name", "input_shape", "num_classes")
# "shapes": sizes of the modules a shrink made smaller (deploy/shrink.py);
# "paths": hidden widths of a searched supernet's kernel paths (models/supernet.py);
# "kwargs": a factory model's keyword arguments; "prunable", "output": the choice of pruned tensors.
# "init": a registered model's initialization when not the default (Kaiming normal, zero biases).
OPTIONAL_ARCHITECTURE_KEYS = ("shapes", "paths", "kwargs", "prunable", "output", "init")
# Architecture keys a family rebuilds itself, registered by that family (supernet.py registers "paths"),
# so that the registry never imports a family.
ARCHITECTURE_HOOKS: dict[str, Callable] = {}


def model_from_architecture(spec: dict, seed: int | None = None) -> nn.Module:
    """Rebuild a model from its `architecture` dict (as stored in a ticket file's metadata).

    An optional "paths" dict rebuilds a searched supernet's kernel paths at their widths, and an
    optional "shapes" dict {module path: sizes} resizes those modules after building by name.
    """
    if not isinstance(spec, dict):
        raise TicketlabError(f"architecture must be a dict with keys {list(ARCHITECTURE_KEYS)}; got {spec!r}")
    missing = [key for key in ARCHITECTURE_KEYS if key not in spec]
    extra = sorted(set(spec) - set(ARCHITECTURE_KEYS) - set(OPTIONAL_ARCHITECTURE_KEYS))
    if missing or extra:
        raise TicketlabError(f"architecture {spec!r} must have exactly the keys {list(ARCHITECTURE_KEYS)}, "
                             f"optionally {list(OPTIONAL_ARCHITECTURE_KEYS)} (missing {missing}, unexpected {extra}); "
                             "the ticket file may be damaged")
    model = create_model(spec["name"], spec["input_shape"], spec["num_classes"], seed=seed, kwargs=spec.get("kwargs"),
                         prunable=spec.get("prunable"), output=spec.get("output"), init=spec.get("init"))
    if "paths" in spec:
        if "paths" not in ARCHITECTURE_HOOKS:
            raise TicketlabError("architecture has searched paths but no model family rebuilds them")
        ARCHITECTURE_HOOKS["paths"](model, spec["paths"], seed=seed)
        describe(model, spec)
    if "shapes" in spec:
        if not isinstance(spec["shapes"], dict):
            raise TicketlabError(f"architecture shapes must be a dict of module sizes; got {spec['shapes']!r}")
        resize_modules(model, spec["shapes"], seed=seed)
        model.architecture = spec
    return model

