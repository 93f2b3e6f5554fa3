"""Exact-count selection of weights to keep from per-weight scores, and magnitude pruning for IMP.

Selection uses a stable index sort over the scores, never a `>= threshold` test, so the number
kept is exact even when scores tie, and the same scores always give the same mask.
"""

from __future__ import annotations

import torch

from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask


def keep_top_k(scores: dict[str, torch.Tensor], alive: Mask, k: int) -> Mask:
    """Keep the k highest-scoring weights among those alive in `alive`, ranked over all given tensors."""
    names = list(scores)
    flat = torch.cat([scores[n].detach().reshape(-1).to(torch.float64) for n in names])
    alive_flat = torch.cat([alive[n].reshape(-1) for n in names])
    if not 0 <= k <= int(alive_flat.sum()):
        raise TicketlabError(f"cannot keep {k} weights: only {int(alive_flat.sum())} are alive")
    flat = torch.where(alive_flat, flat, torch.full_like(flat, float("-inf")))
    # Stable descending sort: ties are broken by position, identically on every run.
    order = torch.argsort(flat, descending=True, stable=True)
    keep = torch.zeros_like(alive_flat)
    keep[order[:k]] = True
    result, offset = {}, 0
    for n in names:
        size = scores[n].numel()
        result[n] = keep[offset:offset + size].reshape(scores[n].shape)
        offset += size
    return Mask(result)


def prune_count(alive: int, fraction: float) -> int:
    """How many of `alive` weights one pruning step at `fraction` removes (rounded to nearest)."""
    return int(round(alive * fraction))


def magnitude_prune(mask: Mask, weights: dict[str, torch.Tensor], fraction: float, strategy: str = "global",
                    output_name: str | None = None, output_fraction: float | None = None) -> Mask:
    """Prune `fraction` of the surviving weights with the smallest |w|.

    global: one ranking over all masked tensors; layerwise: each tensor loses `fraction` of its own
    survivors. With `output_fraction`, the output layer is pruned on its own at that rate.
    """
    scores = {n: weights[n].abs() for n in mask.names()}
    groups: list[tuple[list[str], float]] = []
    separate_output = output_fraction is not None and output_name in scores
    rest = [n for n in mask.names() if not (separate_output and n == output_name)]
    if strategy == "global":
        groups.append((rest, fraction))
    elif strategy == "layerwise":
        groups.extend(([n], fraction) for n in rest)
    else:
        raise TicketlabError(f"unknown pruning strategy {strategy!r}; known: global, layerwise")
    if separate_output:
        groups.append(([output_name], output_fraction))

    kept: dict[str, torch.Tensor] = {}
    for names, rate in groups:
        alive = Mask({n: mask[n] for n in names})
        k = alive.num_kept() - prune_count(alive.num_kept(), rate)
        kept.update(keep_top_k({n: scores[n] for n in names}, alive, k).tensors)
    return Mask({n: kept[n] for n in mask.names()})
