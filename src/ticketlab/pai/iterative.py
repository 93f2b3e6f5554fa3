"""Iterative SNIP and FORCE (de Jorge et al. 2021): prune to density κ in T rounds.

Round t (1..T) keeps round(d · κ^(t/T)) weights, i.e. density exp(−(t/T)·ln(1/κ)); the last round
lands exactly on round(κ·d). Gradients flow through the currently masked network, w = θ ⊙ m:
  - iter-SNIP scores |θ⊙m ⊙ ∂L/∂w| among the survivors only: a pruned weight stays dead, so the
    masks of successive rounds are nested;
  - FORCE scores the dense weights |θ ⊙ ∂L/∂w| over all of them: a pruned weight whose gradient
    through the sparser network grew can come back.
Every round scores the same examples (our choice: the first `score_batches` batches of the
seeded permutation), so rounds differ only by the mask. BatchNorm uses batch statistics.
T defaults to 10 (our choice: the paper's schedule with few rounds; raise `iterations` to follow
the schedule more finely at proportional cost).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ticketlab.mask import Mask
from ticketlab.pai.masked_net import copy_weights, loss_gradients, to_cpu_float64, working_copy
from ticketlab.pai.request import MethodOutput, PaiRequest
from ticketlab.pai.scoring_data import scoring_batches
from ticketlab.pai.selection import keep_by_scores, schedule_counts

DEFAULT_ITERATIONS = 10


@dataclass
class Round:
    mask: Mask                       # after this round
    scores: dict[str, torch.Tensor]  # computed at the start of this round (float64, CPU)


def gradient_rounds(request: PaiRequest, revive: bool) -> Iterator[Round]:
    """The masks of successive rounds: iter-SNIP with revive=False, FORCE with revive=True."""
    work = working_copy(request.model, "train")
    weights = copy_weights(work, request.prunable)
    batches = scoring_batches(request.data, request.seed, request.score_batches, request.batch_size)
    mask = request.all_alive()
    for count in schedule_counts(request.density, mask.num_total(), request.iterations):
        gradients = loss_gradients(work, weights, mask, batches)
        if revive:
            saliency = {name: weights[name] * gradients[name] for name in weights}
        else:
            saliency = {name: weights[name] * mask[name].to(w.device, w.dtype) * gradients[name]
                        for name, w in weights.items()}
        scores = to_cpu_float64({name: s.abs() for name, s in saliency.items()})
        mask = keep_by_scores(scores, count, invert=request.invert, alive=None if revive else mask,
                              min_per_layer=request.min_per_layer)
        yield Round(mask, scores)


def _run(request: PaiRequest, revive: bool) -> MethodOutput:
    batch_examples = min(request.score_batches * request.batch_size, len(request.data.train_y))
    # Revivals: weights kept in a round after being pruned in an earlier one (always 0 for iter-SNIP).
    ever_pruned = {name: ~keep for name, keep in request.all_alive().tensors.items()}
    revivals = 0
    for last in gradient_rounds(request, revive):
        revivals += sum(int((last.mask[n] & ever_pruned[n]).sum()) for n in last.mask.names())
        ever_pruned = {n: ever_pruned[n] | ~last.mask[n] for n in last.mask.names()}
    return MethodOutput(last.mask, last.scores, examples_used=request.iterations * batch_examples,
                        rounds=request.iterations, extra={"revivals": revivals})


def run_iter_snip(request: PaiRequest) -> MethodOutput:
    return _run(request, revive=False)


def run_force(request: PaiRequest) -> MethodOutput:
    return _run(request, revive=True)
