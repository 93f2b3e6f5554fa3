"""The pruning-at-initialization methods as registered mask-finding methods (pai/registry.py).

Each method of `PAI_METHODS` finds one seed's mask with `find_mask` and the run's PaI options
(`configs["pai"]`: density, scoring batches, rounds, per-layer floor), seeded by derive_seed(seed,
"prune"); its request is checked by building it (`build_request`) before any run directory exists.
"""

from __future__ import annotations

from torch import nn

from ticketlab import checks
from ticketlab.config import derive_seed
from ticketlab.data import Dataset
from ticketlab.pai.find import PaiResult, build_request, find_mask
from ticketlab.pai.methods import PAI_METHODS
from ticketlab.pai.registry import MaskMethod, MaskRequest, register

COST = ("the scoring's forward/backward passes over training examples and its wall time, plus the dense "
        "training to the rewind step k when k > 0")


def find_pai(request: MaskRequest) -> PaiResult:
    pai = request.configs["pai"]
    return find_mask(request.method, request.model, request.data, pai.density, seed=derive_seed(request.seed, "prune"),
                     score_batches=pai.score_batches, batch_size=pai.score_batch_size, iterations=pai.iterations,
                     min_per_layer=pai.min_per_layer, invert=request.invert,
                     grasp_batches=pai.grasp_batches or "halves")


def check_density(configs: dict, model: nn.Module, density: float, flag: str) -> None:
    """The density keeps at least one of the model's prunable weights (shared by PaI and CTS)."""
    checks.density_keeps_a_weight(density, sum(checks.prunable_sizes(model).values()), flag, configs["model"].model)


def check_pai(method: str, configs: dict, data: Dataset, model: nn.Module, density: float, flag: str) -> None:
    """Dry run of a request on the model: the density keeps a weight, the floors fit, the options apply."""
    pai = configs["pai"]
    check_density(configs, model, density, flag)
    build_request(method, model, data, density, score_batches=pai.score_batches, batch_size=pai.score_batch_size,
                  iterations=pai.iterations, min_per_layer=pai.min_per_layer)


def _register() -> None:
    for name, info in PAI_METHODS.items():
        register(MaskMethod(name, "pai", info.description, info.score_order, COST, find=find_pai, check=check_pai))


_register()
