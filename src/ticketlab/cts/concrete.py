"""The binary Concrete relaxation of a keep-mask: logits a, logistic noise L, soft mask σ((a + L)/τ).

All logits of a model live in one flat vector, so sampling and the mask are a handful of tensor ops
however many layers the model has.
"""

from __future__ import annotations

import math

import torch


def logit(probability: float) -> float:
    """log(p / (1 − p)): the logit whose sigmoid is p."""
    return math.log(probability / (1 - probability))


def initial_logits(density: float, count: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """`count` logits at logit(density), so every weight starts kept with probability `density`."""
    return torch.full((count,), logit(density), dtype=dtype, device=device)


def logistic_noise(count: int, generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """L = log u − log(1 − u), u ~ U(0, 1): one draw per logit.

    torch.rand can return exactly 0, where log u = −inf; u is raised to the smallest normal number
    so L stays finite (our choice; it moves u by less than 1e-38).
    """
    u = torch.rand(count, generator=generator, dtype=dtype, device=device).clamp_(min=torch.finfo(dtype).tiny)
    return torch.log(u) - torch.log1p(-u)


def soft_mask(logits: torch.Tensor, noise: torch.Tensor, temperature: float) -> torch.Tensor:
    """m = σ((a + L)/τ): the relaxed mask the forward pass uses (no straight-through, no stretch)."""
    return torch.sigmoid((logits + noise) / temperature)


def expected_density(logits: torch.Tensor) -> float:
    """Mean σ(a): the expected fraction of weights a sampled hard mask would keep."""
    return float(torch.sigmoid(logits).mean())
