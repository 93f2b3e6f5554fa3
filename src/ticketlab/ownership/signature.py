"""The white-box signature: units, carrier layers, bit placement, embedding and reading.

Units. A conv unit is one k×k kernel (the link from an input channel to an output channel); a
linear unit is a group of GROUP = 4 consecutive input weights of one output row (the last group of
a row may be shorter). A unit is alive when any of its weights is.

Carriers. By default the hidden layers of the kind the paper uses — conv layers in conv nets, linear
layers in MLPs — never the output layer (it can be named with --carriers), largest first (by alive
units) until their candidate units number at least 4n: killing a unit costs least where there are
many. n defaults to 256, or to the number of candidates when fewer (at least MIN_BITS).

Placement is blind to the bits, on purpose. Choosing positions where the mask already agrees with
each bit (as the paper does) makes the positions themselves encode the bits through the owner's
mask, and an independently found ticket resembles that mask (same data, same architecture), so it
would agree with the bits more often than half the time and the binomial test would be unsound.
Here the positions depend on the unsigned ticket and the key only: they are drawn (key-seeded)
among the candidate units — alive units whose score (max |w| of the trained weights, else of θ_k)
lies between the 50th and 95th percentile of the layer's alive units: strong enough to survive
magnitude pruning and fine-tuning, not the few most important ones. A bit 1 then needs no change;
a bit 0 kills its unit, so about n/2 units change. Under the null (a suspect independent of the
key) every bit then agrees with probability exactly 1/2, whatever the suspect looks like.

Rebalancing. The weights a layer loses to killed units are given back within the same layer: the
same number of dead weights outside the signature units are switched on, chosen at random
(key-seeded) among the dead weights of units that are already alive (any dead weight outside the
signature only when those run out), starting from their θ₀ values (the ticket's own initialization
when it records its seed and rewinds to 0, else a fresh key-seeded draw from the model's
initializer). Every layer keeps exactly its number of weights, and the unit-level graph changes only
at the signature. Not the dead weights with the largest |θ₀|: IMP survivors tend to have large
|θ₀|, so that rule would pick exactly the units a signature killed, and anyone re-signing the ticket
(a forger) would revive the owner's zeros; reviving into dead units would do so by chance.

Reading (verification). In the suspect's weights aligned to the claim, a unit is alive iff its score
is above τ = RELATIVE_THRESHOLD × the median |w| of the layer's K_w largest weights, and among the
K largest unit scores of the layer, where K and K_w are the reference's alive units and weights
(recorded in the claim). The relative threshold ignores near-zero weights; the scale is measured on
as many weights as the reference keeps so that switching on dead weights with small values cannot
drag it down; the top-K rule reads a densified or densely fine-tuned layer by what stands out in it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask
from ticketlab.ownership.chain import Layer

GROUP = 4
DEFAULT_BITS = 256
MIN_BITS = 32
CANDIDATE_BAND = (0.50, 0.95)
CARRIER_ROOM = 4
RELATIVE_THRESHOLD = 1e-3
UNIT_TEXT = {"linear": f"{GROUP} consecutive input weights of one output row (the last group of a row may be shorter)",
             "conv": "one k×k kernel: the link from one input channel to one output channel"}


def unit_view(t: torch.Tensor, kind: str) -> torch.Tensor:
    """(units, entries per unit) view of a weight or mask tensor; units numbered row-major."""
    if kind == "conv":
        return t.reshape(t.shape[0] * t.shape[1], -1)
    rows, cols = t.shape
    padded = torch.nn.functional.pad(t.to(torch.float32) if t.dtype == torch.bool else t, (0, (-cols) % GROUP))
    return padded.reshape(rows * math.ceil(cols / GROUP), GROUP)


def unit_scores(weight: torch.Tensor, kind: str) -> torch.Tensor:
    return unit_view(weight.detach().abs().float(), kind).amax(1)


def unit_alive(mask: torch.Tensor, kind: str) -> torch.Tensor:
    return unit_view(mask.float(), kind).amax(1) > 0


def unit_entries(shape, kind: str, units: torch.Tensor) -> torch.Tensor:
    """Bool tensor of `shape`, true on every weight of the given units."""
    flag = torch.zeros(math.prod(shape[:2]) if kind == "conv" else shape[0] * math.ceil(shape[1] / GROUP), dtype=torch.bool)
    flag[units] = True
    if kind == "conv":
        return flag.reshape(shape[0], shape[1], 1, 1).expand(*shape).clone()
    return flag.reshape(shape[0], -1).repeat_interleave(GROUP, dim=1)[:, :shape[1]].clone()


def candidates(mask: torch.Tensor, score_weight: torch.Tensor, kind: str) -> torch.Tensor:
    """Indices of the units a signature bit may use: alive, score in the layer's CANDIDATE_BAND."""
    alive = unit_alive(mask, kind)
    scores = unit_scores(score_weight * mask, kind)
    live = scores[alive]
    if live.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    low, high = torch.quantile(live.double(), torch.tensor(CANDIDATE_BAND, dtype=torch.double)).tolist()
    return torch.nonzero(alive & (scores.double() >= low) & (scores.double() <= high)).reshape(-1)


