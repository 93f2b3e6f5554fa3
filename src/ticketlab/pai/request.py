"""What a PaI method is asked to do: the model to score, the data, the budget and the knobs.

`find_mask` validates the user's arguments once and hands every method one `PaiRequest`; a method
returns a `MethodOutput`. Keeping both as plain dataclasses lets each method stay a short function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ticketlab.data import Dataset
from ticketlab.mask import Mask


@dataclass(frozen=True)
class PaiRequest:
    model: nn.Module            # holds the weights to score (θ₀ or θ_k); never modified
    data: Dataset | None
    prunable: list[str]         # prunable weight names, in parameter order
    classifier: str             # the output layer's weight name
    density: float
    count: int                  # exactly this many weights are kept: round(density · d)
    seed: int
    score_batches: int
    batch_size: int
    iterations: int             # rounds for iterative methods (the method's default already filled in)
    min_per_layer: int
    invert: bool
    grasp_batches: str = "halves"  # GraSP: BatchNorm statistics per half of each scoring batch, or per whole batch

    def weights(self) -> dict[str, torch.Tensor]:
        """The prunable weights, detached (read-only views: never write to them)."""
        params = dict(self.model.named_parameters())
        return {name: params[name].detach() for name in self.prunable}

    def shapes(self) -> dict[str, torch.Size]:
        return {name: weight.shape for name, weight in self.weights().items()}

    def all_alive(self) -> Mask:
        return Mask({name: torch.ones(shape, dtype=torch.bool) for name, shape in self.shapes().items()})


@dataclass
class MethodOutput:
    mask: Mask
    scores: dict[str, torch.Tensor] | None   # the method's own scores (its convention), final round
    examples_used: int = 0                   # forward/backward passes over single training examples
    rounds: int = 1
    extra: dict = field(default_factory=dict)  # method-specific facts for PaiResult.info
