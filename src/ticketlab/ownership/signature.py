"""The white-box signature: positions and bits from the key, embedding in a ticket, reading from a suspect.

Blocks. A carrier layer's weight is viewed as (out units, in units, entries): block (j, i) holds
everything linking input unit i to output unit j (structure.py). A block is alive when any entry is.

Positions and bits. The scheme's n positions are drawn with the key (keys.prf_sample) uniformly
among all blocks of all carrier layers, so layers get bits in proportion to their size, and the n
bits are HMAC output: both depend only on the key and the registration context (scheme, salt,
structure), never on the ticket's mask, and nobody — the claimant included — chooses them.

Embedding. A 0 bit kills its block; a 1 bit makes its block alive: when it is dead, one of its
entries (chosen with the key) is switched on at a value as large as the layer's median alive |θ_k|,
with a keyed sign. A 1-bit block whose output unit nothing reads, or whose input unit nothing writes,
would read dead (canonical.py zeroes such units), so that unit gets one keyed connection in a
neighbouring layer. Each layer touched then gets back exactly its number of weights: when it gained,
the weakest alive entries (trained |w|) outside the signature blocks are removed; when it lost, dead
entries outside them are switched on (inside alive blocks first, keyed at random) from θ₀.
During the retraining the 1-bit blocks (and repairs) are held at least as strong as the layer's
median alive block (`Floors`, run before every step by the trainer's batch hook), so the 1s stay
among the layer's strong connections through fine-tuning and pruning. Under the null (a suspect made without the key)
every reading agrees with its bit with probability exactly 1/2, whatever the suspect looks like.

Reading. In the suspect's canonical, aligned form, block (j, i) of a carrier is alive iff its
largest |w| ranks among the layer's K largest blocks and exceeds relative_threshold × the median of
those K, where K is the number of alive blocks of the owner's signed layer (in the claim). Ranks and
the relative threshold are invariant to rescaling; a densified or densely fine-tuned layer is read by
what stands out in it.
"""

from __future__ import annotations

import numpy as np
import torch

from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask
from ticketlab.ownership.canonical import Canonical, block_magnitudes
from ticketlab.ownership.keys import prf, prf_bits, prf_sample
from ticketlab.ownership.scheme import Scheme
from ticketlab.ownership.structure import Structure, require_carriers


def positions_and_bits(structure: Structure, scheme: Scheme, key: bytes, context: bytes) -> tuple[dict, np.ndarray, list]:
    """({carrier layer: int array (count, 2) of (j, i)}, bits, [(layer, row in that array)] in bit order)."""
    require_carriers(structure, scheme.blocks_per_bit * scheme.bits, scheme.bits)
    sizes = [structure.layers[i].blocks for i in structure.carriers]
    offsets = np.cumsum([0] + sizes)
    drawn = prf_sample(key, "positions", context, int(offsets[-1]), scheme.bits)
    per_layer: dict[int, list] = {i: [] for i in structure.carriers}
    order = []
    for g in drawn.tolist():
        c = int(np.searchsorted(offsets, g, side="right") - 1)
        layer = structure.carriers[c]
        local = g - int(offsets[c])
        j, i = divmod(local, structure.layers[layer].in_units)
        order.append((layer, len(per_layer[layer])))
        per_layer[layer].append((j, i))
    positions = {l: np.asarray(v, dtype=np.int64).reshape(-1, 2) for l, v in per_layer.items() if v}
    return positions, prf_bits(key, "bits", context, scheme.bits), order


def layer_bits(bits: np.ndarray, order: list) -> dict[int, np.ndarray]:
    out: dict[int, list] = {}
    for bit, (layer, _) in zip(bits.tolist(), order):
        out.setdefault(layer, []).append(bit)
    return {l: np.asarray(v, dtype=bool) for l, v in out.items()}


def _quantile(values: torch.Tensor, q: float) -> float:
    values = values.double()
    return float(torch.quantile(values, q)) if values.numel() <= 1 << 24 else float(values.sort().values[int(q * (values.numel() - 1))])


