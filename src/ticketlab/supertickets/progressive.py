"""The pruning half of two-in-one training: progressive global magnitude pruning with reactivation.

The ticket's weights are every conv and linear weight but the classifier's. At the k-th prune event
the mask keeps exactly round(d_k · n) of the n weights, d_k = 1 − min(0.1·k, 1 − κ), by magnitude,
globally. A pruned weight is not forgotten: its value is kept aside (dormant), and with reactivation
the ranking covers live and dormant values alike, so a dormant weight whose magnitude ranks high
comes back with its value (the paper's iterative reactivation). Without reactivation only live
weights are ranked. `forget_and_densify_` is the mask-reset ablation: pruned weights stay at zero and
the mask is reset to dense, so training continues dense from the zeros until the next event.
"""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.mask import Mask
from ticketlab.models import output_name, prunable_names
from ticketlab.pai.selection import select, target_count


def ticket_names(model: nn.Module) -> list[str]:
    """The weights SuperTickets prunes: every prunable weight except the classifier's."""
    classifier = output_name(model)
    return [name for name in prunable_names(model) if name != classifier]


def progressive_density(event: int, target: float) -> float:
    """Density after the k-th prune event (k = 1, 2, ...): 1 − min(0.1·k, 1 − κ)."""
    return 1 - min(0.1 * event, 1 - target)


class SparseState:
    """The mask over the ticket's weights and the values its pruned (dormant) weights had."""

    def __init__(self, model: nn.Module):
        params = dict(model.named_parameters())
        self.names = ticket_names(model)
        self.mask = {n: torch.ones_like(params[n], dtype=torch.bool) for n in self.names}
        self.dormant = {n: torch.zeros_like(params[n]) for n in self.names}
        self._applier: Mask | None = None  # the fused in-place multiply of Mask.apply_, rebuilt after changes

    def kept(self) -> int:
        return sum(int(m.sum()) for m in self.mask.values())

    def total(self) -> int:
        return sum(m.numel() for m in self.mask.values())

    def density(self) -> float:
        return self.kept() / self.total()

    def count(self, density: float) -> int:
        return target_count(density, self.total())

    def apply_(self, model: nn.Module) -> None:
        """Zero the pruned weights (after every optimizer step)."""
        if self._applier is None:
            self._applier = Mask(self.mask)
        self._applier.apply_(model)

    def set_mask(self, tensors: dict[str, torch.Tensor]) -> None:
        """Replace the mask (dormant values are not tracked for weights pruned this way)."""
        self.mask = {n: tensors[n].clone() for n in self.names}
        self._applier = None

    @torch.no_grad()
    def prune_(self, model: nn.Module, density: float, reactivation: bool = True) -> dict:
        """Global magnitude pruning to exactly `density`; returns how many weights were pruned and revived."""
        params = dict(model.named_parameters())
        values = {n: torch.where(self.mask[n], params[n], self.dormant[n]) for n in self.names}
        keys = {n: values[n].abs() for n in self.names}
        alive = None if reactivation else Mask(self.mask)
        keep = select(keys, self.count(density), alive=alive)
        pruned = revived = 0
        for n in self.names:
            new = keep[n].to(self.mask[n].device)
            pruned += int((self.mask[n] & ~new).sum())
            revived += int((~self.mask[n] & new).sum())
            self.dormant[n] = torch.where(new, torch.zeros_like(values[n]), values[n])
            params[n].copy_(torch.where(new, values[n], torch.zeros_like(values[n])))
            self.mask[n] = new
        self._applier = None
        return {"density": self.density(), "pruned": pruned, "revived": revived}

    @torch.no_grad()
    def densify_(self, model: nn.Module, names) -> None:
        """Reset these weights' masks to dense; dormant weights come back with their values."""
        params = dict(model.named_parameters())
        for n in names:
            params[n].copy_(torch.where(self.mask[n], params[n], self.dormant[n]))
            self.mask[n] = torch.ones_like(self.mask[n])
            self.dormant[n] = torch.zeros_like(self.dormant[n])
        self._applier = None

    @torch.no_grad()
    def forget_and_densify_(self) -> None:
        """The mask-reset ablation: pruned weights keep their zeros, the mask becomes dense."""
        for n in self.names:
            self.mask[n] = torch.ones_like(self.mask[n])
            self.dormant[n] = torch.zeros_like(self.dormant[n])
        self._applier = None

    def follow(self, model: nn.Module, changes, reset_shrunk: bool) -> None:
        """Follow a shrink (`shrink.Changes`): deleted paths leave, cut layers are sliced; with
        `reset_shrunk` every weight of a shrunk block is reset to dense (the paper's default)."""
        for n in list(self.names):
            if n in changes.deleted:
                del self.mask[n], self.dormant[n]
            elif n in changes.sliced:
                dim, kept = changes.sliced[n]
                self.mask[n] = self.mask[n].index_select(dim, kept)
                self.dormant[n] = self.dormant[n].index_select(dim, kept)
        self.names = ticket_names(model)
        self._applier = None
        assert set(self.names) == set(self.mask), "the mask does not cover the shrunk network's weights"
        if reset_shrunk:
            self.densify_(model, [n for n in self.names if any(n.startswith(b + ".") for b in changes.shrunk_blocks)])

    def full_mask(self, model: nn.Module) -> Mask:
        """The ticket's Mask over every prunable weight: the classifier is kept whole."""
        params = dict(model.named_parameters())
        return Mask({n: self.mask[n] if n in self.mask else torch.ones_like(params[n], dtype=torch.bool)
                     for n in prunable_names(model)})
