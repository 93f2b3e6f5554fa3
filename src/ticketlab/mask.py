"""Per-tensor boolean masks over a model's prunable weights: counts, densities, packed storage.

Masking during training is a multiply in place after each optimizer step (`apply_`), so the model
keeps plain parameters and state_dict keys; the mask never sits inside the forward pass.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.registry import prunable_names


class Mask:
    """Boolean keep-masks, one per prunable tensor name, in the model's parameter order."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = {name: t.to(torch.bool) for name, t in tensors.items()}
        self._apply_cache: dict[int, tuple] = {}

    @classmethod
    def ones(cls, model: nn.Module) -> "Mask":
        """Keep everything: one all-True mask per prunable tensor of any nn.Module (see models.prunable_names)."""
        params = dict(model.named_parameters())
        return cls({name: torch.ones_like(params[name], dtype=torch.bool) for name in prunable_names(model)})

    def names(self) -> list[str]:
        return list(self.tensors)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def num_kept(self) -> int:
        return int(sum(int(t.sum()) for t in self.tensors.values()))

    def num_total(self) -> int:
        return int(sum(t.numel() for t in self.tensors.values()))

    def density(self) -> float:
        return self.num_kept() / self.num_total()

    def layer_densities(self) -> dict[str, float]:
        return {name: float(t.sum()) / t.numel() for name, t in self.tensors.items()}

    def equals(self, other: "Mask") -> bool:
        return self.names() == other.names() and all(torch.equal(self[n], other[n]) for n in self.names())

    def check_matches(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, t in self.tensors.items():
            if name not in params or params[name].shape != t.shape:
                raise TicketlabError(f"mask tensor {name} {tuple(t.shape)} does not fit the model; the ticket was made for another architecture")

    @torch.no_grad()
    def apply_(self, model: nn.Module) -> None:
        """Zero the pruned weights in place: one fused multiply over all masked tensors.

        This runs after every optimizer step, so the parameter list and the masks in the
        parameters' dtype and device are looked up once per model and reused.
        """
        cached = self._apply_cache.get(id(model))
        if cached is None or cached[0]() is not model:
            params = dict(model.named_parameters())
            targets = [params[name] for name in self.tensors]
            floats = [t.to(device=p.device, dtype=p.dtype) for t, p in zip(self.tensors.values(), targets)]
            cached = (weakref.ref(model), targets, floats)
            self._apply_cache[id(model)] = cached
        _, targets, floats = cached
        if targets and (targets[0].device != floats[0].device or targets[0].dtype != floats[0].dtype):
            self._apply_cache.pop(id(model))  # the model moved or changed dtype since: rebuild
            return self.apply_(model)
        if targets:
            torch._foreach_mul_(targets, floats)

    # Storage: one bit per weight.
    def packed(self) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(np.packbits(t.cpu().numpy().reshape(-1))) for name, t in self.tensors.items()}

    @classmethod
    def from_packed(cls, packed: dict[str, torch.Tensor], shapes: dict[str, list[int]]) -> "Mask":
        tensors = {}
        for name, shape in shapes.items():
            count = math.prod(shape)
            bits = packed[name].numpy()
            if bits.size != (count + 7) // 8:
                raise TicketlabError(f"mask of {name} holds {bits.size} bytes, expected {(count + 7) // 8}; the file is damaged")
            tensors[name] = torch.from_numpy(np.unpackbits(bits, count=count).astype(bool).reshape(shape))
        return cls(tensors)

    def shapes(self) -> dict[str, list[int]]:
        return {name: list(t.shape) for name, t in self.tensors.items()}
