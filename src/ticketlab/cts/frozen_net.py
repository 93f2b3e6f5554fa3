"""The frozen network a search runs on: a private copy of the model, its θ as one flat vector, and
forward passes with θ (dense) or with given prunable weights such as θ ⊙ m (masked).

The copy is in train mode, so BatchNorm normalizes with batch statistics in both passes; its running
statistics change, the caller's model never does. Its parameters do not require grad, so a backward
pass from the masked output reaches only the mask (hence the logits). The masked pass hands the
products θ ⊙ m to `torch.func.functional_call` as the prunable weights, so the mask sits inside the
forward pass, as the gradient to the logits requires, and nothing is written into the copy.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call

from ticketlab.models import output_name, prunable_names
from ticketlab.pai.masked_net import working_copy


class Outputs(NamedTuple):
    logits: torch.Tensor
    features: torch.Tensor | None  # the classifier's input, (batch, features), when captured


class FrozenNet:
    """A frozen train-mode copy of `model`; with `capture_features`, also the classifier's input per pass."""

    def __init__(self, model: nn.Module, capture_features: bool = False):
        self.work = working_copy(model, bn_mode="train")
        self.names = prunable_names(model)
        params = dict(self.work.named_parameters())
        self.shapes = [params[name].shape for name in self.names]
        self.sizes = [params[name].numel() for name in self.names]
        self.theta = torch.cat([params[name].detach().reshape(-1) for name in self.names])
        self._captured: torch.Tensor | None = None
        if capture_features:
            classifier_path = output_name(model).rpartition(".")[0]
            self.work.get_submodule(classifier_path).register_forward_pre_hook(self._capture)

    @property
    def total(self) -> int:
        return self.theta.numel()

    @property
    def device(self) -> torch.device:
        return self.theta.device

    @property
    def dtype(self) -> torch.dtype:
        return self.theta.dtype

    def _capture(self, module: nn.Module, inputs: tuple) -> None:
        self._captured = inputs[0]

    def _outputs(self, logits: torch.Tensor) -> Outputs:
        features, self._captured = self._captured, None
        if features is not None:
            features = features.flatten(1)
        return Outputs(logits, features)

    @torch.no_grad()
    def dense(self, x: torch.Tensor) -> Outputs:
        """The frozen network as it is (mask all ones), without autograd."""
        return self._outputs(self.work(x))

    def masked(self, x: torch.Tensor, weights: list[torch.Tensor]) -> Outputs:
        """The network with `weights` (e.g. θ ⊙ m, one tensor per prunable weight, in order) as its prunable weights."""
        return self._outputs(functional_call(self.work, dict(zip(self.names, weights)), (x,), strict=False))

    def per_layer(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of a flat vector as one tensor per prunable weight, in the weights' shapes."""
        return {name: chunk.view(shape)
                for name, chunk, shape in zip(self.names, flat.split(self.sizes), self.shapes)}
