"""Alignment: undo a permutation of hidden units before reading a suspect's signature.

A permuted copy of a ticket computes the same function, so the suspect's units are matched to the
claim's reference layer by layer with `scipy.optimize.linear_sum_assignment`. A unit is described by
its incoming weights (columns already aligned by the previous layer's matching), its bias and, when
the reference holds the next layer, its outgoing weights (rows aligned by the next layer's
matching). The cost is the squared distance between suspect and reference descriptions over the
entries the reference marks usable: the signature units are left out (they are zero in the stored
reference), so the matching cannot favour the signature bits. One forward pass over incoming
weights, then one refinement pass that adds the outgoing weights.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ticketlab.ownership.chain import Layer, permute_inputs, permute_rows

REFINEMENT_PASSES = 1


def _describe(state: dict, usable: dict | None, chain: list[Layer], i: int, perms: dict, outgoing: bool):
    """(description, usable entries) of layer i's units, rows in the state's own unit order;
    `usable` None means every entry counts."""
    def use_of(name: str) -> torch.Tensor:
        return usable[name] if usable is not None else torch.ones_like(state[name], dtype=torch.bool)
    layer = chain[i]
    w = permute_inputs(state[layer.weight].float(), perms.get(i - 1), layer.in_block).reshape(layer.units, -1)
    use = permute_inputs(use_of(layer.weight), perms.get(i - 1), layer.in_block).reshape(layer.units, -1)
    parts, uses = [w], [use]
    if layer.bias is not None:
        parts.append(state[layer.bias].float()[:, None])
        uses.append(torch.ones(layer.units, 1, dtype=torch.bool))
    if outgoing:
        nxt = chain[i + 1]
        out = permute_rows(state[nxt.weight].float(), perms.get(i + 1))
        out_use = permute_rows(use_of(nxt.weight), perms.get(i + 1))
        # the next layer's columns grouped by this layer's unit: (units, rows · block · kernel)
        parts.append(out.reshape(out.shape[0], layer.units, -1).transpose(0, 1).reshape(layer.units, -1))
        uses.append(out_use.reshape(out.shape[0], layer.units, -1).transpose(0, 1).reshape(layer.units, -1))
    return torch.cat(parts, 1).double(), torch.cat(uses, 1).double()


def _match(suspect: torch.Tensor, reference: torch.Tensor, usable: torch.Tensor) -> torch.Tensor:
    """perm with suspect unit perm[b] matched to reference unit b (least total squared distance)."""
    cost = (suspect ** 2) @ usable.T - 2 * suspect @ (reference * usable).T
    rows, cols = linear_sum_assignment(cost.numpy())
    perm = np.empty(len(cols), dtype=np.int64)
    perm[cols] = rows
    return torch.from_numpy(perm)


def align(suspect: dict, reference: dict, usable: dict, chain: list[Layer]) -> dict[int, torch.Tensor]:
    """Permutations of the hidden layers the reference holds (a prefix of the chain; the output
    layer's units are classes and stay put) that bring the suspect onto the reference; `usable`
    marks the reference entries to compare."""
    hidden = [i for i in range(len(chain) - 1) if chain[i].weight in reference]
    perms: dict[int, torch.Tensor] = {}
    for sweep in range(1 + REFINEMENT_PASSES):
        for i in hidden:
            nxt = i + 1
            outgoing = sweep > 0 and chain[nxt].weight in reference and (nxt in perms or nxt == len(chain) - 1)
            # the suspect's outgoing rows are put in reference order by the next layer's matching
            s_desc, _ = _describe(suspect, None, chain, i, perms, outgoing)
            r_desc, use = _describe(reference, usable, chain, i, {}, outgoing)
            perms[i] = _match(s_desc, r_desc, use)
    return perms
