"""Shrink a ticket physically: remove the neurons and channels its mask leaves dead.

`shrink(model, mask)` returns a smaller model, of the same classes and forward code, that computes
in eval mode the same function as `model` with `mask` applied, plus the mask restricted to what is
kept. `count_parameters` counts what is left. Works on every registry model; any other traceable
model built from Linear/Conv/BatchNorm/ReLU/pooling/flatten/add shrinks the same way.

Finding the channels. The model is traced with torch.fx and run on a small probe batch. Every
feature tensor (axis 1: neurons or channels) belongs to a *channel space*, grouped with union-find:
  - a Linear or Conv output opens a new space: the layer *produces* it (its weight rows) and
    *consumes* the space of its input (its weight columns);
  - BatchNorm, ReLU, max/avg pooling, Identity, Dropout and a mean over spatial axes keep the space;
  - `a + b` merges the spaces of a and b, so a ResNet stage's residual stream (stem or projection
    shortcut, every block's conv2/bn2) is one space, shared by every layer reading the stream;
  - flatten(1) or nn.Flatten() keeps the space but maps channel c to the features c*S .. c*S+S-1
    (S = spatial size): the block of columns a Linear after it reads from that channel.
A space holding the model's input or output, or touched by any other operation, is *frozen*: none
of its channels is removed (inputs and logits stay as they are; what is not understood is kept).

The rules, applied until nothing changes to a working copy whose weights are multiplied by the
mask; every step leaves the function unchanged:
  1. Unused: every consumer reads channel c only through masked weights. The channel goes, and the
     rows producing it are masked as well (their value is never read), which can leave channels
     feeding those rows unused in turn.
  2. Constant: every producer writes c only through masked rows, so c holds values that do not
     depend on the input (the bias, then per-channel BatchNorm, ReLU, pooling). They are read off
     the probe run at each consumer's input, and must be equal for every sample (and for a conv at
     every position). The channel goes when, for each consumer still holding live weights on it,
     the value is exactly 0 (it adds nothing), or the consumer folds it into its bias: a Linear
     with a bias (bias += W[:, cols] @ value) or a Conv with a bias and no padding
     (bias += value * W[:, c].sum()). Those weights are then masked. A padded conv sees zeros at
     the borders, where the constant is not constant: such a channel stays, as does one read by a
     layer without a bias (no bias is ever created).
A removed channel leaves its producers' weight rows and biases, every BatchNorm of its space
(weight, bias, running_mean, running_var) and its consumers' weight columns.

A space whose channels would all go keeps channel 0 (with its weights masked, so it is unused):
zero-sized layers would not run. Folded biases are summed in float64, so outputs match the masked
model up to float rounding.

The returned mask is the working mask restricted to the kept rows and columns; removed channels
hold no live weight there, so
    shrunk_mask.num_kept() == mask.num_kept() - (live weights into channels nothing reads
                                                  + live weights out of constant channels, folded)
which is mask.num_kept() when no channel is dead. The shrunk model's weights are already
multiplied by it, and it carries `prunable_names`, `output_name` and `architecture` = the
original spec plus "shapes": {module path: sizes} for every module whose size changed
(`model_from_architecture` rebuilds it).
"""

from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask
from ticketlab.models.registry import output_name, prunable_names
from ticketlab.models.resize import is_resizable, module_shape, replace_module, resized

PROBE_BATCH = 2

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_ELEMENTWISE_MODULES = (nn.ReLU, nn.Identity, nn.Dropout)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
          nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
_RELU_FUNCTIONS = (torch.relu, F.relu)
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_HARMLESS_METHODS = ("size", "dim")  # read a tensor's shape, not its channels


def count_parameters(model: nn.Module) -> int:
    """Number of parameter values (weights, biases, BatchNorm affine); buffers are not counted."""
    return sum(p.numel() for p in model.parameters())


def shrink(model: nn.Module, mask: Mask) -> tuple[nn.Module, Mask]:
    """A physically smaller model that computes exactly the same function (eval mode) as `model`
    with `mask` applied, and the mask restricted to what is kept."""
    spec = _architecture(model)
    _check_mask(model, mask)
    work = copy.deepcopy(model).eval()
    _multiply_(work, mask)
    graph = _trace(work)
    probe = _probe(work, spec["input_shape"])
    values = _record(graph, probe)
    pruner = _Pruner(_walk(graph, values), mask)

    while True:
        pruner.drop_unused()
        if not pruner.has_constant_channels() or not pruner.fold_constants(_record(graph, probe)):
            break

    shapes = _rebuild(work, pruner)
    work.train(model.training)
    work.prunable_names = list(prunable_names(model))
    work.output_name = output_name(model)
    work.architecture = {**spec, "shapes": {**spec.get("shapes", {}), **shapes}}
    return work, pruner.restricted_mask(mask)


