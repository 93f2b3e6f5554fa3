"""Holding the expected number of kept weights Σσ(a) at the budget d′ while the objective R is minimized.

Both balances turn the objective's gradient g_R = ∂R/∂a into the gradient the optimizer steps on,
g_R + λ·(sparsity push), and differ only in how λ is set:

- GradBalance (the paper): λ* = ‖g_R‖₂ / ‖g_S‖₂ while Σσ(a) > d′, else 0, smoothed as
  λ ← (1 − s)·λ + s·λ* (the first step takes λ = λ*). Above the budget the push has the objective's
  norm, so there is no penalty weight to tune. g_S = σ(a)(1 − σ(a)) = ∂Σσ(a)/∂a.
- Lagrange (the alternative the paper replaces): the Lagrangian R + λ·c(a) with the normalized
  violation c(a) = (Σσ(a) − d′)/d, so the push is (λ/d)·g_S; λ starts at 0 and climbs by projected
  dual ascent, λ ← max(0, λ + η·c(a)), after each primal step (η = `dual_lr`, our choice of default).

Norms run over all logits jointly: the logits are one flat vector. `step` writes the combined
gradient into the g_R it is given (a fresh tensor from the backward) and reuses two buffers for σ(a)
and g_S, so a step allocates no model-sized temporaries (see concrete.py for why that matters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class BalanceStep:
    gradient: torch.Tensor   # what the optimizer steps on
    multiplier: float        # λ used in this step's gradient
    expected_kept: float     # Σσ(a) before the step


def gradbalance_target(objective_grad: torch.Tensor, sparsity_grad: torch.Tensor, expected_kept: float,
                       budget: float) -> float:
    """λ*: ‖g_R‖₂/‖g_S‖₂ when the expected count is over the budget, else 0.

    With g_S = 0 (every σ exactly 0 or 1) there is no direction to push along: 0.
    """
    if expected_kept <= budget:
        return 0.0
    sparsity_norm = float(torch.linalg.vector_norm(sparsity_grad))
    if sparsity_norm == 0.0:
        return 0.0
    return float(torch.linalg.vector_norm(objective_grad)) / sparsity_norm


def smoothed(previous: float | None, target: float, smoothing: float) -> float:
    """λ ← (1 − s)·λ + s·λ*, and λ = λ* on the first step (previous is None)."""
    return target if previous is None else (1 - smoothing) * previous + smoothing * target


class _SparsityGradient:
    """σ(a) and g_S = σ(a)(1 − σ(a)) into reused buffers. g_S is computed as σ(a)σ(−a): equal, but it
    does not round to 0 in float32 once σ(a) rounds to 1 (a > 17), so saturated logits still get pushed."""

    def __init__(self):
        self.kept_probability: torch.Tensor | None = None
        self.gradient: torch.Tensor | None = None

    def __call__(self, logits: torch.Tensor) -> tuple[float, torch.Tensor]:
        """(Σσ(a), g_S)."""
        if self.gradient is None or self.gradient.shape != logits.shape:
            self.kept_probability, self.gradient = torch.empty_like(logits), torch.empty_like(logits)
        torch.sigmoid(logits, out=self.kept_probability)
        torch.neg(logits, out=self.gradient).sigmoid_().mul_(self.kept_probability)
        return float(self.kept_probability.sum()), self.gradient


class GradBalance:
    """The paper's balance; `multiplier` is None until the first step."""

    def __init__(self, budget: float, smoothing: float):
        self.budget = budget
        self.smoothing = smoothing
        self.multiplier: float | None = None
        self._sparsity = _SparsityGradient()

    def step(self, logits: torch.Tensor, objective_grad: torch.Tensor) -> BalanceStep:
        """g_R + λ·g_S, written into `objective_grad`."""
        expected_kept, sparsity_grad = self._sparsity(logits)
        target = gradbalance_target(objective_grad, sparsity_grad, expected_kept, self.budget)
        self.multiplier = smoothed(self.multiplier, target, self.smoothing)
        return BalanceStep(objective_grad.add_(sparsity_grad, alpha=self.multiplier), self.multiplier, expected_kept)


class DualAscent:
    """The Lagrange-multiplier balance: λ learned by projected dual ascent on (Σσ(a) − d′)/d."""

    def __init__(self, budget: float, total: int, dual_lr: float):
        self.budget = budget
        self.total = total
        self.dual_lr = dual_lr
        self.multiplier = 0.0
        self._sparsity = _SparsityGradient()

    def step(self, logits: torch.Tensor, objective_grad: torch.Tensor) -> BalanceStep:
        """g_R + (λ/d)·g_S with the current λ, written into `objective_grad`; then the dual step on λ."""
        expected_kept, sparsity_grad = self._sparsity(logits)
        used = self.multiplier
        gradient = objective_grad.add_(sparsity_grad, alpha=used / self.total)
        violation = (expected_kept - self.budget) / self.total
        self.multiplier = max(0.0, used + self.dual_lr * violation)
        return BalanceStep(gradient, used, expected_kept)


def make_balance(name: str, budget: float, total: int, smoothing: float, dual_lr: float):
    if name == "gradbalance":
        return GradBalance(budget, smoothing)
    if name == "lagrange":
        return DualAscent(budget, total, dual_lr)
    raise ValueError(f"unknown balance {name!r}")  # validate_config catches user input before this