def embed(structure: Structure, scheme: Scheme, mask: Mask, init_state: dict, score_state: dict, source: dict,
          positions: dict, bits_by_layer: dict, key: bytes, context: bytes) -> tuple[Mask, dict, dict, dict]:
    """Force every position to its bit, keep the units of 1-bit blocks live, and rebalance every layer
    touched; returns the new mask, θ_k with the new weights' starting values, per-layer counts of what
    changed, and the blocks to hold strong during retraining ({layer index: int array (count, 2)})."""
    keep, theta, score, fresh, strength, net, protected, hold, changes = {}, {}, {}, {}, {}, {}, {}, {}, {}

    def open_layer(index: int) -> None:
        if index in keep:
            return
        layer = structure.layers[index]
        if layer.weight not in mask.tensors:
            raise TicketlabError(f"{layer.weight} is not pruned by this ticket's mask; it cannot carry bits")
        keep[index] = layer.view(mask[layer.weight].clone())
        theta[index] = layer.view(init_state[layer.weight].detach().clone())
        score[index] = layer.view(score_state[layer.weight].detach().abs().double() * mask[layer.weight])
        fresh[index] = layer.view(source[layer.weight].detach())
        alive_theta = theta[index][keep[index]].abs()
        strength[index] = _quantile(alive_theta, scheme.floor_quantile) if alive_theta.numel() else 0.0
        if strength[index] == 0.0:
            strength[index] = float(fresh[index].abs().double().mean())
        net[index] = 0
        protected[index] = torch.zeros(keep[index].shape[:2], dtype=torch.bool)
        hold[index] = []
        changes[layer.weight] = {"bits": 0, "killed_blocks": 0, "removed_weights": 0, "revived_blocks": 0,
                                 "repaired_units": 0, "rebalanced_weights": 0}

    def revive(index: int, j: int, i: int, label: str) -> None:
        word = int.from_bytes(prf(key, f"revive/{structure.layers[index].path}/{j}/{i}/{label}", context, 8), "little")
        entry = word % keep[index].shape[2]
        keep[index][j, i, entry] = True
        theta[index][j, i, entry] = strength[index] * (1 if (word >> 32) & 1 else -1)
        net[index] += 1

    for index, where in positions.items():
        open_layer(index)
        protected[index][torch.from_numpy(where[:, 0]), torch.from_numpy(where[:, 1])] = True
    for index, where in positions.items():
        record = changes[structure.layers[index].weight]
        for (j, i), bit in zip(where.tolist(), bits_by_layer[index].tolist()):
            record["bits"] += 1
            block = keep[index][j, i]
            if not bit:
                record["removed_weights"] += int(block.sum())
                net[index] -= int(block.sum())
                record["killed_blocks"] += 1
                block[:] = False
                theta[index][j, i] = 0
                continue
            hold[index].append((j, i))
            if not block.any():
                revive(index, j, i, "bit")
                record["revived_blocks"] += 1
    # A 1-bit block between units nothing writes or nothing reads would read dead (canonical.py zeroes
    # such units): give each such unit one connection, keyed, outside the signature, and hold it strong.
    for index, where in positions.items():
        layer = structure.layers[index]
        for j, i in hold[index][:]:
            for site_index, unit, side in ((layer.out_site, j, "reads"), (layer.in_site, i, "writes")):
                if site_index is None:
                    continue
                site = structure.sites[site_index]
                others = site.consumers if side == "reads" else site.producers
                for other in others:
                    open_layer(other)
                live = any((keep[o][:, unit] if side == "reads" else keep[o][unit]).any() for o in others)
                if live or not others:
                    continue
                other = others[0]
                size = keep[other].shape[0] if side == "reads" else keep[other].shape[1]
                draws = np.frombuffer(prf(key, f"repair/{structure.layers[other].path}/{side}/{unit}", context, 8 * 64), dtype="<u8")
                for word in draws.tolist():
                    r = int(word % size)
                    block = (r, unit) if side == "reads" else (unit, r)
                    if not protected[other][block]:
                        break
                protected[other][block] = True
                revive(other, block[0], block[1], "repair")
                hold[other].append(block)
                changes[structure.layers[other].weight]["repaired_units"] += 1
    for index in keep:
        layer = structure.layers[index]
        outside = ~protected[index][:, :, None].expand_as(keep[index])
        extra = net[index]
        if extra > 0:  # remove the weakest alive weights outside the signature
            candidates = torch.nonzero((keep[index] & outside).reshape(-1)).reshape(-1)
            if len(candidates) < extra:
                raise TicketlabError(f"{layer.weight} has too few weights to rebalance; it is too sparse to carry a signature")
            weakest = candidates[torch.argsort(score[index].reshape(-1)[candidates], stable=True)[:extra]]
            keep[index].reshape(-1)[weakest] = False
            theta[index].reshape(-1)[weakest] = 0
        elif extra < 0:  # switch dead weights on, inside alive blocks first
            seed = int.from_bytes(prf(key, f"rebalance/{layer.path}", context, 8), "little") >> 1
            generator = torch.Generator().manual_seed(seed)
            alive_blocks = keep[index].any(dim=2, keepdim=True).expand_as(keep[index])
            dead = ~keep[index] & outside
            wanted = -extra
            flat_keep, flat_theta, flat_fresh = keep[index].reshape(-1), theta[index].reshape(-1), fresh[index].reshape(-1)
            for pool in (dead & alive_blocks, dead & ~alive_blocks):
                if wanted == 0:
                    break
                indices = torch.nonzero(pool.reshape(-1)).reshape(-1)
                chosen = indices[torch.randperm(len(indices), generator=generator)[:wanted]]
                flat_keep[chosen] = True
                flat_theta[chosen] = flat_fresh[chosen].to(flat_theta.dtype)
                wanted -= len(chosen)
            if wanted:
                raise TicketlabError(f"{layer.weight} has too few dead weights to rebalance; it is too dense to carry a signature")
        changes[layer.weight]["rebalanced_weights"] = abs(extra)
    tensors = {name: t.clone() for name, t in mask.tensors.items()}
    state = {name: t.clone() for name, t in init_state.items()}
    for index in keep:
        layer = structure.layers[index]
        shape = mask[layer.weight].shape
        tensors[layer.weight] = keep[index].reshape(shape)
        state[layer.weight] = (theta[index] * keep[index]).reshape(shape).to(init_state[layer.weight].dtype)
    held = {i: np.asarray(v, dtype=np.int64).reshape(-1, 2) for i, v in hold.items() if v}
    return Mask(tensors), state, changes, held


