"""Exact-count selection of weights to keep from per-weight scores, and magnitude pruning for IMP.

Selection never relies on a bare `>= threshold` test: ties at the threshold are filled in position
order, so the number kept is exact even when scores tie, and the same scores always give the same mask.
"""

from __future__ import annotations

import torch

from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask


def keep_top_k(keys: dict[str, torch.Tensor], alive: Mask, k: int) -> Mask:
    """Keep the k highest keys among the weights alive in `alive`, ranked over all given tensors.

    Ties go to the lower flat position, as a stable sort would order them, but the k-th largest key
    is found by selection (kthvalue) rather than a full sort: several times faster, which matters
    for methods that select every round (SynFlow's 100).
    """
    names = list(keys)
    flat = torch.cat([keys[n].detach().reshape(-1).to("cpu", torch.float64) for n in names])
    alive_flat = torch.cat([alive[n].reshape(-1).cpu() for n in names])
    num_alive = int(alive_flat.sum())
    if not 0 <= k <= num_alive:
        raise TicketlabError(f"cannot keep {k} weights: only {num_alive} are alive")
    keep = torch.zeros_like(alive_flat)
    if k > 0:
        flat = torch.where(alive_flat, flat, torch.tensor(float("-inf"), dtype=torch.float64))
        # The k-th largest key: an alive one, since k <= num_alive and alive keys are finite.
        threshold = torch.kthvalue(flat, flat.numel() - k + 1).values
        keep = flat > threshold
        # Fill the rest with the keys equal to the threshold, earliest position first (a stable sort's order).
        ties = ((flat == threshold) & alive_flat).nonzero().reshape(-1)
        keep[ties[: k - int(keep.sum())]] = True
    result, offset = {}, 0
    for n in names:
        size = keys[n].numel()
        result[n] = keep[offset:offset + size].reshape(keys[n].shape)
        offset += size
    return Mask(result)


def prune_count(alive: int, fraction: float) -> int:
    """How many of `alive` weights one pruning step at `fraction` removes (rounded to nearest)."""
    return int(round(alive * fraction))


def magnitude_prune(mask: Mask, weights: dict[str, torch.Tensor], fraction: float, strategy: str = "global",
                    output_name: str | None = None, output_fraction: float | None = None,
                    conv_fraction: float | None = None) -> Mask:
    """Prune `fraction` of the surviving weights with the smallest |w|.

    global: one ranking over all masked tensors; layerwise: each tensor loses `fraction` of its own
    survivors. With `output_fraction`, the output layer is pruned on its own at that rate; with
    `conv_fraction`, the convolution weights (tensors of more than two dimensions) are pruned as a
    group of their own at that rate (the LTH paper's Conv-2/4/6 rates: conv 10-15%, fc 20%, output 10%).
    """
    scores = {n: weights[n].abs() for n in mask.names()}
    separate_output = output_fraction is not None and output_name in scores
    rest = [n for n in mask.names() if not (separate_output and n == output_name)]
    families = [(rest, fraction)]
    if conv_fraction is not None:
        convs = [n for n in rest if scores[n].dim() > 2]
        families = [([n for n in rest if n not in convs], fraction), (convs, conv_fraction)]
    if strategy not in ("global", "layerwise"):
        raise TicketlabError(f"unknown pruning strategy {strategy!r}; known: global, layerwise")
    groups: list[tuple[list[str], float]] = []
    for names, rate in families:
        if names:
            groups.extend([(names, rate)] if strategy == "global" else [([n], rate) for n in names])
    if separate_output:
        groups.append(([output_name], output_fraction))

    kept: dict[str, torch.Tensor] = {}
    for names, rate in groups:
        alive = Mask({n: mask[n] for n in names})
        k = alive.num_kept() - prune_count(alive.num_kept(), rate)
        kept.update(keep_top_k({n: scores[n] for n in names}, alive, k).tensors)
    return Mask({n: kept[n] for n in mask.names()})
