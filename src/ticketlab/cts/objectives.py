"""What the masked network is fit to during the search (docs/methods.md, Concrete Ticket Search), by name.

- kl (CTS-KL): reverse KL(p_sparse ‖ p_dense) = Σ_c p_s (log p_s − log p_d), averaged over the batch,
  softmax at temperature 1; labels unused. The dense outputs come from the same frozen network on
  the same batch, so with a mask of exactly 1 it is exactly 0.
- task (CTS): cross-entropy of the masked network on the labels.
- forward-kl: KL(p_dense ‖ p_sparse).
- feature: MSE between the inputs of the output layer (the penultimate activations: pooled features
  of a ResNet, last hidden ReLU of an MLP) of the masked and the dense network, each standardized
  per feature with its own batch mean and variance (our choice: every feature counts on the same
  scale, and a feature dead in one network costs at most O(1) instead of dividing by ~0).
The search multiplies the value by `objective_scale`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ticketlab.cts.frozen_net import Outputs

FEATURE_EPS = 1e-5  # added to the variance when standardizing, as BatchNorm does


def reverse_kl(sparse_logits: torch.Tensor, dense_logits: torch.Tensor) -> torch.Tensor:
    log_sparse, log_dense = F.log_softmax(sparse_logits, dim=1), F.log_softmax(dense_logits, dim=1)
    return (log_sparse.exp() * (log_sparse - log_dense)).sum(dim=1).mean()


def forward_kl(sparse_logits: torch.Tensor, dense_logits: torch.Tensor) -> torch.Tensor:
    log_sparse, log_dense = F.log_softmax(sparse_logits, dim=1), F.log_softmax(dense_logits, dim=1)
    return (log_dense.exp() * (log_dense - log_sparse)).sum(dim=1).mean()


def standardized(features: torch.Tensor) -> torch.Tensor:
    """Each feature (column) to zero mean and unit variance over the batch."""
    variance, mean = torch.var_mean(features, dim=0, unbiased=False)
    return (features - mean) * torch.rsqrt(variance + FEATURE_EPS)


def feature_mse(sparse_features: torch.Tensor, dense_features: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(standardized(sparse_features), standardized(dense_features))


@dataclass(frozen=True)
class Objective:
    needs_dense: bool      # a no-grad dense forward per step
    needs_features: bool   # capture the classifier's input
    compute: Callable[[Outputs, Outputs | None, torch.Tensor], torch.Tensor]  # (sparse, dense, labels) -> value


OBJECTIVES = {
    "kl": Objective(True, False, lambda sparse, dense, labels: reverse_kl(sparse.logits, dense.logits)),
    "task": Objective(False, False, lambda sparse, dense, labels: F.cross_entropy(sparse.logits, labels)),
    "forward-kl": Objective(True, False, lambda sparse, dense, labels: forward_kl(sparse.logits, dense.logits)),
    "feature": Objective(True, True, lambda sparse, dense, labels: feature_mse(sparse.features, dense.features)),
}
