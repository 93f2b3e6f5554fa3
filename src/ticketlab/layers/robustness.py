"""Accuracy under corruption and shift, as batched tensor ops on a standardized test set.

Corruptions (after the loader's standardization, so units are training-set standard deviations and
0 is the training mean), each at severities 1-5:
  gaussian-noise  x + σ·N(0, 1), σ = 0.2, 0.4, 0.6, 0.8, 1.0 (seeded)
  blur            Gaussian blur, kernel σ = 0.5, 0.75, 1, 1.5, 2 pixels (depthwise conv, edge padding)
  contrast        m + c·(x − m) with m the image's mean, c = 0.75, 0.5, 0.4, 0.3, 0.2
Shift: every test image translated by 2 or 4 pixels in a seeded random direction, the uncovered
border filled with the mean (a covariate shift in place of the CIFAR-10.2 set the paper uses).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ticketlab.data.augment import flip_and_shift
from ticketlab.errors import TicketlabError
from ticketlab.trainer import evaluate

NOISE = (0.2, 0.4, 0.6, 0.8, 1.0)
BLUR = (0.5, 0.75, 1.0, 1.5, 2.0)
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.2)
SHIFTS = (2, 4)


def gaussian_noise(x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return x + NOISE[severity - 1] * torch.randn(x.shape, generator=generator)


def blur(x: torch.Tensor, severity: int) -> torch.Tensor:
    sigma = BLUR[severity - 1]
    radius = max(1, int(round(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    # Separable: blur rows, then columns; one depthwise conv each over the whole batch.
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    out = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), horizontal, groups=channels)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), vertical, groups=channels)


def contrast(x: torch.Tensor, severity: int) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + CONTRAST[severity - 1] * (x - mean)


def shifted(x: torch.Tensor, pixels: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    angle = torch.rand(len(x), generator=generator) * 2 * torch.pi
    shift_y = torch.round(pixels * torch.sin(angle)).long()
    shift_x = torch.round(pixels * torch.cos(angle)).long()
    return flip_and_shift(x, torch.zeros(len(x), dtype=torch.bool), shift_y, shift_x, pixels)


def corrupted_sets(x: torch.Tensor, seed: int = 0):
    """(name, severity, corrupted x) for every corruption and severity, then the shifted sets."""
    if x.dim() != 4:
        raise TicketlabError(f"corruptions apply to image data; this test set has inputs of shape {tuple(x.shape[1:])}")
    for severity in range(1, 6):
        yield "gaussian-noise", severity, gaussian_noise(x, severity, seed)
        yield "blur", severity, blur(x, severity)
        yield "contrast", severity, contrast(x, severity)
    for pixels in SHIFTS:
        yield "shift", pixels, shifted(x, pixels, seed)


@torch.no_grad()
def robustness_table(models: dict[str, torch.nn.Module], x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> list[dict]:
    """Accuracy of each model on the clean set and on every corrupted and shifted set."""
    rows = [{"corruption": "clean", "severity": 0, **{n: evaluate(m, x, y)[1] for n, m in models.items()}}]
    for name, severity, corrupted in corrupted_sets(x, seed):
        rows.append({"corruption": name, "severity": severity, **{n: evaluate(m, corrupted, y)[1] for n, m in models.items()}})
    return rows
