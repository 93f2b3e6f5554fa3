"""GraSP (Wang et al. 2020): keep the weights whose removal least reduces gradient flow.

g = ∇L with the logits divided by T = 200; Hg = the Hessian-gradient product, by double
backprop: the gradient of (stop_grad(g) · ∇L) w.r.t. θ. Score S = −θ ⊙ Hg, and GraSP *removes
the largest S*, i.e. keeps the smallest: its score convention is "lower is better", so inverting
GraSP for the sanity check keeps the largest S. GraSP-|S| keeps the largest |S|.

Examples (our choice): the paper takes ~10 per class; we take score_batches · batch_size
examples class-balanced (round-robin over classes in the seeded permutation), so batch_size=100
on a 10-class set is the paper's setting. L is their mean cross-entropy; both passes (g, then Hg)
run over the same batches with BatchNorm on batch statistics (train mode), and the Hessian is the
block over the prunable weights only, as in the authors' code.

BatchNorm makes the scores depend on which examples share a forward pass. The authors' code gathers
its sample class by class, splits it into two halves and runs each half through the network on its
own, in both passes (g as the sum of the halves' gradients, then Hg half by half), so each half is
normalized with its own statistics; `grasp_batches="halves"` (the default) does the same with each
scoring batch, ordered by class first. "whole" runs each batch at once (ticketlab's earlier
behaviour). On ResNet-20 at θ₀ (Fashion-MNIST padded to 32×32, batches of 100) 47–72% of the kept
weights differ between the two (docs/methods.md); on a network without BatchNorm they agree up to
rounding.
"""

from __future__ import annotations

import torch

from ticketlab.pai.masked_net import (Weights, copy_weights, effective_leaves, loss_gradients, loss_sum,
                                      num_examples, to_cpu_float64, working_copy)
from ticketlab.pai.request import MethodOutput, PaiRequest
from ticketlab.pai.scoring_data import Batch, class_balanced_batches
from ticketlab.pai.selection import keep_by_scores

GRASP_TEMPERATURE = 200.0  # the paper's softmax temperature for both passes


def hessian_gradient_product(work: torch.nn.Module, weights: Weights, batches: list[Batch],
                             temperature: float = GRASP_TEMPERATURE) -> tuple[Weights, Weights]:
    """(g, Hg) of L = mean cross-entropy(logits / temperature) over `batches`, w.r.t. the prunable weights."""
    gradient = loss_gradients(work, weights, None, batches, temperature)
    total = num_examples(batches)
    leaves = effective_leaves(weights, None)
    product = {name: torch.zeros_like(w) for name, w in weights.items()}
    for batch in batches:
        loss = loss_sum(work, leaves, batch, temperature) / total
        grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
        # d/dθ (g_stop · ∇L_batch) = H_batch g; summed over batches it is H g for the whole L.
        inner = sum((gradient[name] * grad).sum() for name, grad in zip(leaves, grads))
        for name, hg in zip(leaves, torch.autograd.grad(inner, list(leaves.values()))):
            product[name] += hg
    return gradient, product


def halves(batches: list[Batch]) -> list[Batch]:
    """Each batch as its two halves, as the reference code splits its sample: ordered by class (its sample
    is gathered class by class; a stable sort keeps the seeded order within a class), then the first N // 2
    examples and the rest, so on a balanced 10-class batch one half holds classes 0-4 and the other 5-9."""
    split = []
    for inputs, labels in batches:
        order = torch.sort(labels, stable=True).indices
        inputs, labels = inputs[order], labels[order]
        middle = len(labels) // 2
        split += [part for part in ((inputs[:middle], labels[:middle]), (inputs[middle:], labels[middle:]))
                  if len(part[1])]
    return split


def grasp_scores(request: PaiRequest) -> tuple[Weights, int]:
    """S = −θ ⊙ Hg (float64, CPU) and the example passes used (two per example: g, then Hg)."""
    work = working_copy(request.model, "train")
    weights = copy_weights(work, request.prunable)
    batches = class_balanced_batches(request.data, request.seed, request.score_batches * request.batch_size,
                                     request.batch_size)
    if request.grasp_batches == "halves":
        batches = halves(batches)
    _, product = hessian_gradient_product(work, weights, batches)
    return to_cpu_float64({name: -weights[name] * product[name] for name in weights}), 2 * num_examples(batches)


def run_grasp(request: PaiRequest) -> MethodOutput:
    scores, examples = grasp_scores(request)
    mask = keep_by_scores(scores, request.count, keep_largest=False, invert=request.invert,
                          min_per_layer=request.min_per_layer)
    return MethodOutput(mask, scores, examples_used=examples, rounds=1)


def run_grasp_abs(request: PaiRequest) -> MethodOutput:
    signed, examples = grasp_scores(request)
    scores = {name: s.abs() for name, s in signed.items()}
    mask = keep_by_scores(scores, request.count, invert=request.invert, min_per_layer=request.min_per_layer)
    return MethodOutput(mask, scores, examples_used=examples, rounds=1)
