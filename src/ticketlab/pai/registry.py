"""Every mask-finding method in one registry: the PaI methods, CTS and IMP/LTR, each registered by its family.

An entry (`MaskMethod`) is one interface for all of them: its name and family, one line of help naming
its paper, how it finds a mask for a run's request (`find`, for the methods a `prune` run can use; IMP
and LTR find theirs by a run of their own), the dry-run check of a request before any run directory
exists, its score order (the inverted sanity ablation keeps the worst weights by it), what compute its
tickets record as `search_cost`, the other method names its tickets may record (CTS records its
objective: cts-kl, ...), and, when it has one, a sanity procedure of its own.

The PaI methods register in pai/registered.py, CTS in cts/registered.py, IMP and LTR in
lth/sanity.py; `prune`, `pai` sweeps and `sanity` look methods up here and never branch on a name.
This module imports no family, so every family can register into it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ticketlab.data import Dataset
from ticketlab.errors import TicketlabError

SCORE_ORDERS = ("largest", "smallest", None)


@dataclass(frozen=True)
class MaskRequest:
    """One seed's mask to find: the run's configs ("pai": method, density and the PaI options; "train",
    "cts", ...), the model holding the weights to score (θ₀, or θ_k when rewinding), the data, the run's
    seed (each method derives its own seeds from it), and whether to keep the worst-scored weights."""
    method: str
    configs: dict
    model: nn.Module
    data: Dataset
    seed: int
    invert: bool = False

    @property
    def density(self) -> float:
        return self.configs["pai"].density


@dataclass(frozen=True)
class SanityProcedure:
    """How a method's sanity check runs: `check(configs, schedule, data)` before anything is written
    (`data`: a Dataset already in memory, or None), and `run(configs, seeds, runs_dir, quiet, workers,
    schedule) -> (results per seed, run directory)`, each seed giving the ticket's and every ablation's
    test accuracy and the density."""
    check: Callable[[dict, str | None, Dataset | None], None]
    run: Callable[..., tuple[dict, object]]


@dataclass(frozen=True)
class MaskMethod:
    name: str                 # what --method takes
    family: str               # the package that registered it: pai, cts, lth
    help: str                 # one line naming its paper
    score_order: str | None   # "largest": keeps the highest scores; "smallest": the lowest (GraSP); None: no scores
    cost: str                 # what its tickets' search_cost counts
    find: Callable[[MaskRequest], object] | None = None  # request -> PaiResult; None: found by a run of its own
    check: Callable[[str, dict, Dataset, nn.Module, float, str], None] | None = None
    #      (method, configs, data, model, density, flag): the dry run of a request, before any run directory
    recorded: tuple[str, ...] = ()        # other method names its tickets record
    sanity: SanityProcedure | None = None  # None: the one-shot sanity check (pai/sanity.py)

    def __post_init__(self):
        if self.score_order not in SCORE_ORDERS:
            raise ValueError(f"score_order must be one of {SCORE_ORDERS}; got {self.score_order!r}")
        if (self.find is None) != (self.check is None):
            raise ValueError(f"method {self.name}: find and check come together")
        if self.find is None and self.sanity is None:
            raise ValueError(f"method {self.name} neither finds a mask per request nor has a sanity procedure")


MASK_METHODS: dict[str, MaskMethod] = {}
_RECORDED: dict[str, str] = {}  # a recorded method name -> the registered method


def register(method: MaskMethod) -> MaskMethod:
    """Add a method; its name and recorded names must be new."""
    for name in (method.name, *method.recorded):
        if name in MASK_METHODS or name in _RECORDED:
            raise ValueError(f"mask-finding method name {name!r} is registered twice")
    MASK_METHODS[method.name] = method
    _RECORDED.update({name: method.name for name in method.recorded})
    return method


def mask_method(name: str) -> MaskMethod:
    """The method registered as `name` (what --method takes); one line naming the choices when there is none."""
    method = MASK_METHODS.get(name) if isinstance(name, str) else None
    if method is None:
        others = [m.name for m in MASK_METHODS.values() if m.find is None]
        raise TicketlabError(f"unknown pruning method {name!r}; known: {', '.join(finding_method_names() + others)}")
    return method


def recorded_method(name: str) -> MaskMethod:
    """The method behind a method name a ticket records: its registered name or one of its recorded
    names (cts-kl gives cts); an "-inverted" ticket is its method's too."""
    if isinstance(name, str):
        base = name.removesuffix("-inverted")
        method = MASK_METHODS.get(_RECORDED.get(base, base))
        if method is not None:
            return method
    raise TicketlabError(f"no registered method made tickets of method {name!r}; known: "
                         f"{', '.join([*MASK_METHODS, *_RECORDED])}")


def mask_methods(family: str | None = None) -> list[MaskMethod]:
    """The registered methods (of one family), in registration order."""
    return [m for m in MASK_METHODS.values() if family is None or m.family == family]


def finding_method_names() -> list[str]:
    """The methods that find a mask per request: what `prune --method` and `pai --methods` take."""
    return [m.name for m in MASK_METHODS.values() if m.find is not None]


def finding_method(name: str) -> MaskMethod:
    """The method `prune --method name` runs; one line naming the choices when there is none."""
    method = MASK_METHODS.get(name) if isinstance(name, str) else None
    if method is None or method.find is None:
        raise TicketlabError(f"unknown pruning method {name!r}; known: {', '.join(finding_method_names())}")
    return method
