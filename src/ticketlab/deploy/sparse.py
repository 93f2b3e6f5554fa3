"""Sparse inference: Linear layers as CSR matrices where that is measurably faster.

A CSR layer computes yᵀ = W·xᵀ + b with `torch.sparse.mm` (W in CSR, xᵀ dense). It reads its input
transposed and returns its output as a transposed view, so a chain of CSR layers with element-wise
activations between them never copies activations: each layer's xᵀ is already contiguous.

Whether CSR beats the dense kernel depends on the layer's shape, its density, the batch size and the
machine, so `sparsify` measures on each layer (median of repeated timed calls on random input of
the real shape, after warm-up) the dense kernel, CSR on all threads and CSR on one thread, and keeps
the fastest — the "crossover point" is measured, not assumed. One thread often wins for CSR: a
sparse product of a few thousand non-zeros costs less than waking and joining a second thread.
Convolutions stay dense: PyTorch's CPU sparse kernels do not cover them.
"""

from __future__ import annotations

import copy
import time
import warnings

import torch
from torch import nn

from ticketlab.errors import TicketlabError

PATHS = ("auto", "csr", "dense")


class CsrLinear(nn.Module):
    """A Linear layer whose weight is a CSR matrix (same function as the dense layer)."""

    def __init__(self, linear: nn.Linear, single_thread: bool = False):
        super().__init__()
        self.single_thread = single_thread
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta": known, and tested here
            self.weight = linear.weight.detach().to_sparse_csr()
        self.bias = None if linear.bias is None else linear.bias.detach().reshape(-1, 1).clone()
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        xt = x.reshape(-1, shape[-1]).t()
        xt = xt if xt.is_contiguous() else xt.contiguous()
        if self.single_thread:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # costs well under a microsecond; see the module docstring
            try:
                out = torch.sparse.mm(self.weight, xt)
            finally:
                torch.set_num_threads(threads)
        else:
            out = torch.sparse.mm(self.weight, xt)
        if self.bias is not None:
            out += self.bias
        return out.t().reshape(*shape[:-1], self.out_features)


def median_seconds(function, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of `function()` over `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


@torch.no_grad()
def choose_path(linear: nn.Linear, batch_size: int, repeats: int = 20) -> dict:
    """Time the dense and the CSR version of one layer on a batch of its real input width."""
    x = torch.randn(batch_size, linear.in_features)
    csr_all, csr_one = CsrLinear(linear), CsrLinear(linear, single_thread=True)
    dense_s = median_seconds(lambda: linear(x), repeats)
    all_s = median_seconds(lambda: csr_all(x), repeats)
    one_s = median_seconds(lambda: csr_one(x), repeats)
    csr_s = min(all_s, one_s)
    return {"density": float(torch.count_nonzero(linear.weight)) / linear.weight.numel(),
            "dense_us": 1e6 * dense_s, "csr_us": 1e6 * csr_s, "csr_all_threads_us": 1e6 * all_s,
            "csr_one_thread_us": 1e6 * one_s, "single_thread": one_s < all_s,
            "path": "csr" if csr_s < dense_s else "dense"}


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


@torch.no_grad()
def sparsify(model: nn.Module, batch_size: int = 64, path: str = "auto", repeats: int = 20) -> tuple[nn.Module, dict]:
    """A copy of `model` (eval mode) with each Linear on the fastest path; returns it and, per layer,
    the density, the measured times and the path taken. path="csr"/"dense" forces one path."""
    if path not in PATHS:
        raise TicketlabError(f"unknown inference path {path!r}; known: {', '.join(PATHS)}")
    fast = copy.deepcopy(model).eval()
    decisions = {}
    for name, module in list(fast.named_modules()):
        if not isinstance(module, nn.Linear):
            continue
        if path == "auto":
            decision = choose_path(module, batch_size, repeats)
        else:
            decision = {"density": float(torch.count_nonzero(module.weight)) / module.weight.numel(), "path": path}
        if decision["path"] == "csr":
            _replace(fast, name, CsrLinear(module, single_thread=decision.get("single_thread", True)))
        decisions[name] = decision
    return fast, decisions
