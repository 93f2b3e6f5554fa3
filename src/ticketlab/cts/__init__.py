"""Concrete Ticket Search (CTS, CTS-KL; docs/methods.md, Concrete Ticket Search): a mask found by training one logit per weight.

    result = search_mask(model, data, density=0.01, search_steps=2000, config=CtsConfig(objective="kl"),
                         seed=0, training_lr=0.1)
    result.mask, result.logits, result.log, result.info

Weights stay frozen (θ₀, or θ_k when rewinding); a binary Concrete relaxation of the mask is trained
with Adam on an objective (reverse KL to the dense network by default), GradBalance holds the
expected density at the budget, and the final mask keeps exactly the top round(κ·d) logits.

Registered as the mask-finding method `cts` (cts/registered.py, pai/registry.py): what `prune --method cts`,
`pai --methods cts` and `sanity --method cts` run; its tickets record the objective's name (cts-kl, ...).

Modules: search (entry point and loop), registered (the method in the registry, its search length),
config (CtsConfig, validation), concrete (logits, noise, soft mask), frozen_net (the frozen copy and its dense / masked forward passes), objectives, balance
(GradBalance and the Lagrange alternative), extract (exact top-k).
"""

from ticketlab.cts.balance import DualAscent, GradBalance, gradbalance_target, smoothed
from ticketlab.cts.config import CtsConfig, method_name, validate_config
from ticketlab.cts.extract import extract_mask
from ticketlab.cts.objectives import OBJECTIVES
from ticketlab.cts.registered import CTS, search_length
from ticketlab.cts.search import ConcreteSearch, CtsResult, search_mask

__all__ = [
    "CTS",
    "OBJECTIVES",
    "ConcreteSearch",
    "CtsConfig",
    "CtsResult",
    "DualAscent",
    "GradBalance",
    "extract_mask",
    "gradbalance_target",
    "method_name",
    "search_length",
    "search_mask",
    "smoothed",
    "validate_config",
]
