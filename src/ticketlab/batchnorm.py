"""Re-estimating BatchNorm running statistics on training batches, for weights whose statistics are stale.

Weights that were pruned, shrunk or interpolated between two networks no longer match the running
means and variances their BatchNorm layers carry. `recalibrate_batchnorm` resets them and recomputes
them as the exact (cumulative) average over a few training batches in train mode, without gradients
and without touching any weight; SuperTickets uses it before evaluating a found network, instability
analysis at each interpolation point when asked (`stability --bn-reestimate N`).
"""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.data import Dataset, epoch_permutation


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: Dataset, batches: int, batch_size: int, seed: int) -> None:
    """Re-estimate BatchNorm running statistics (cumulative average) on the first `batches` training batches
    of the permutation seeded by `seed` (no augmentation), weights untouched; the model's mode is restored."""
    norms = batchnorm_layers(model)
    if not norms or batches <= 0:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the calibration batches
    was_training = model.training
    model.train()
    order = epoch_permutation(len(data.train_y), seed, 0)
    device = next(model.parameters()).device
    for b in range(batches):
        idx = order[b * batch_size:(b + 1) * batch_size]
        if len(idx) == 0:
            break
        model(data.train_x[idx].to(device))
    model.train(was_training)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
