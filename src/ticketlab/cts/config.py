"""`CtsConfig`: every knob of Concrete Ticket Search (docs/methods.md, Concrete Ticket Search), with the paper's values as defaults.

The fields carry CLI help text (`ticketlab.config.option`), so the command line can be generated from
this dataclass like the other configs. `validate_config` turns bad values into one-line TicketlabErrors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ticketlab import checks
from ticketlab.config import option
from ticketlab.cts.concrete import RELAXATIONS
from ticketlab.errors import TicketlabError

# Objective name -> the method name results are reported under (CTS-KL is the paper's recommendation).
METHOD_NAMES = {"kl": "cts-kl", "task": "cts", "forward-kl": "cts-forward-kl", "feature": "cts-feature"}
BALANCES = ("gradbalance", "lagrange")
MAX_SEARCH_PERCENT = 1000  # a search 10x as long as the training: beyond that, a typo


@dataclass
class CtsConfig:
    objective: str = option("kl", "what the masked net is fit to: kl = reverse KL(p_sparse || p_dense) to the frozen "
                            "dense net (CTS-KL), task = cross-entropy on the labels (CTS), forward-kl = "
                            "KL(p_dense || p_sparse), feature = MSE of the classifier's inputs standardized with "
                            "the dense net's batch statistics", choices=tuple(METHOD_NAMES))
    temperature: float = option(2 / 3, "temperature of the binary Concrete relaxation")
    relaxation: str = option("scaled-sum", "the soft mask: scaled-sum = sigma((a + L)/tau), the binary Concrete, kept "
                             "with probability sigma(a) as the density penalty counts; scaled-noise = sigma(a + L/tau), "
                             "as the CTS authors' code computes it, kept with probability sigma(tau*a) while the "
                             "penalty counts sigma(a) (docs/methods.md)", choices=RELAXATIONS)
    budget_factor: float = option(1.1, "GradBalance budget d' = budget_factor * density * d expected kept weights")
    smoothing: float = option(0.01, "GradBalance smoothing s: lambda <- (1 - s) * lambda + s * lambda*")
    objective_scale: float = option(100.0, "objective multiplier (cancels in GradBalance; matters for Adam's eps "
                                    "and for the lagrange balance)")
    lr: float | None = option(None, "Adam learning rate on the logits (default: the training learning rate, as in the "
                              "paper, whose SGD recipe uses 0.1; with an Adam recipe's lr of 1e-3 or less the logits "
                              "barely move in a short search: give 0.1, see docs/results/pai-cts-*)")
    lr_drop_at: float = option(0.88, "fraction of the search after which the learning rate drops")
    lr_drop_factor: float = option(0.1, "learning-rate factor applied at lr_drop_at")
    balance: str = option("gradbalance", "how the expected density is held at the budget: gradbalance (the paper) or "
                          "lagrange (a multiplier learned by dual ascent)", choices=BALANCES)
    dual_lr: float = option(100.0, "lagrange only: dual-ascent step on the multiplier per unit of normalized budget "
                            "violation (sum sigma(a) - d') / d (our choice)")
    batch_size: int = option(128, "examples per search step")
    search_steps: str = option("12.5%", "search length: iterations (2000it), epochs (20ep) or a percentage of the "
                               "training length (12.5% = the paper's short search, 100% = long)")
    init_density: float | None = option(None, "start every logit at logit(init_density) instead of logit(density) "
                                        "(for studying the balance; the paper starts at the target density)")

    def __post_init__(self):
        validate_config(self)


def method_name(config: CtsConfig) -> str:
    return METHOD_NAMES[config.objective]


def validate_config(config: CtsConfig) -> None:
    """Raise a TicketlabError naming the first bad field."""
    if not isinstance(config, CtsConfig):
        raise TicketlabError(f"CTS needs a CtsConfig; got {type(config).__name__}")
    if not isinstance(config.objective, str) or config.objective not in METHOD_NAMES:
        raise TicketlabError(f"unknown CTS objective {config.objective!r}; known: {', '.join(METHOD_NAMES)}")
    if not isinstance(config.relaxation, str) or config.relaxation not in RELAXATIONS:
        raise TicketlabError(f"unknown CTS relaxation {config.relaxation!r}; known: {', '.join(RELAXATIONS)}")
    if not isinstance(config.balance, str) or config.balance not in BALANCES:
        raise TicketlabError(f"unknown CTS balance {config.balance!r}; known: {', '.join(BALANCES)}")
    _positive("temperature", config.temperature)
    _positive("budget_factor", config.budget_factor)
    _positive("objective_scale", config.objective_scale)
    _positive("lr_drop_factor", config.lr_drop_factor)
    _positive("dual_lr", config.dual_lr)
    if config.lr is not None:
        _positive("lr", config.lr)
    if not _is_real(config.smoothing) or not 0 < config.smoothing <= 1:
        raise TicketlabError(f"CTS smoothing must be in (0, 1]; got {config.smoothing!r}")
    if not _is_real(config.lr_drop_at) or not 0 <= config.lr_drop_at <= 1:
        raise TicketlabError(f"CTS lr_drop_at must be a fraction of the search in [0, 1]; got {config.lr_drop_at!r}")
    if isinstance(config.batch_size, bool) or not isinstance(config.batch_size, int) or config.batch_size < 1:
        raise TicketlabError(f"CTS batch_size must be an int >= 1; got {config.batch_size!r}")
    if config.init_density is not None and (not _is_real(config.init_density) or not 0 < config.init_density < 1):
        raise TicketlabError(f"CTS init_density must be in (0, 1) or None; got {config.init_density!r}")
    check_search_steps(config.search_steps)


def check_search_steps(spec) -> None:
    """--search-steps: a length (2000it, 20ep) or a positive percentage of the training length (12.5%)."""
    if isinstance(spec, str) and spec.strip().endswith("%"):
        try:
            percent = float(spec.strip()[:-1])
        except ValueError:
            percent = float("nan")
        if not math.isfinite(percent) or not 0 < percent <= MAX_SEARCH_PERCENT:
            raise TicketlabError(f"bad --search-steps {spec!r}: a percentage of the training length must be above 0 "
                                 f"and at most {MAX_SEARCH_PERCENT:g}%, e.g. 12.5%")
        return
    checks.length(spec, "search-steps", positive_length=True)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(name: str, value) -> None:
    if not _is_real(value) or value <= 0:
        raise TicketlabError(f"CTS {name} must be a positive number; got {value!r}")