def _architecture(model: nn.Module) -> dict:
    spec = getattr(model, "architecture", None)
    if not isinstance(spec, dict) or "input_shape" not in spec:
        raise TicketlabError(f"cannot shrink a {type(model).__name__} without an `architecture` attribute; "
                             "build models with ticketlab.models.create_model")
    return spec


def _check_mask(model: nn.Module, mask: Mask) -> None:
    mask.check_matches(model)
    others = sorted(set(mask.names()) - set(prunable_names(model)))
    if others:
        raise TicketlabError(f"mask covers tensors that are not Linear/Conv weights ({', '.join(others)}); "
                             "shrink only accepts masks over the model's prunable_names")


@torch.no_grad()
def _multiply_(model: nn.Module, mask: Mask) -> None:
    # Not mask.apply_: that caches the model's tensors inside the mask, and this copy is temporary.
    params = dict(model.named_parameters())
    for name, keep in mask.tensors.items():
        params[name].mul_(keep.to(device=params[name].device, dtype=params[name].dtype))


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - fx raises many types; any of them means: not traceable
        raise TicketlabError(f"cannot shrink {type(model).__name__}: torch.fx cannot trace its forward "
                             f"({type(exc).__name__}: {exc})".replace("\n", " ")) from None


def _probe(model: nn.Module, input_shape) -> torch.Tensor:
    # A private generator: shrinking must not move the caller's random stream.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((PROBE_BATCH, *input_shape), generator=generator)
    reference = next(model.parameters())
    return x.to(device=reference.device, dtype=reference.dtype)


class _Recorder(fx.Interpreter):
    """Runs the graph and keeps a copy of every node's output (copies: in-place ops come later)."""

    def __init__(self, graph: fx.GraphModule):
        super().__init__(graph)
        self.values: dict[fx.Node, object] = {}

    def run_node(self, node: fx.Node):
        out = super().run_node(node)
        self.values[node] = out.detach().clone() if isinstance(out, torch.Tensor) else out
        return out


@torch.no_grad()
def _record(graph: fx.GraphModule, probe: torch.Tensor) -> dict:
    recorder = _Recorder(graph)
    recorder.run(probe)
    return recorder.values


# ---- channel spaces -----------------------------------------------------------------------------

