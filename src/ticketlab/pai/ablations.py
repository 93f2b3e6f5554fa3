"""Mask transforms for the sanity checks of pruning methods (Frankle et al. 2021; Su et al. 2020).

  shuffle_layerwise  permute the mask inside each layer: same per-layer counts, random positions
  random_global      same total count, positions uniform over all prunable weights
  invert_by_scores   keep the lowest-scored weights, per the method's own score convention
If a method's ticket trains no better than its shuffled or inverted version, the method only chose
layer-wise densities. All randomness comes from a torch.Generator seeded by `seed`.
"""

from __future__ import annotations

import torch

from ticketlab.config import derive_seed
from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask
from ticketlab.pai.methods import method_info
from ticketlab.pai.selection import keep_by_scores


def shuffle_layerwise(mask: Mask, seed: int) -> Mask:
    """Each layer's entries permuted at random: its number of kept weights is unchanged."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "ablation-shuffle"))
    shuffled = {}
    for name, keep in mask.tensors.items():
        flat = keep.reshape(-1).cpu()
        shuffled[name] = flat[torch.randperm(flat.numel(), generator=generator)].reshape(keep.shape)
    return Mask(shuffled)


def random_global(mask: Mask, seed: int) -> Mask:
    """A uniformly random mask over all prunable weights with the same total count as `mask`."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "ablation-random-global"))
    keep = torch.zeros(mask.num_total(), dtype=torch.bool)
    keep[torch.randperm(keep.numel(), generator=generator)[:mask.num_kept()]] = True
    tensors, offset = {}, 0
    for name, layer in mask.tensors.items():
        tensors[name] = keep[offset:offset + layer.numel()].reshape(layer.shape)
        offset += layer.numel()
    return Mask(tensors)


def invert_by_scores(scores: dict[str, torch.Tensor], count: int, method: str) -> Mask:
    """The `count` lowest-scored weights per `method`'s convention (for GraSP: the largest S)."""
    info = method_info(method)
    if info.score_order is None:
        raise TicketlabError(f"method {method} has no per-weight scores to invert; use shuffle_layerwise or "
                             "random_global for it, or a scoring method")
    total = sum(score.numel() for score in scores.values())
    if not 0 <= count <= total:
        raise TicketlabError(f"cannot keep {count} weights: the scores cover {total}; pass a count in [0, {total}]")
    cpu_scores = {name: score.detach().to("cpu", torch.float64) for name, score in scores.items()}
    return keep_by_scores(cpu_scores, count, keep_largest=info.score_order == "largest", invert=True)
