"""Concrete Ticket Search as a registered mask-finding method (pai/registry.py): `prune --method cts`.

The search runs on the request's model (θ₀, or θ_k when rewinding) for `--search-steps` (iterations,
epochs or a share of the training length), seeded by derive_seed(seed, "prune"), at the recipe's
learning rate unless CtsConfig gives one, and returns the PaI result shape; its tickets record the
objective's name (cts for the task loss, cts-kl, cts-forward-kl, cts-feature).
"""

from __future__ import annotations

from torch import nn

from ticketlab.config import derive_seed
from ticketlab.cts.config import METHOD_NAMES
from ticketlab.cts.search import search_mask
from ticketlab.data import Dataset
from ticketlab.errors import TicketlabError
from ticketlab.pai.find import PaiResult
from ticketlab.pai.registered import check_density
from ticketlab.pai.registry import MaskMethod, MaskRequest, register
from ticketlab.steps import to_iterations
from ticketlab.trainer import Schedule

NAME = "cts"
HELP = ("CTS / CTS-KL: a binary Concrete relaxation of the mask trained against the frozen weights, exact "
        "top-κ·d logits (Arora & Teuscher 2025)")
COST = ("the search's masked and dense forward passes over training examples and its wall time, plus the dense "
        "training to the rewind step k when k > 0")


def search_length(spec: str, schedule: Schedule) -> int:
    """CTS search length: "2000it", "20ep" or a percentage of the training length ("12.5%")."""
    text = spec.strip()
    if text.endswith("%"):
        try:
            fraction = float(text[:-1]) / 100
        except ValueError:
            raise TicketlabError(f"bad --search-steps {spec!r}: write e.g. 12.5%, 20ep or 2000it") from None
        steps = int(round(fraction * schedule.total))
    else:
        steps = to_iterations(text, schedule.iterations_per_epoch, "search-steps")
    if steps < 1:
        raise TicketlabError(f"--search-steps {spec} is less than one iteration; give a longer search")
    return steps


def find_cts(request: MaskRequest) -> PaiResult:
    """The search as a ticket-finding method with the PaI result shape; its cost counts both its masked
    and its dense forward passes over training examples."""
    configs, data = request.configs, request.data
    cts = configs["cts"]
    steps = search_length(cts.search_steps, Schedule.of(configs["train"], len(data.train_y)))
    result = search_mask(request.model, data, request.density, steps, cts, seed=derive_seed(request.seed, "prune"),
                         invert=request.invert, training_lr=configs["train"].lr)
    info = dict(result.info)
    info["examples_used"] = info["masked_forward_examples"] + info["dense_forward_examples"]
    info["search_log"] = result.log
    collapsed = [n for n in result.mask.names() if not bool(result.mask[n].any())]
    return PaiResult(result.mask, None, collapsed, info)


def check_cts(method: str, configs: dict, data: Dataset, model: nn.Module, density: float, flag: str) -> None:
    """The density keeps a weight and the search length is at least one iteration."""
    check_density(configs, model, density, flag)
    search_length(configs["cts"].search_steps, Schedule.of(configs["train"], len(data.train_y)))


CTS = register(MaskMethod(NAME, "cts", HELP, "largest", COST, find=find_cts, check=check_cts,
                          recorded=tuple(name for name in METHOD_NAMES.values() if name != NAME)))
