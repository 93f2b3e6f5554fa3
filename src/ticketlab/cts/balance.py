"""Holding the expected number of kept weights Σσ(a) at the budget d′ while the objective R is minimized.

Both balances turn the objective's gradient g_R = ∂R/∂a into the gradient the optimizer steps on,
g_R + λ·(sparsity push), and differ only in how λ is set:

- GradBalance (the paper): λ* = ‖g_R‖₂ / ‖g_S‖₂ while Σσ(a) > d′, else 0, smoothed as
  λ ← (1 − s)·λ + s·λ* (the first step takes λ = λ*). Above the budget the push has the objective's
  norm, so there is no penalty weight to tune. g_S = σ(a)(1 − σ(a)) = ∂Σσ(a)/∂a.
- Lagrange (the alternative the paper replaces): the Lagrangian R + λ·c(a) with the normalized
  violation c(a) = (Σσ(a) − d′)/d, so the push is (λ/d)·g_S; λ starts at 0 and climbs by dual ascent,
  λ ← max(0, λ + η·c(a)), after each primal step (η = `dual_lr`, our choice of default).

Norms run over all logits jointly: the logits are one flat vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class BalanceStep:
    gradient: torch.Tensor   # what the optimizer steps on
    multiplier: float        # λ used in this step's gradient
    expected_kept: float     # Σσ(a) before the step


def sigmoid_and_derivative(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """σ(a) and g_S = σ(a)(1 − σ(a)), the latter as σ(a)σ(−a): equal, but it does not round to 0
    in float32 once σ(a) rounds to 1 (a > 17), so saturated logits can still be pushed down."""
    kept_probability = torch.sigmoid(logits)
    return kept_probability, kept_probability * torch.sigmoid(-logits)


def gradbalance_target(objective_grad: torch.Tensor, sparsity_grad: torch.Tensor, expected_kept: float,
                       budget: float) -> float:
    """λ*: ‖g_R‖₂/‖g_S‖₂ when the expected count is over the budget, else 0.

    With g_S = 0 (every σ exactly 0 or 1 even in σ(a)σ(−a)) there is no direction to push along: 0.
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


class GradBalance:
    """The paper's balance; `multiplier` is None until the first step."""

    def __init__(self, budget: float, smoothing: float):
        self.budget = budget
        self.smoothing = smoothing
        self.multiplier: float | None = None

    def step(self, logits: torch.Tensor, objective_grad: torch.Tensor) -> BalanceStep:
        kept_probability, sparsity_grad = sigmoid_and_derivative(logits)
        expected_kept = float(kept_probability.sum())
        target = gradbalance_target(objective_grad, sparsity_grad, expected_kept, self.budget)
        self.multiplier = smoothed(self.multiplier, target, self.smoothing)
        return BalanceStep(objective_grad.add(sparsity_grad, alpha=self.multiplier), self.multiplier, expected_kept)


class DualAscent:
    """The Lagrange-multiplier balance: λ learned by projected dual ascent on (Σσ(a) − d′)/d."""

    def __init__(self, budget: float, total: int, dual_lr: float):
        self.budget = budget
        self.total = total
        self.dual_lr = dual_lr
        self.multiplier = 0.0

    def step(self, logits: torch.Tensor, objective_grad: torch.Tensor) -> BalanceStep:
        kept_probability, sparsity_grad = sigmoid_and_derivative(logits)
        expected_kept = float(kept_probability.sum())
        used = self.multiplier
        gradient = objective_grad.add(sparsity_grad, alpha=used / self.total)
        violation = (expected_kept - self.budget) / self.total
        self.multiplier = max(0.0, used + self.dual_lr * violation)
        return BalanceStep(gradient, used, expected_kept)


def make_balance(name: str, budget: float, total: int, smoothing: float, dual_lr: float):
    if name == "gradbalance":
        return GradBalance(budget, smoothing)
    if name == "lagrange":
        return DualAscent(budget, total, dual_lr)
    raise ValueError(f"unknown balance {name!r}")  # validate_config catches user input before this
