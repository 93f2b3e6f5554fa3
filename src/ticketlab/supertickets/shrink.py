"""The search half of two-in-one training: FLOPs-weighted L1 on the depthwise BN scales, physical shrinking.

Architecture variables are the γ of every kernel path's depthwise BN (models/supernet.py). Each channel
j carries a cost π_j = the multiply-adds per example of its path's channel (expand row, depthwise
filter, project column at the block's resolution), divided by the mean over all channels, so the
penalty Σ π_j |γ_j| pushes expensive paths (large kernels, high resolution) harder.

`shrink_` removes every hidden channel with |γ| ≤ threshold from the network itself: rows of the
expand conv and its BN, the depthwise filter and its BN, columns of the project conv. A path left
with no channel is deleted; a block keeps at least its one largest-|γ| channel. The removed channels
are not simply dropped: with γ_j = 0 a channel outputs the constant ReLU(β_j) everywhere, whose
projection Σ_j ReLU(β_j)·W[:, j] is subtracted from the block's output BN running mean, so the
network computes the same function in eval mode (and in train mode, where batch statistics absorb
a constant anyway). The returned `Changes` say how every state_dict entry was cut, so the optimizer
state, the masks, dormant values and the initial weights θ₀ follow the kept channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ticketlab.deploy.flops import output_positions
from ticketlab.models.registry import find_prunable_names
from ticketlab.models.supernet import KernelPath, mixed_blocks


@dataclass
class Changes:
    """How a shrink changed the state_dict: kept indices along a dim, or deleted entries."""
    sliced: dict[str, tuple[int, torch.Tensor]] = field(default_factory=dict)  # key -> (dim, kept indices)
    deleted: set[str] = field(default_factory=set)
    removed_channels: int = 0
    deleted_paths: list[str] = field(default_factory=list)
    shrunk_blocks: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.removed_channels > 0

    def apply_to_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The same cut applied to another state_dict of the same architecture (e.g. θ₀)."""
        out = {}
        for key, value in state.items():
            if key in self.deleted:
                continue
            if key in self.sliced:
                dim, kept = self.sliced[key]
                value = value.index_select(dim, kept)
            out[key] = value
        return out


def architecture_scales(model: nn.Module) -> list[tuple[nn.BatchNorm2d, torch.Tensor]]:
    """(depthwise BN, normalized per-channel cost π) for every kernel path of the supernet."""
    positions = output_positions(model, tuple(model.architecture["input_shape"]))
    entries = []
    for block_name, block in mixed_blocks(model).items():
        for key, path in block.paths.items():
            per_channel = (2 * block.width + path.kernel ** 2) * positions[f"{block_name}.paths.{key}.depthwise"]
            entries.append((path.depthwise_bn, torch.full((path.hidden,), float(per_channel))))
    mean = torch.cat([cost for _, cost in entries]).mean()
    return [(bn, cost / mean) for bn, cost in entries]


def l1_penalty(scales: list[tuple[nn.BatchNorm2d, torch.Tensor]]) -> float:
    """Σ π_j |γ_j| (the value of the search's penalty before its weight ρ)."""
    return float(sum((cost * bn.weight.detach().abs()).sum() for bn, cost in scales))


@torch.no_grad()
def proximal_l1_(scales: list[tuple[nn.BatchNorm2d, torch.Tensor]], step: float) -> None:
    """Soft-threshold γ by step·π_j: the proximal step of the L1 penalty, which reaches exact zeros."""
    for bn, cost in scales:
        gamma = bn.weight
        gamma.copy_(gamma.sign() * (gamma.abs() - step * cost).clamp_min(0))


def live_channels(model: nn.Module) -> int:
    return sum(path.hidden for block in mixed_blocks(model).values() for path in block.paths.values())