class Floors:
    """Before every training step: every held block (1 bits, repaired units) at least as strong as its
    layer's median alive block."""

    def __init__(self, model: torch.nn.Module, structure: Structure, held: dict, quantile: float):
        params = dict(model.named_parameters())
        self.items = []
        for layer_index, blocks in held.items():
            layer = structure.layers[layer_index]
            self.items.append((layer, params[layer.weight], torch.from_numpy(blocks[:, 0]), torch.from_numpy(blocks[:, 1])))
        self.quantile = quantile

    @torch.no_grad()
    def __call__(self) -> None:
        for layer, param, j, i in self.items:
            view = layer.view(param.data)
            magnitudes = view.abs().amax(dim=2)
            alive = magnitudes[magnitudes > 0]
            if not alive.numel():
                continue
            floor = _quantile(alive, self.quantile)
            current = magnitudes[j, i]
            low = (current < floor) & (current > 0)
            if low.any():
                factor = (floor / current[low]).to(view.dtype)
                view[j[low], i[low]] *= factor[:, None]


def owner_alive_blocks(form: Canonical, structure: Structure) -> dict[str, int]:
    """K per carrier: alive blocks of the owner's signed layer (the reading's rank cut-off)."""
    return {structure.layers[i].path: int((block_magnitudes(form.weights[i]) > 0).sum()) for i in structure.carriers}


def alive_maps(form: Canonical, structure: Structure, maps: dict, alive_blocks: dict, relative_threshold: float,
               layers=None) -> dict[int, torch.Tensor]:
    """Per carrier layer: the reading (alive or dead) of every connection, in the owner's unit order."""
    out = {}
    for layer_index in (layers if layers is not None else structure.carriers):
        layer = structure.layers[layer_index]
        magnitudes = block_magnitudes(form.weights[layer_index])
        owner = torch.zeros(layer.out_units, layer.in_units, dtype=magnitudes.dtype)
        rows = maps.get(layer.out_site) if layer.out_site is not None else None
        cols = maps.get(layer.in_site) if layer.in_site is not None else None
        rows = rows if rows is not None else torch.arange(magnitudes.shape[0])
        cols = cols if cols is not None else torch.arange(magnitudes.shape[1])
        present_r, present_c = rows >= 0, cols >= 0
        owner[torch.nonzero(present_r).reshape(-1)[:, None], torch.nonzero(present_c).reshape(-1)[None, :]] = \
            magnitudes[rows[present_r]][:, cols[present_c]]
        flat = owner.reshape(-1)
        k = min(max(int(alive_blocks[layer.path]), 1), flat.numel())
        order_desc = torch.argsort(flat, descending=True, stable=True)
        top = torch.zeros_like(flat, dtype=torch.bool)
        top[order_desc[:k]] = True
        scale = float(flat[order_desc[:k]].median())
        out[layer_index] = (top & (flat > relative_threshold * scale)).reshape(owner.shape)
    return out


def read(form: Canonical, structure: Structure, maps: dict, positions: dict, order: list, alive_blocks: dict,
         relative_threshold: float) -> np.ndarray:
    """The suspect's reading (alive or dead) of every position, in bit order."""
    alive = alive_maps(form, structure, maps, alive_blocks, relative_threshold, layers=list(positions))
    readings = {layer: alive[layer][torch.from_numpy(where[:, 0]), torch.from_numpy(where[:, 1])].numpy()
                for layer, where in positions.items()}
    return np.asarray([readings[layer][row] for layer, row in order], dtype=bool)