def default_carriers(chain: list[Layer], mask: Mask, scores: dict, n: int | None) -> list[int]:
    kind = "conv" if any(l.kind == "conv" for l in chain) else "linear"
    hidden = [i for i, l in enumerate(chain[:-1]) if l.kind == kind]
    ranked = sorted(hidden, key=lambda i: -int(unit_alive(mask[chain[i].weight], kind).sum()))
    chosen, room = [], 0
    for i in ranked:
        chosen.append(i)
        room += len(candidates(mask[chain[i].weight], scores[chain[i].weight], kind))
        if room >= CARRIER_ROOM * (n or DEFAULT_BITS):
            break
    return sorted(chosen)


def place_bits(chain: list[Layer], carriers: list[int], mask: Mask, scores: dict, n: int | None,
               generator: torch.Generator) -> tuple[dict[int, torch.Tensor], int]:
    """Positions for the bits ({carrier index: unit indices}, bit order = carrier order then listed
    order) and the number of bits. Depends on the ticket and the generator, never on the bits."""
    pools = {i: candidates(mask[chain[i].weight], scores[chain[i].weight], chain[i].kind) for i in carriers}
    total = sum(len(p) for p in pools.values())
    if n is None:
        n = min(DEFAULT_BITS, total)
        if n < MIN_BITS:
            raise TicketlabError(f"the carrier layers offer only {total} candidate units, fewer than the {MIN_BITS} bits a "
                                 "decisive test needs; name larger layers with --carriers")
    elif n > total:
        raise TicketlabError(f"--bits {n} is more than the {total} candidate units of the carriers "
                             f"({', '.join(chain[i].weight for i in carriers)}); give at most --bits {total} or more --carriers")
    elif n < MIN_BITS:
        raise TicketlabError(f"--bits {n} is too few for a decisive test; give at least {MIN_BITS}")
    # Bits per carrier in proportion to its candidates (largest remainders), then a key-seeded draw.
    shares = {i: n * len(p) / total for i, p in pools.items()}
    counts = {i: int(s) for i, s in shares.items()}
    for i in sorted(shares, key=lambda i: counts[i] - shares[i])[:n - sum(counts.values())]:
        counts[i] += 1
    positions = {}
    for i in carriers:
        pick = torch.randperm(len(pools[i]), generator=generator)[:counts[i]]
        positions[i] = pools[i][pick].sort().values
    return positions, n


def embed(chain: list[Layer], mask: Mask, init_state: dict, positions: dict[int, torch.Tensor], bits: np.ndarray,
          source: dict[str, torch.Tensor], generator: torch.Generator) -> tuple[Mask, dict, dict]:
    """Force each position's unit to its bit and rebalance each carrier; returns the new mask, θ_k
    with the new weights' starting values, and per-layer counts of what changed."""
    tensors = {name: t.clone() for name, t in mask.tensors.items()}
    state = {name: t.clone() for name, t in init_state.items()}
    changes, offset = {}, 0
    for i, units in positions.items():
        layer = chain[i]
        keep = tensors[layer.weight]
        layer_bits = torch.from_numpy(bits[offset:offset + len(units)].copy())
        offset += len(units)
        signature = unit_entries(keep.shape, layer.kind, units)
        # Every position is an alive unit, so a 1 needs nothing and a 0 kills the unit.
        kill = unit_entries(keep.shape, layer.kind, units[~layer_bits]) & keep
        removed = int(kill.sum())
        keep[kill] = False
        # Give the layer back as many weights: dead ones outside the signature, at random, inside
        # alive units first so that no dead unit comes alive.
        free = (~keep & ~signature).reshape(-1)
        inside = free & unit_entries(keep.shape, layer.kind, torch.nonzero(unit_alive(keep, layer.kind)).reshape(-1)).reshape(-1)
        if int(free.sum()) < removed:
            raise TicketlabError(f"{layer.weight} has too few dead weights to rebalance; it is too dense to carry a signature")
        revive = torch.zeros(keep.numel(), dtype=torch.bool)
        for pool in (inside, free & ~inside):
            wanted = removed - int(revive.sum())
            pool_indices = torch.nonzero(pool).reshape(-1)
            revive[pool_indices[torch.randperm(len(pool_indices), generator=generator)[:wanted]]] = True
        revive = revive.reshape(keep.shape)
        keep |= revive
        weight = state[layer.weight]
        state[layer.weight] = torch.where(revive, source[layer.weight].to(weight.dtype), weight) * keep
        changes[layer.weight] = {"killed_units": int((~layer_bits).sum()), "removed_weights": removed,
                                 "revived_weights": removed}
    return Mask(tensors), state, changes


def read_units(weight: torch.Tensor, kind: str, alive_units: int, alive_weights: int) -> torch.Tensor:
    """Which units of a (suspect, aligned) layer are alive by the rule above (bool per unit)."""
    magnitudes = weight.detach().abs().float().reshape(-1)
    top = torch.topk(magnitudes, min(max(alive_weights, 1), magnitudes.numel())).values
    scale = float(top.median())
    threshold = RELATIVE_THRESHOLD * scale
    scores = unit_scores(weight, kind)
    ranked = torch.zeros_like(scores, dtype=torch.bool)
    if alive_units > 0:
        order = torch.argsort(scores, descending=True, stable=True)
        ranked[order[:alive_units]] = True
    return ranked & (scores > threshold)
