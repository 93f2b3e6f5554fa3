"""The binary Concrete relaxation of a keep-mask, applied to the frozen weights.

One logit a per prunable weight; each step draws one logistic noise L = log u − log(1 − u),
u ~ U(0, 1), per logit (shared by the whole minibatch) and the forward pass uses the relaxed masked
weights w = θ ⊙ m: no straight-through estimator, no hard-concrete stretch. Two relaxations
(`CtsConfig.relaxation`):
  scaled-sum    m = σ((a + L)/τ), the binary Concrete of Maddison et al. (2017): a weight is kept
                (m > ½) with probability P(a + L > 0) = σ(a), the same σ(a) the density penalty
                counts; ∂m/∂a = m(1 − m)/τ. The default.
  scaled-noise  m = σ(a + L/τ), as the CTS authors' code computes it: kept with probability
                P(a + L/τ > 0) = σ(τa), while the penalty (balance.py) still counts σ(a); at τ = 2/3
                and κ = 0.7% a search starting at a = logit(κ) keeps σ(τa) ≈ 3.6%, about 5κ, in its
                first samples. ∂m/∂a = m(1 − m).

All logits live in one flat vector, so sampling is a handful of whole-model tensor ops. `RelaxedWeights`
computes w with its derivative ∂w/∂a = θ ⊙ m(1 − m)/τ written out, into buffers allocated once: on the
CPU every fresh model-sized temporary costs page faults, and plain autograd would allocate about
eight of them per step (measured: ~0.6 ms each for LeNet-300-100's 266k weights, as much as a
whole training step).
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


RELAXATIONS = ("scaled-sum", "scaled-noise")


def logit_scale(relaxation: str, temperature: float) -> float:
    """The factor on a inside the sigmoid: 1/τ for scaled-sum (σ((a + L)/τ)), 1 for scaled-noise (σ(a + L/τ))."""
    if relaxation not in RELAXATIONS:
        raise ValueError(f"unknown relaxation {relaxation!r}; known: {', '.join(RELAXATIONS)}")
    return 1 / temperature if relaxation == "scaled-sum" else 1.0


def expected_density(logits: torch.Tensor) -> float:
    """Mean σ(a): the density the penalty counts (under scaled-sum also the expected kept fraction)."""
    return float(torch.sigmoid(logits).mean())


def keep_probability(logits: torch.Tensor, relaxation: str, temperature: float) -> float:
    """The mean probability that a sample keeps a weight (m > ½): σ(a) under scaled-sum, σ(τa) under
    scaled-noise."""
    scale = 1.0 if relaxation == "scaled-sum" else temperature
    return float(torch.sigmoid(logits * scale).mean())


class RelaxedWeights:
    """Draws the logistic noise and forms the relaxed masked weights, one tensor per prunable weight."""

    def __init__(self, theta: torch.Tensor, sizes: list[int], shapes: list[torch.Size], temperature: float,
                 generator: torch.Generator, relaxation: str = "scaled-sum"):
        self.theta = theta                          # flat frozen weights
        logit_scale(relaxation, temperature)  # an unknown relaxation fails here
        scaled_sum = relaxation == "scaled-sum"
        # m = σ((L + c·a)/τ): c = 1 is scaled-sum, c = τ scaled-noise (written so, not as τ·(1/τ), to keep
        # scaled-sum's arithmetic bit for bit).
        self.logit_factor = 1.0 if scaled_sum else temperature
        # ∂(inside)/∂a folded into a multiply the backward does anyway: θ/τ, or θ.
        self.scaled_theta = theta / temperature if scaled_sum else theta
        self.sizes, self.shapes = sizes, shapes
        self.temperature = temperature
        self.relaxation = relaxation
        self.generator = generator
        self.noise = torch.empty_like(theta)
        self.mask = torch.empty_like(theta)         # m of the latest sample, kept for the backward
        self.tiny = torch.finfo(theta.dtype).tiny
        self.samples = 0  # the backward checks that the mask buffer still holds its own sample

    def draw_noise(self) -> torch.Tensor:
        """Fresh L, one per logit. torch's uniform can return exactly 0, where L = −inf: u is raised to the
        smallest normal number (our choice; it moves u by less than 1e-38 and keeps L finite)."""
        return self.noise.uniform_(generator=self.generator).logit_(eps=self.tiny)

    def __call__(self, logits: torch.Tensor, noise: torch.Tensor) -> list[torch.Tensor]:
        """w = θ ⊙ σ((a + noise)/τ) (scaled-sum) or θ ⊙ σ(a + noise/τ) (scaled-noise) per prunable weight,
        differentiable in the logits."""
        return list(_RelaxedMaskedWeights.apply(logits, noise, self))


class _RelaxedMaskedWeights(torch.autograd.Function):
    """Forward: m into the sampler's buffer, w = θ ⊙ m per layer (the only new tensors).
    Backward: ∂R/∂a = (∂R/∂w) ⊙ (θ·c) ⊙ m(1 − m), c the relaxation's logit scale (1/τ or 1), assembled into
    one flat gradient."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, noise: torch.Tensor, sampler: RelaxedWeights):
        mask = sampler.mask
        torch.add(noise, logits, alpha=sampler.logit_factor, out=mask).div_(sampler.temperature).sigmoid_()
        sampler.samples += 1
        ctx.sample = sampler.samples
        ctx.sampler = sampler
        return tuple(torch.mul(theta.view(shape), m.view(shape)) for theta, m, shape in
                     zip(sampler.theta.split(sampler.sizes), mask.split(sampler.sizes), sampler.shapes))

    @staticmethod
    def backward(ctx, *weight_grads: torch.Tensor):
        sampler = ctx.sampler
        if sampler.samples != ctx.sample:
            raise RuntimeError("relaxed weights were sampled again before the backward of an earlier sample")
        grad = torch.empty_like(sampler.theta)
        for grad_part, weight_grad, scaled_theta in zip(grad.split(sampler.sizes), weight_grads,
                                                       sampler.scaled_theta.split(sampler.sizes)):
            torch.mul(weight_grad.reshape(-1), scaled_theta, out=grad_part)
        grad.mul_(sampler.mask)                           # h = g·θc·m
        return grad.addcmul_(grad, sampler.mask, value=-1), None, None  # h − h·m = g·θc·m(1 − m)