class _Spaces:
    """Union-find over channel spaces; a space has a channel count and may be frozen."""

    def __init__(self):
        self.parent: list[int] = []
        self.sizes: list[int] = []
        self.frozen: list[bool] = []

    def new(self, size: int, frozen: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.sizes.append(size)
        self.frozen.append(frozen)
        return len(self.parent) - 1

    def find(self, space: int) -> int:
        while self.parent[space] != space:
            self.parent[space] = self.parent[self.parent[space]]
            space = self.parent[space]
        return space

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            self.frozen[a] = self.frozen[a] or self.frozen[b]
        return a

    def freeze(self, space: int) -> None:
        self.frozen[self.find(space)] = True

    def is_frozen(self, space: int) -> bool:
        return self.frozen[self.find(space)]


@dataclass
class _Layer:
    """A Linear or Conv call: reads `block` consecutive input features per channel of `in_space`."""
    path: str
    module: nn.Module
    in_space: int
    block: int
    out_space: int
    input_node: fx.Node

    def columns(self, channel: int) -> slice:
        return slice(channel * self.block, (channel + 1) * self.block)


@dataclass
class _Walk:
    spaces: _Spaces
    layers: dict[str, _Layer]
    norms: dict[str, tuple[nn.Module, int]]


def _walk(graph: fx.GraphModule, values: dict) -> _Walk:
    """Give every feature tensor of the graph a (space, block) and collect layers and BatchNorms."""
    spaces = _Spaces()
    info: dict[fx.Node, tuple[int, int]] = {}
    layers: dict[str, _Layer] = {}
    norms: dict[str, tuple[nn.Module, int]] = {}
    called: set[str] = set()

    def features(node) -> bool:
        return isinstance(node, fx.Node) and node in info

    def freeze_uses(node: fx.Node) -> None:
        for arg in node.all_input_nodes:
            if arg in info:
                spaces.freeze(info[arg][0])

    for node in graph.graph.nodes:
        out = values.get(node)
        is_feature = isinstance(out, torch.Tensor) and out.dim() >= 2
        if node.op == "placeholder":
            if is_feature:
                info[node] = (spaces.new(out.shape[1], frozen=True), 1)
            continue
        if node.op == "output":
            freeze_uses(node)
            continue
        if not any(features(arg) for arg in node.all_input_nodes):
            if is_feature:  # e.g. a constant tensor: nothing known about it
                info[node] = (spaces.new(out.shape[1], frozen=True), 1)
            continue
        if node.op == "call_module":
            result = _module_rule(node, graph.get_submodule(node.target), values, info, spaces, layers, norms, called)
        elif node.op in ("call_function", "call_method"):
            if _is_harmless(node):
                continue
            result = _function_rule(node, values, info, spaces)
        else:
            result = None
        if result is None or not is_feature:
            freeze_uses(node)  # an operation this analysis does not know: keep its channels
            if is_feature:
                info[node] = (spaces.new(out.shape[1], frozen=True), 1)
        else:
            info[node] = result
    return _Walk(spaces, layers, norms)


def _single_input(node: fx.Node, info: dict):
    if len(node.args) == 1 and not node.kwargs and isinstance(node.args[0], fx.Node) and node.args[0] in info:
        return node.args[0]
    return None


def _module_rule(node, module, values, info, spaces, layers, norms, called):
    """(space, block) of a module call's output, or None if its channels cannot be followed."""
    x = _single_input(node, info)
    if x is None:
        return None
    path = node.target
    space, block = info[x]
    value = values[x]
    if isinstance(module, _LAYERS + _NORMS):
        # A layer run twice would have to shrink alike in both places: keep its channels.
        if path in called:
            if path in layers:
                spaces.freeze(layers[path].in_space)
                spaces.freeze(layers[path].out_space)
            if path in norms:
                spaces.freeze(norms[path][1])
            return None
        called.add(path)
    if isinstance(module, _LAYERS):
        return _layer_rule(node, path, module, x, value, space, block, spaces, layers)
    if isinstance(module, _NORMS):
        usable = (is_resizable(module) and block == 1 and module.track_running_stats
                  and module.running_mean is not None)
        if not usable:
            return None
        norms[path] = (module, space)
        return info[x]
    if isinstance(module, _ELEMENTWISE_MODULES):
        return info[x]
    if isinstance(module, nn.Flatten):
        return _flatten_rule(module.start_dim, module.end_dim, value, info[x])
    if isinstance(module, _POOLS):
        per_channel = block == 1 and value.dim() >= 3 and not getattr(module, "return_indices", False)
        return info[x] if per_channel else None
    return None


def _layer_rule(node, path, module, x, value, space, block, spaces, layers):
    if not is_resizable(module):
        return None
    if isinstance(module, nn.Linear):
        if value.dim() != 2 or spaces.sizes[spaces.find(space)] * block != module.in_features:
            return None
        out_space = spaces.new(module.out_features)
    else:
        if block != 1 or module.groups != 1 or value.dim() != module.weight.dim():
            return None
        out_space = spaces.new(module.out_channels)
    layers[path] = _Layer(path, module, space, block, out_space, x)
    return (out_space, 1)


def _is_harmless(node: fx.Node) -> bool:
    return (node.op == "call_method" and node.target in _HARMLESS_METHODS) or \
        (node.op == "call_function" and node.target is getattr)


def _function_rule(node, values, info, spaces):
    """(space, block) of a function or method call's output, or None if unknown."""
    target, args = node.target, node.args
    if not args or not isinstance(args[0], fx.Node) or args[0] not in info:
        return None
    x = args[0]
    if target in _RELU_FUNCTIONS or target in ("relu", "relu_"):
        return info[x]
    if target in _ADD_FUNCTIONS or target in ("add", "add_"):
        return _add_rule(node, values, info, spaces)
    if target is torch.flatten or target == "flatten":
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return _flatten_rule(start, end, values[x], info[x])
    if target is torch.mean or target == "mean":
        return _mean_rule(node, values[x], info[x])
    return None


def _add_rule(node, values, info, spaces):
    if len(node.args) != 2 or node.kwargs:
        return None
    a, b = node.args
    if isinstance(b, (int, float)) and not isinstance(b, bool):
        return info[a]  # adding a number keeps every channel where it is
    if not (isinstance(b, fx.Node) and b in info) or values[a].shape != values[b].shape or info[a][1] != info[b][1]:
        return None  # broadcasting or mismatched layouts: channels would not line up
    return (spaces.union(info[a][0], info[b][0]), info[a][1])


def _flatten_rule(start, end, value, space_block):
    if start != 1 or end not in (-1, value.dim() - 1):
        return None
    space, block = space_block
    if value.dim() == 2:
        return space_block
    if block != 1:
        return None
    return (space, math.prod(value.shape[2:]))


def _mean_rule(node, value, space_block):
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if dims is None or space_block[1] != 1 or set(node.kwargs) - {"dim", "keepdim"}:
        return None
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    normalized = {d % value.dim() for d in dims}
    return space_block if normalized and min(normalized) >= 2 else None


# ---- the rules ------------------------------------------------------------------------------------

class _Pruner:
    """Applies the rules to the working copy: masks weights, folds constants, marks removed channels."""

    def __init__(self, walk: _Walk, mask: Mask):
        self.spaces, self.layers, self.norms = walk.spaces, walk.layers, walk.norms
        self.live = {}
        for path, layer in self.layers.items():
            name = f"{path}.weight"
            self.live[path] = mask[name].clone() if name in mask.tensors else torch.ones_like(
                layer.module.weight, dtype=torch.bool)
        find = self.spaces.find
        roots = {find(s) for layer in self.layers.values() for s in (layer.in_space, layer.out_space)}
        self.removed = {root: torch.zeros(self.spaces.sizes[root], dtype=torch.bool)
                        for root in roots if not self.spaces.frozen[root]}
        self.producers = {root: [l for l in self.layers.values() if find(l.out_space) == root] for root in roots}
        self.consumers = {root: [l for l in self.layers.values() if find(l.in_space) == root] for root in roots}

    def _live_inputs(self, layer: _Layer) -> torch.Tensor:
        """Per channel of the input space: does any live weight of `layer` read it?"""
        live = self.live[layer.path]
        channels = self.spaces.sizes[self.spaces.find(layer.in_space)]
        return live.reshape(live.shape[0], channels, -1).any(dim=2).any(dim=0)

    def _live_outputs(self, layer: _Layer) -> torch.Tensor:
        live = self.live[layer.path]
        return live.reshape(live.shape[0], -1).any(dim=1)

    @torch.no_grad()
    def _mask_rows(self, layer: _Layer, rows: torch.Tensor) -> None:
        self.live[layer.path][rows] = False
        layer.module.weight[rows] = 0

    @torch.no_grad()
    def _mask_columns(self, layer: _Layer, channel: int) -> None:
        cols = layer.columns(channel)
        self.live[layer.path][:, cols] = False
        layer.module.weight[:, cols] = 0

    def drop_unused(self) -> None:
        """Rule 1, to a fixed point: masking the rows of an unused channel may unuse others."""
        changed = True
        while changed:
            changed = False
            for root, removed in self.removed.items():
                used = torch.zeros_like(removed)
                for layer in self.consumers[root]:
                    used |= self._live_inputs(layer)
                unused = ~used & ~removed
                if unused.any():
                    removed |= unused
                    for layer in self.producers[root]:
                        self._mask_rows(layer, unused)
                    changed = True

    def _constant_channels(self, root: int) -> torch.Tensor:
        written = torch.zeros_like(self.removed[root])
        for layer in self.producers[root]:
            written |= self._live_outputs(layer)
        return ~written & ~self.removed[root]

    def has_constant_channels(self) -> bool:
        return any(self._constant_channels(root).any() for root in self.removed)

    def fold_constants(self, values: dict) -> bool:
        """Rule 2 on the values of one probe run; True if a channel went."""
        changed = False
        folded_into: set[str] = set()
        for root in self.removed:
            for channel in self._constant_channels(root).nonzero().flatten().tolist():
                # Folding into a producer of this space moved its constants: wait for a new probe run.
                if any(layer.path in folded_into for layer in self.producers[root]):
                    break
                plan = self._fold_plan(root, channel, values)
                if plan is None:
                    continue
                for layer, delta in plan:
                    if delta is not None:
                        bias = layer.module.bias
                        with torch.no_grad():
                            bias.copy_((bias.double() + delta).to(bias.dtype))
                        folded_into.add(layer.path)
                    self._mask_columns(layer, channel)
                self.removed[root][channel] = True
                changed = True
        return changed

    def _fold_plan(self, root: int, channel: int, values: dict):
        """[(consumer, bias increment or None)] removing a constant channel exactly, or None to keep it."""
        plan = []
        for layer in self.consumers[root]:
            cols = layer.columns(channel)
            if not self.live[layer.path][:, cols].any():
                continue
            seen = values[layer.input_node][:, cols]
            constant = seen[0]
            if not (torch.isfinite(seen).all() and (seen == constant).all()):
                return None  # not the same for every sample: the analysis was wrong, keep it
            if (constant == 0).all():
                plan.append((layer, None))  # exactly 0: its weights add nothing
                continue
            delta = self._bias_increment(layer, cols, constant)
            if delta is None:
                return None
            plan.append((layer, delta))
        return plan

    @staticmethod
    def _bias_increment(layer: _Layer, cols: slice, constant: torch.Tensor):
        module = layer.module
        if module.bias is None:
            return None
        weight = module.weight[:, cols].double()  # already masked
        if isinstance(module, nn.Linear):
            return weight @ constant.double()
        # A conv: the constant must fill its channel, and no zero padding may show at the borders.
        if not (constant == constant.flatten()[0]).all() or not _unpadded(module):
            return None
        return weight.sum(dim=tuple(range(1, weight.dim()))) * constant.flatten()[0].double()

    def kept(self, space: int) -> torch.Tensor | None:
        """Indices of the kept channels of `space`, or None when all are kept."""
        root = self.spaces.find(space)
        removed = self.removed.get(root)
        if removed is None or not removed.any():
            return None
        keep = (~removed).nonzero().flatten()
        return keep if len(keep) else torch.zeros(1, dtype=torch.long)  # never zero-sized: keep channel 0

    def kept_columns(self, layer: _Layer) -> torch.Tensor | None:
        keep = self.kept(layer.in_space)
        if keep is None:
            return None
        return (keep[:, None] * layer.block + torch.arange(layer.block)).flatten()

    def restricted_mask(self, mask: Mask) -> Mask:
        tensors = {}
        for name in mask.names():
            layer = self.layers.get(name.rpartition(".")[0])
            if layer is None or name != f"{layer.path}.weight":
                tensors[name] = mask[name].clone()  # not in the graph: never resized
                continue
            tensors[name] = _take(_take(self.live[layer.path], 0, self.kept(layer.out_space)),
                                  1, self.kept_columns(layer))
        return Mask(tensors)


def _unpadded(conv: nn.Module) -> bool:
    padding = conv.padding
    return padding == "valid" if isinstance(padding, str) else all(p == 0 for p in padding)


def _take(tensor: torch.Tensor | None, dim: int, index: torch.Tensor | None):
    if tensor is None or index is None:
        return tensor
    return tensor.index_select(dim, index.to(tensor.device))


# ---- building the smaller model -------------------------------------------------------------------

@torch.no_grad()
def _rebuild(work: nn.Module, pruner: _Pruner) -> dict:
    """Replace every module that loses channels by a smaller copy; returns their "shapes" entries."""
    shapes = {}
    # Fresh modules draw default initial values; the caller's random stream must not move.
    with torch.random.fork_rng(devices=[]):
        for path, layer in pruner.layers.items():
            rows, cols = pruner.kept(layer.out_space), pruner.kept_columns(layer)
            if rows is None and cols is None:
                continue
            old = layer.module
            weight = _take(_take(old.weight, 0, rows), 1, cols)
            entry = module_shape(old)
            if isinstance(old, nn.Linear):
                entry.update(in_features=weight.shape[1], out_features=weight.shape[0])
            else:
                entry.update(in_channels=weight.shape[1], out_channels=weight.shape[0])
            new = resized(old, entry)
            new.weight.copy_(weight)
            if old.bias is not None:
                new.bias.copy_(_take(old.bias, 0, rows))
            shapes[path] = _replace(work, path, new)
        for path, (old, space) in pruner.norms.items():
            keep = pruner.kept(space)
            if keep is None:
                continue
            new = resized(old, {**module_shape(old), "num_features": len(keep)})
            for name, tensor in [*new.named_parameters(recurse=False), *new.named_buffers(recurse=False)]:
                source = getattr(old, name)
                tensor.copy_(source if name == "num_batches_tracked" else _take(source, 0, keep))
            shapes[path] = _replace(work, path, new)
    return shapes


def _replace(model: nn.Module, path: str, new: nn.Module) -> dict:
    new.train(model.get_submodule(path).training)
    replace_module(model, path, new)
    return module_shape(new)