@torch.no_grad()
def shrink_(model: nn.Module, threshold: float = 1e-3) -> Changes:
    """Remove, in place, every hidden channel whose |γ| ≤ threshold (see the module docstring)."""
    changes = Changes()
    for block_name, block in mixed_blocks(model).items():
        gammas = {key: path.depthwise_bn.weight.abs() for key, path in block.paths.items()}
        keep = {key: g > threshold for key, g in gammas.items()}
        if not any(bool(k.any()) for k in keep.values()):
            best = max(gammas, key=lambda key: float(gammas[key].max()))
            keep[best][int(gammas[best].argmax())] = True
        block_changed = False
        for key in list(block.paths):
            path = block.paths[key]
            if bool(keep[key].all()):
                continue
            block_changed = True
            prefix = f"{block_name}.paths.{key}"
            _fold_removed(block, path, ~keep[key])
            changes.removed_channels += int((~keep[key]).sum())
            if not bool(keep[key].any()):
                changes.deleted.update(f"{prefix}.{name}" for name in path.state_dict())
                changes.deleted_paths.append(prefix)
                del block.paths[key]
            else:
                kept = keep[key].nonzero().flatten()
                changes.sliced.update(_slice_path(path, prefix, kept))
        if block_changed:
            changes.shrunk_blocks.append(block_name)
    if changes.deleted_paths:
        model.prunable_names = find_prunable_names(model)
    return changes


def _fold_removed(block, path: KernelPath, removed: torch.Tensor) -> None:
    bn = path.depthwise_bn
    constant = torch.relu(bn.bias[removed])  # the channel's output when γ = 0
    shift = path.project.weight[:, removed, 0, 0].double() @ constant.double()
    block.out_bn.running_mean -= shift.to(block.out_bn.running_mean.dtype)


def _slice_path(path: KernelPath, prefix: str, kept: torch.Tensor) -> dict[str, tuple[int, torch.Tensor]]:
    sliced = {}

    def cut(module: nn.Module, name: str, tensor_name: str, dim: int) -> None:
        tensor = getattr(module, tensor_name)
        smaller = tensor.detach().index_select(dim, kept)
        # A new Parameter, not new .data: autograd keeps the old shape with the old tensor.
        setattr(module, tensor_name, nn.Parameter(smaller, requires_grad=tensor.requires_grad)
                if isinstance(tensor, nn.Parameter) else smaller)
        sliced[f"{prefix}.{name}.{tensor_name}"] = (dim, kept)

    n = len(kept)
    cut(path.expand, "expand", "weight", 0)
    path.expand.out_channels = n
    cut(path.depthwise, "depthwise", "weight", 0)
    path.depthwise.in_channels = path.depthwise.out_channels = path.depthwise.groups = n
    cut(path.project, "project", "weight", 1)
    path.project.in_channels = n
    for name in ("expand_bn", "depthwise_bn"):
        bn = getattr(path, name)
        for tensor_name in ("weight", "bias", "running_mean", "running_var"):
            cut(bn, name, tensor_name, 0)
        bn.num_features = n
    return sliced


def remap_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module, before: dict[str, nn.Parameter],
                    changes: Changes) -> None:
    """Make the optimizer follow a shrink: cut parameters are replaced by the model's new ones, with
    their state (momentum, Adam moments) sliced the same way; deleted parameters leave.

    `before` is `dict(model.named_parameters())` taken before the shrink.
    """
    after = dict(model.named_parameters())
    replacement = {}
    for name, old in before.items():
        if name in changes.deleted:
            optimizer.state.pop(old, None)
            continue
        new = after[name]
        if new is old:
            continue
        replacement[id(old)] = new
        state = optimizer.state.pop(old, None)
        if state:
            dim, kept = changes.sliced[name]
            optimizer.state[new] = {key: value.index_select(dim, kept) if torch.is_tensor(value) and value.shape == old.shape
                                    else value for key, value in state.items()}
    live = {id(p) for p in after.values()}
    for group in optimizer.param_groups:
        group["params"] = [replacement.get(id(p), p) for p in group["params"] if id(p) in live or id(p) in replacement]
