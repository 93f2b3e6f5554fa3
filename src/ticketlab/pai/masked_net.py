"""Forward and backward passes through a masked copy of the model, for gradient-based scores.

The caller's model is never touched: scoring runs on a deep copy whose train/eval mode is set for
scoring (so BatchNorm running-stat updates land on the copy), and the prunable weights are passed
to `torch.func.functional_call` as fresh leaf tensors w = θ ⊙ m. Gradients w.r.t. those leaves are
∂L/∂(θ⊙m) for all layers at once (one batched autograd call per minibatch, no per-weight work),
and nothing accumulates in any `.grad`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ticketlab.mask import Mask
from ticketlab.pai.scoring_data import Batch

Weights = dict[str, torch.Tensor]


def working_copy(model: nn.Module, bn_mode: str, dtype: torch.dtype | None = None) -> nn.Module:
    """A deep copy in train mode (BatchNorm uses batch statistics) or eval mode, parameters frozen."""
    work = copy.deepcopy(model)
    if dtype is not None:
        work.to(dtype)
    work.train(bn_mode == "train")
    for parameter in work.parameters():
        parameter.requires_grad_(False)
    return work


def copy_weights(work: nn.Module, names: list[str]) -> Weights:
    """The working copy's prunable weights (θ), detached."""
    params = dict(work.named_parameters())
    return {name: params[name].detach() for name in names}


def effective_leaves(weights: Weights, mask: Mask | None) -> Weights:
    """Leaf tensors θ ⊙ m that require grad: the forward pass sees the masked network."""
    return {name: (w * mask[name].to(w.device, w.dtype) if mask is not None else w.clone()).requires_grad_(True)
            for name, w in weights.items()}


def loss_sum(work: nn.Module, leaves: Weights, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
    """Summed cross-entropy of the network with `leaves` as its prunable weights (logits / temperature)."""
    reference = next(iter(leaves.values()))
    x, y = batch
    logits = functional_call(work, leaves, (x.to(reference.device, reference.dtype),), strict=False)
    return F.cross_entropy(logits / temperature, y.to(reference.device), reduction="sum")


def num_examples(batches: list[Batch]) -> int:
    return sum(len(y) for _, y in batches)


def loss_gradients(work: nn.Module, weights: Weights, mask: Mask | None, batches: list[Batch],
                   temperature: float = 1.0) -> Weights:
    """∂L/∂(θ⊙m) for L = mean cross-entropy over all scoring examples (BatchNorm statistics per batch)."""
    total = num_examples(batches)
    leaves = effective_leaves(weights, mask)
    gradients = {name: torch.zeros_like(w) for name, w in weights.items()}
    for batch in batches:
        loss = loss_sum(work, leaves, batch, temperature) / total
        for name, grad in zip(leaves, torch.autograd.grad(loss, list(leaves.values()))):
            gradients[name] += grad
    return gradients


def to_cpu_float64(tensors: Weights) -> Weights:
    """Scores are reported and ranked as float64 on the CPU, whatever device and dtype scored them."""
    return {name: t.detach().to("cpu", torch.float64) for name, t in tensors.items()}
