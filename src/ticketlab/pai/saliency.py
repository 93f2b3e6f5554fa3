"""Single-shot saliency methods: magnitude at init (|θ|) and SNIP (|θ ⊙ ∂L/∂θ|).

SNIP (Lee et al. 2019) scores a weight by how much the loss changes when its mask entry moves:
|∂L/∂c| at c = 1, which equals |θ ⊙ ∂L/∂θ|. L is the mean cross-entropy over all scoring
examples (the `score_batches` first batches of the seeded permutation), so with several batches
the gradients are summed before the absolute value is taken. BatchNorm uses batch statistics
(train mode), a ticketlab choice shared by every PaI method here. The original code does otherwise:
it scores with is_train=False, so its BatchNorm layers (AlexNet and VGG; the LeNets have none) run in
inference mode on their initial moving statistics (mean 0, variance 1) and, with γ = 1 and β = 0 at
initialization, pass activations through unnormalized. On networks without BatchNorm the two agree.
"""

from __future__ import annotations

from ticketlab.pai.masked_net import copy_weights, loss_gradients, num_examples, to_cpu_float64, working_copy
from ticketlab.pai.request import MethodOutput, PaiRequest
from ticketlab.pai.scoring_data import scoring_batches
from ticketlab.pai.selection import keep_by_scores


def run_magnitude(request: PaiRequest) -> MethodOutput:
    scores = to_cpu_float64({name: w.abs() for name, w in request.weights().items()})
    mask = keep_by_scores(scores, request.count, invert=request.invert, min_per_layer=request.min_per_layer)
    return MethodOutput(mask, scores, rounds=1)


def snip_scores(request: PaiRequest, bn_mode: str = "train") -> tuple[dict, int]:
    """|θ ⊙ ∂L/∂θ| (float64, CPU) and the number of examples it took."""
    work = working_copy(request.model, bn_mode)
    weights = copy_weights(work, request.prunable)
    batches = scoring_batches(request.data, request.seed, request.score_batches, request.batch_size)
    gradients = loss_gradients(work, weights, None, batches)
    return to_cpu_float64({name: (weights[name] * gradients[name]).abs() for name in weights}), num_examples(batches)


def run_snip(request: PaiRequest) -> MethodOutput:
    scores, examples = snip_scores(request)
    mask = keep_by_scores(scores, request.count, invert=request.invert, min_per_layer=request.min_per_layer)
    return MethodOutput(mask, scores, examples_used=examples, rounds=1)
