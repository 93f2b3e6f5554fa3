"""Where a model's hidden units are, and which free transformations act on them.

A *site* is a set of hidden units (neurons or channels) that a thief can permute and rescale without
changing the function: the channel spaces of deploy/shrink.py's analysis (torch.fx trace, union-find
over spaces; a residual stream is one site shared by every layer that reads or writes it) that no
unknown operation touches. Every operation the analysis follows (ReLU, max/avg pooling, flatten,
residual add, Identity, Dropout, a mean over spatial axes) commutes with a permutation of the
channels and with a positive per-channel scale, and a BatchNorm that directly follows its one
producer layer is folded into that layer's rows before anything is read. So a site's unit j can be
moved (rows j of every producer, biases, BatchNorm entries and columns j of every consumer together)
and multiplied by c > 0 (producers' rows and biases by c, consumers' columns by 1/c) freely.

A *layer* (Linear or Conv, groups 1) reads one space and writes one. Its weight is viewed as
(out units, in units, entries per block): block (j, i) is everything linking input unit i to output
unit j — one weight of a Linear, one k×k kernel of a Conv, the H·W weights a Linear after a flatten
reads from channel i. A layer *carries* signature bits when each of its two sides is either a site
(alignable) or fixed by the interface (the network's input features, its output classes). Layers next
to a space that an unknown operation touches (attention, LayerNorm, a reshape, a BatchNorm that is
not right after its layer, a layer called twice, ...) carry nothing: a thief might transform that
space in ways the verifier cannot undo.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import torch
from torch import fx, nn

from ticketlab.deploy import shrink
from ticketlab.errors import TicketlabError
from ticketlab.models import model_from_architecture
from ticketlab.models.registry import prunable_names

INPUT, OUTPUT, SITE, OPAQUE = "input", "output", "site", "opaque"


@dataclass(frozen=True)
class Layer:
    path: str
    weight: str
    bias: str | None
    kind: str               # "linear" or "conv"
    out_units: int
    in_units: int
    block: int              # entries per (out unit, in unit) block
    in_role: str            # "site", "input" or "opaque"
    out_role: str           # "site", "output" or "opaque"
    in_site: int | None
    out_site: int | None
    norm: str | None        # BatchNorm folded into this layer's rows (module path)
    norm_eps: float

    @property
    def blocks(self) -> int:
        return self.out_units * self.in_units

    def view(self, weight: torch.Tensor, in_units: int | None = None) -> torch.Tensor:
        """(out units, in units, block entries) view of this layer's weight (possibly shrunk)."""
        return weight.reshape(weight.shape[0], in_units if in_units is not None else self.in_units, -1)


@dataclass(frozen=True)
class Site:
    index: int
    units: int
    producers: tuple[int, ...]   # layer indices writing the site (their rows)
    consumers: tuple[int, ...]   # layer indices reading it (their column blocks)


