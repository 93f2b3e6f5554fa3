"""SynFlow (Tanaka et al. 2020): data-free pruning by iterative synaptic flow conservation.

The network is linearized on a float64 deep copy (float32 overflows in deep nets): every
parameter replaced by its absolute value, BatchNorm in eval mode with its running statistics
reset to mean 0 / variance 1 on the copy (our reading of "running stats 0/1": at θ_k the real
running stats would mix the data back in), and an all-ones input of the data's shape, batch 1.
R = sum of the outputs; score = |θ ⊙ ∂R/∂θ| with θ the masked |weights|. Round t of n keeps
round(d · κ^(t/n)) weights among the survivors (pruned weights are zero in the copy and stay
pruned); the last round keeps exactly round(κ·d). The caller's model keeps its signs because it
is never touched. Default n = 100, as in the paper.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.func import functional_call

from ticketlab.errors import TicketlabError
from ticketlab.pai.iterative import Round
from ticketlab.pai.masked_net import copy_weights, effective_leaves, to_cpu_float64, working_copy
from ticketlab.pai.request import MethodOutput, PaiRequest
from ticketlab.pai.selection import keep_by_scores, schedule_counts

DEFAULT_ITERATIONS = 100
_NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def linearized_copy(model: nn.Module) -> nn.Module:
    """float64 copy, eval mode, every parameter |·|, BatchNorm running stats reset to 0 / 1."""
    work = working_copy(model, "eval", dtype=torch.float64)
    with torch.no_grad():
        for parameter in work.parameters():
            parameter.abs_()
        for module in work.modules():
            if isinstance(module, _NORM_LAYERS) and module.track_running_stats:
                module.reset_running_stats()
    return work


def input_shape_for(request: PaiRequest) -> tuple[int, ...]:
    if request.data is not None:
        return request.data.input_shape
    architecture = getattr(request.model, "architecture", None)
    if architecture and "input_shape" in architecture:
        return tuple(architecture["input_shape"])
    raise TicketlabError("synflow needs the input shape: pass the dataset, or build the model with "
                         "ticketlab.models.create_model so it records its input_shape")


def synflow_rounds(request: PaiRequest) -> Iterator[Round]:
    work = linearized_copy(request.model)
    weights = copy_weights(work, request.prunable)
    device = next(iter(weights.values())).device
    ones = torch.ones((1, *input_shape_for(request)), dtype=torch.float64, device=device)
    mask = request.all_alive()
    for count in schedule_counts(request.density, mask.num_total(), request.iterations):
        leaves = effective_leaves(weights, mask)
        flow = functional_call(work, leaves, (ones,), strict=False).sum()
        gradients = torch.autograd.grad(flow, list(leaves.values()))
        scores = to_cpu_float64({name: (leaves[name].detach() * grad).abs()
                                 for name, grad in zip(leaves, gradients)})
        mask = keep_by_scores(scores, count, invert=request.invert, alive=mask, min_per_layer=request.min_per_layer)
        yield Round(mask, scores)


def run_synflow(request: PaiRequest) -> MethodOutput:
    for last in synflow_rounds(request):
        pass
    return MethodOutput(last.mask, last.scores, examples_used=0, rounds=request.iterations)
