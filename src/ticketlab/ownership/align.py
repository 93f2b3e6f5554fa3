"""Alignment by keyed sketches: undo a permutation of hidden units without the owner's weights.

A unit j of a site is described, in the canonical form (canonical.py), by one vector per *part*:
the row j of every layer writing the site (its incoming weights, in the owner's order of that layer's
inputs, and its bias) and the column block j of every layer reading it (its outgoing weights, in the
owner's order of that layer's outputs). The claim stores, per part and unit, the signs of k keyed
Gaussian projections of that vector (SimHash, k = min(64, max(8, length / 8)) bits): enough to
match units, far too little to rebuild weights or a mask from (k sign bits of a vector of hundreds or
thousands of entries; the projections are keyed, and the key stays private until a dispute).

The entries of the signature's own blocks are left out of every sketch (for unit j of a carrier's
rows, the blocks (j, i) at signature positions; for a column block, those (i, j)), on the owner's side
and, pair by pair, on the suspect's: the matching cannot favour agreement with the bits.

Matching a suspect: cost(b, j) = −Σ_parts ⟨s_j, z_b⟩ / √k, where z_b is the suspect unit b's
projection (its vector put in the owner's order of the other side by the alignment found so far, the
owner unit j's signature entries removed), normalised, and s_j the owner's signs; solved by
`scipy.optimize.linear_sum_assignment`, rectangular when units were removed. A first pass over the
sites in order uses the parts whose other side is already aligned (or fixed: inputs, classes), then
two passes use every part.
"""

from __future__ import annotations

import base64
import math

import numpy as np
import torch

from ticketlab.ownership.canonical import Canonical
from ticketlab.ownership.keys import prf_seed
from ticketlab.ownership.structure import SITE, Structure

REFINEMENT_PASSES = 2
MIN_SKETCH_BITS = 32