@dataclass(frozen=True)
class Structure:
    name: str
    layers: tuple[Layer, ...]
    sites: tuple[Site, ...]
    carriers: tuple[int, ...]
    norms: dict                 # BatchNorm path -> layer index it folds into
    unsupported: tuple[str, ...]  # operations that make spaces opaque (for messages)

    def digest(self) -> str:
        """SHA-256 naming the structure (layers, roles, sites): part of what the test derives from."""
        text = json.dumps([[l.path, l.kind, l.out_units, l.in_units, l.block, l.in_role, l.out_role, l.in_site,
                            l.out_site, l.norm] for l in self.layers], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def carrier_blocks(self) -> int:
        return sum(self.layers[i].blocks for i in self.carriers)


def _module_name(node: fx.Node, graph: fx.GraphModule) -> str:
    if node.op == "call_module":
        return type(graph.get_submodule(node.target)).__name__
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def analyse(model: nn.Module) -> Structure:
    """The structure of a model built by ticketlab (it carries `architecture`)."""
    spec = getattr(model, "architecture", None) or {}
    name = spec.get("name", type(model).__name__) if isinstance(spec, dict) else type(model).__name__
    work = _eval_copy(model)
    try:
        graph = shrink._trace(work)
    except TicketlabError:
        raise TicketlabError(f"{name}: ownership signatures need a model torch.fx can trace, to find its hidden units; "
                             f"{type(model).__name__}'s forward cannot be traced") from None
    values = shrink._record(graph, shrink._probe(work, spec["input_shape"]))
    walk = shrink._walk(graph, values)
    spaces = walk.spaces
    find = spaces.find
    nodes = {node.target: node for node in graph.graph.nodes if node.op == "call_module"}
    input_roots = {find(0)} if spaces.parent else set()

    # BatchNorms: foldable when right after their one producer layer, used by nothing else.
    norms, opaque_roots = {}, set()
    for path, (_, space) in walk.norms.items():
        node = nodes.get(path)
        source = node.args[0] if node is not None and node.args else None
        if isinstance(source, fx.Node) and source.op == "call_module" and source.target in walk.layers \
                and len(source.users) == 1:
            norms[path] = source.target
        else:
            opaque_roots.add(find(space))
    names = set(prunable_names(model))
    ordered = [path for path in (n.target for n in graph.graph.nodes if n.op == "call_module") if path in walk.layers]

    roots: dict[int, int] = {}  # union-find root -> site index, in order of the first producer

    def role(space: int, side: str, node: fx.Node) -> tuple[str, int | None]:
        root = find(space)
        if not spaces.frozen[root] and root not in opaque_roots:
            if root not in roots:
                roots[root] = len(roots)
            return SITE, roots[root]
        if side == "in" and root in input_roots:
            return INPUT, None
        if side == "out" and node is not None and any(user.op == "output" for user in node.users):
            return OUTPUT, None
        return OPAQUE, None

    layers = []
    folded = {producer: path for path, producer in norms.items()}
    for path in ordered:
        found = walk.layers[path]
        module = found.module
        out_role, out_site = role(found.out_space, "out", nodes.get(path))
        in_role, in_site = role(found.in_space, "in", None)
        kind = "linear" if isinstance(module, nn.Linear) else "conv"
        in_units = module.weight.shape[1]
        block = math.prod(module.weight.shape[2:])  # a kernel; 1 for a Linear
        if kind == "linear" and in_role != INPUT:  # a flatten's block of H·W features per channel
            in_units, block = spaces.sizes[find(found.in_space)], found.block
        norm = folded.get(path)
        layers.append(Layer(path, f"{path}.weight", f"{path}.bias" if module.bias is not None else None, kind,
                            module.weight.shape[0], in_units, block, in_role, out_role, in_site, out_site, norm,
                            float(getattr(work.get_submodule(norm), "eps", 1e-5)) if norm else 0.0))
    index = {layer.path: i for i, layer in enumerate(layers)}
    sites = []
    for root, s in sorted(roots.items(), key=lambda item: item[1]):
        sites.append(Site(s, spaces.sizes[root], tuple(i for i, l in enumerate(layers) if l.out_site == s),
                          tuple(i for i, l in enumerate(layers) if l.in_site == s)))
    # A site every unit of which has a producer and a consumer; otherwise it cannot be canonicalized.
    broken = {s.index for s in sites if not s.producers or not s.consumers}
    if broken:
        layers = [_demote(l, broken) for l in layers]
    carriers = tuple(i for i, l in enumerate(layers) if l.weight in names and l.in_role in (SITE, INPUT)
                     and l.out_role in (SITE, OUTPUT))
    unsupported = sorted({_module_name(n, graph) for n in graph.graph.nodes if n.op in ("call_module", "call_function",
                                                                                          "call_method")
                          and not _known(n, graph)})
    return Structure(name, tuple(layers), tuple(sites), carriers, {p: index[l] for p, l in norms.items()},
                     tuple(unsupported))


def _demote(layer: Layer, broken: set) -> Layer:
    changes = {}
    if layer.in_site in broken:
        changes.update(in_role=OPAQUE, in_site=None)
    if layer.out_site in broken:
        changes.update(out_role=OPAQUE, out_site=None)
    return layer if not changes else Layer(**{**layer.__dict__, **changes})


def _eval_copy(model: nn.Module) -> nn.Module:
    import copy
    work = copy.deepcopy(model).eval()
    return work


_KNOWN_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.Identity, nn.Dropout,
                  nn.Flatten, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
                  nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.Sequential)
_KNOWN_CALLS = {"relu", "relu_", "add", "add_", "iadd", "flatten", "mean", "size", "dim", "getattr"}


def _known(node: fx.Node, graph: fx.GraphModule) -> bool:
    if node.op == "call_module":
        return isinstance(graph.get_submodule(node.target), _KNOWN_MODULES)
    return _module_name(node, graph) in _KNOWN_CALLS


def structure_of(architecture: dict) -> Structure:
    return analyse(model_from_architecture(architecture))


def require_carriers(structure: Structure, minimum_blocks: int, bits: int) -> None:
    """One line saying why a model cannot carry a white-box signature, or nothing."""
    if not structure.carriers:
        ops = ", ".join(structure.unsupported[:4]) or "none"
        raise TicketlabError(
            f"{structure.name} cannot carry a white-box signature: no Linear/Conv layer sits between hidden units "
            "ticketlab can align (a chain Linear/Conv → ReLU, BatchNorm, pooling, flatten or residual add → "
            f"Linear/Conv); its hidden units pass through operations whose symmetries are not modelled ({ops}), "
            "so a thief could transform them undetected")
    if structure.carrier_blocks() < minimum_blocks:
        raise TicketlabError(f"{structure.name} is too small to carry a {bits}-bit signature: its carrier layers "
                             f"({', '.join(structure.layers[i].path for i in structure.carriers)}) hold "
                             f"{structure.carrier_blocks():,} connections, the scheme needs at least {minimum_blocks:,}")