def sketch_bits(length: int, most: int) -> int:
    return min(most, max(MIN_SKETCH_BITS, length // 2))


def parts(structure: Structure) -> list[tuple[int, int, str]]:
    """(site, layer, "rows" | "cols") for every part, in a fixed order."""
    out = []
    for site in structure.sites:
        out += [(site.index, p, "rows") for p in site.producers]
        out += [(site.index, q, "cols") for q in site.consumers]
    return out


def _other_map(structure: Structure, layer: int, side: str, maps: dict) -> tuple[bool, torch.Tensor | None]:
    """(usable, owner→suspect index map of the layer's other side; None = identity)."""
    l = structure.layers[layer]
    site, role = (l.in_site, l.in_role) if side == "rows" else (l.out_site, l.out_role)
    if role != SITE:
        return True, None
    if site in maps:
        return True, maps[site]
    return False, None


def _take(t: torch.Tensor, index: torch.Tensor | None, dim: int) -> torch.Tensor:
    """t's entries along `dim` at `index` (owner order), zeros where the index is -1."""
    if index is None:
        return t
    shape = list(t.shape)
    shape[dim] = len(index)
    out = torch.zeros(shape, dtype=t.dtype)
    present = index >= 0
    out.index_copy_(dim, torch.nonzero(present).reshape(-1), t.index_select(dim, index[present]))
    return out


def descriptors(form: Canonical, structure: Structure, layer: int, side: str, other: torch.Tensor | None) -> torch.Tensor:
    """(units of the site in the form's own order, part length) matrix."""
    weight = form.weights[layer]
    if side == "rows":
        w = _take(weight, other, 1)
        return torch.cat([w.reshape(w.shape[0], -1), form.biases[layer][:, None]], 1)
    w = _take(weight, other, 0)  # (owner out units, site units, block)
    return w.permute(1, 0, 2).reshape(w.shape[1], -1)


def exclusions(structure: Structure, layer: int, side: str, positions: dict, owner_units: int) -> dict[int, np.ndarray]:
    """Per owner unit of the site: descriptor entries of signature blocks to leave out."""
    found = positions.get(layer)
    if found is None or not len(found):
        return {}
    block = structure.layers[layer].block
    units, others = (found[:, 0], found[:, 1]) if side == "rows" else (found[:, 1], found[:, 0])
    spans = others[:, None] * block + np.arange(block)[None, :]
    out: dict[int, np.ndarray] = {}
    order = np.argsort(units, kind="stable")
    units, spans = units[order], spans[order]
    bounds = np.flatnonzero(np.diff(units)) + 1
    for group_units, group_spans in zip(np.split(units, bounds), np.split(spans, bounds)):
        unit = int(group_units[0])
        if unit < owner_units:
            out[unit] = group_spans.reshape(-1)
    return out


def projection(key: bytes, context: bytes, structure: Structure, layer: int, side: str, length: int, most: int) -> torch.Tensor:
    k = sketch_bits(length, most)
    generator = torch.Generator().manual_seed(prf_seed(key, f"sketch/{structure.layers[layer].path}/{side}", context))
    return torch.randn(k, length, generator=generator, dtype=torch.float64)


def make_sketch(form: Canonical, structure: Structure, positions: dict, key: bytes, context: bytes, most: int) -> list[dict]:
    """The owner's sketch, one entry per part: sign bits of the projections, packed, base64."""
    entries = []
    for site, layer, side in parts(structure):
        x = descriptors(form, structure, layer, side, None)
        P = projection(key, context, structure, layer, side, x.shape[1], most)
        for unit, cols in exclusions(structure, layer, side, positions, x.shape[0]).items():
            x[unit, cols] = 0
        signs = (x @ P.T) >= 0
        packed = np.packbits(signs.numpy().astype(np.uint8), axis=1)
        entries.append({"site": site, "layer": structure.layers[layer].path, "side": side, "units": int(x.shape[0]),
                        "bits": int(P.shape[0]), "data": base64.b64encode(packed.tobytes()).decode("ascii")})
    return entries


def unpack_sketch(entry: dict) -> torch.Tensor:
    raw = np.frombuffer(base64.b64decode(entry["data"], validate=True), dtype=np.uint8)
    units, bits = entry["units"], entry["bits"]
    per_unit = (bits + 7) // 8
    if raw.size != units * per_unit:
        raise ValueError("sketch size")
    signs = np.unpackbits(raw.reshape(units, per_unit), axis=1)[:, :bits]
    return torch.from_numpy(signs.astype(np.float64) * 2 - 1)


def _cost(x: torch.Tensor, P: torch.Tensor, signs: torch.Tensor, excluded: dict, chunk: int = 256) -> torch.Tensor:
    """(suspect units, owner units) cost of one part; for owner units with excluded entries the
    projections are corrected (x[:, E] @ P[:, E]ᵀ per unit, normalised together, chunk by chunk)."""
    k = P.shape[0]
    y = x @ P.T
    z = y / y.norm(dim=1, keepdim=True).clamp_min(1e-300)
    cost = -(z @ signs.T) / math.sqrt(k)
    units = sorted(excluded)
    for start in range(0, len(units), chunk):
        group = units[start:start + chunk]
        correction = torch.empty(x.shape[0], len(group), k, dtype=y.dtype)
        for t, unit in enumerate(group):
            cols = torch.from_numpy(excluded[unit])
            correction[:, t] = x[:, cols] @ P[:, cols].T
        yu = y[:, None, :] - correction
        zu = yu / yu.norm(dim=2, keepdim=True).clamp_min(1e-300)
        cost[:, group] = -(zu * signs[group][None]).sum(2) / math.sqrt(k)
    return cost


def align(form: Canonical, structure: Structure, sketch: list[dict], positions: dict, key: bytes,
          context: bytes, most: int) -> dict[int, torch.Tensor]:
    """Per site: owner unit -> suspect unit index (-1 where the suspect has no unit for it)."""
    from scipy.optimize import linear_sum_assignment
    by_part = {(e["layer"], e["side"]): e for e in sketch}
    path_index = {l.path: i for i, l in enumerate(structure.layers)}
    owner_units = {s.index: s.units for s in structure.sites}
    projections: dict = {}
    maps: dict[int, torch.Tensor] = {}
    for sweep in range(1 + REFINEMENT_PASSES):
        for site in structure.sites:
            total = None
            for s, layer, side in parts(structure):
                if s != site.index:
                    continue
                usable, other = _other_map(structure, layer, side, maps)
                if not usable:
                    continue
                entry = by_part[(structure.layers[layer].path, side)]
                x = descriptors(form, structure, layer, side, other)
                if (layer, side) not in projections:
                    projections[(layer, side)] = projection(key, context, structure, layer, side, x.shape[1], most)
                P = projections[(layer, side)]
                cost = _cost(x, P, unpack_sketch(entry), exclusions(structure, layer, side, positions, owner_units[s]))
                total = cost if total is None else total + cost
            if total is None:
                continue
            rows, cols = linear_sum_assignment(total.numpy())
            mapping = torch.full((owner_units[site.index],), -1, dtype=torch.long)
            mapping[torch.from_numpy(cols)] = torch.from_numpy(rows).long()
            maps[site.index] = mapping
    del path_index
    return maps
