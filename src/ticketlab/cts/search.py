"""`search_mask`: Concrete Ticket Search, the entry point, and the search loop it runs.

Weights stay frozen at the model's current values (θ₀, or θ_k when rewinding); one logit per prunable
weight is trained with Adam. Each step draws one logistic noise per logit (shared by the whole
minibatch), forms the soft mask σ((a + L)/τ) (or the authors' σ(a + L/τ), concrete.py), runs the dense network without grad (objectives that
compare to it) and the masked network with grad, backpropagates the scaled objective to the logits
only, balances the gradient against the expected density (balance.py) and steps. The final mask keeps
the global top round(κ·d) logits (extract.py).

The caller's model (weights, buffers, train/eval mode) and global RNG are left as they were: the
search runs on a deep copy, draws its noise and batch order from generators seeded by `seed`, and
forks the global RNG for anything incidental.

Under torchrun every rank runs the whole search on the same batches and noise (the generators are
seeded, not per-rank), so gradients, logits and mask are the same everywhere without communication;
the mask is compared by hash across ranks to make sure. The search is repeated, not split, per rank.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from ticketlab import distributed
from ticketlab.config import derive_seed
from ticketlab.cts.balance import BalanceStep, make_balance
from ticketlab.cts.concrete import RelaxedWeights, expected_density, initial_logits, keep_probability
from ticketlab.cts.config import CtsConfig, method_name, validate_config
from ticketlab.cts.extract import extract_mask
from ticketlab.cts.frozen_net import FrozenNet
from ticketlab.cts.objectives import OBJECTIVES
from ticketlab.data import Dataset, batches_per_epoch, epoch_permutation
from ticketlab.errors import TicketlabError
from ticketlab.guards import check_model_fits_data, isolated_rng
from ticketlab.mask import Mask
from ticketlab.models import prunable_names

Progress = Callable[[int, int], None]  # called with (steps done, search_steps) after every step


@dataclass
class CtsResult:
    mask: Mask
    logits: dict[str, torch.Tensor]  # final logits per prunable weight (CPU, detached)
    log: list[dict]                  # every log_every steps: step, expected_density, objective, lambda, lr
    info: dict


def search_mask(model: nn.Module, data: Dataset, density: float, search_steps: int, config: CtsConfig | None = None,
                *, seed: int = 0, invert: bool = False, log_every: int = 50, progress: Progress | None = None,
                training_lr: float | None = None) -> CtsResult:
    """Search a mask keeping exactly round(density · d) of the model's d prunable weights.

    The Adam learning rate on the logits is `config.lr`, or else `training_lr` (the paper uses the
    training recipe's lr); one of them must be given. `invert` keeps the lowest logits instead.
    """
    config = CtsConfig() if config is None else config
    validate_config(config)
    lr = _check_arguments(model, data, density, search_steps, seed, log_every, config, training_lr)
    start = time.perf_counter()
    with isolated_rng(model, seed, "cts-global"):
        search = ConcreteSearch(model, data, density, config, lr=lr, total_steps=search_steps, seed=seed)
        log = []
        for _ in range(search_steps):
            record = search.step()
            if search.steps_done % log_every == 0 or search.steps_done == search_steps:
                log.append({"step": search.steps_done, "expected_density": expected_density(search.logits.detach()),
                            "objective": float(record.objective), "lambda": record.balance.multiplier,
                            "lr": record.lr})
            if progress is not None:
                progress(search.steps_done, search_steps)
        logits = {name: values.detach().to("cpu").clone() for name, values in search.per_layer_logits().items()}
    mask = extract_mask(logits, search.count, invert=invert)
    wall_time = time.perf_counter() - start
    assert mask.num_kept() == search.count
    distributed.all_equal_hash(f"{method_name(config)} mask", distributed.tensor_bytes(mask.packed()))

    info = {
        "method": method_name(config),
        "density": mask.density(),
        "target_density": float(density),
        "kept": mask.num_kept(),
        "total": mask.num_total(),
        "search_steps": search_steps,
        "batch_size": config.batch_size,
        # Training examples drawn: one masked forward each; the dense forward (kl, forward-kl,
        # feature) sees the same examples again without grad.
        "examples_used": search.masked_examples,
        "masked_forward_examples": search.masked_examples,
        "dense_forward_examples": search.dense_examples,
        "wall_time_seconds": wall_time,
        "final_expected_density": expected_density(search.logits.detach()),
        **({} if config.relaxation == "scaled-sum" else  # scaled-sum keeps with the penalty's σ(a)
           {"final_keep_probability": keep_probability(search.logits.detach(), config.relaxation, config.temperature)}),
        "final_lambda": search.balance.multiplier,
        "lr": lr,
        "budget": search.budget,
        "seed": seed,
        "invert": invert,
        "bn_mode": "train",
        "config": asdict(config),
    }
    return CtsResult(mask, logits, log, info)


@dataclass
class StepRecord:
    objective: torch.Tensor  # scaled objective of this step's batch (detached)
    balance: BalanceStep
    lr: float


class ConcreteSearch:
    """The state of one search: frozen net, flat logits, Adam, balance, batch order and noise stream."""

    def __init__(self, model: nn.Module, data: Dataset, density: float, config: CtsConfig, *, lr: float,
                 total_steps: int, seed: int = 0):
        self.config = config
        self.objective = OBJECTIVES[config.objective]
        self.net = FrozenNet(model, capture_features=self.objective.needs_features)
        total = self.net.total
        self.count = int(round(density * total))
        self.budget = config.budget_factor * density * total  # d′, an expected count: not rounded
        start_density = density if config.init_density is None else config.init_density
        self.logits = initial_logits(start_density, total, self.net.dtype, self.net.device).requires_grad_(True)
        self.optimizer = _adam(self.logits, lr)
        self.base_lr = lr
        self.drop_step = int(round(config.lr_drop_at * total_steps))  # steps from here on use the dropped lr
        self.balance = make_balance(config.balance, self.budget, total, config.smoothing, config.dual_lr)
        noise_generator = torch.Generator(device=self.net.device).manual_seed(derive_seed(seed, "cts-noise"))
        self.relaxed = RelaxedWeights(self.net.theta, self.net.sizes, self.net.shapes, config.temperature,
                                      noise_generator, config.relaxation)
        self.batches = SearchBatches(data, config.batch_size, derive_seed(seed, "cts-data-order"), self.net.device,
                                     self.net.dtype)
        self.steps_done = 0
        self.masked_examples = 0
        self.dense_examples = 0

    def lr_at(self, step: int) -> float:
        return self.base_lr * (self.config.lr_drop_factor if step >= self.drop_step else 1.0)

    def objective_value(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The scaled objective on one batch, under a fresh noise draw, differentiable in the logits."""
        dense = None
        if self.objective.needs_dense:
            dense = self.net.dense(x)
            self.dense_examples += len(x)
        sparse = self.net.masked(x, self.relaxed(self.logits, self.relaxed.draw_noise()))
        self.masked_examples += len(x)
        return self.objective.compute(sparse, dense, y) * self.config.objective_scale

    def step(self) -> StepRecord:
        x, y = self.batches.next()
        value = self.objective_value(x, y)
        (objective_grad,) = torch.autograd.grad(value, [self.logits])
        balanced = self.balance.step(self.logits.detach(), objective_grad)
        lr = self.lr_at(self.steps_done)
        self.optimizer.param_groups[0]["lr"] = lr
        self.logits.grad = balanced.gradient
        self.optimizer.step()
        self.logits.grad = None
        self.steps_done += 1
        return StepRecord(value.detach(), balanced, lr)

    def per_layer_logits(self) -> dict[str, torch.Tensor]:
        return self.net.per_layer(self.logits.detach())


def _adam(logits: torch.Tensor, lr: float) -> torch.optim.Adam:
    """Adam on the logits, fused where torch supports it (one kernel instead of a dozen model-sized ops)."""
    try:
        return torch.optim.Adam([logits], lr=lr, fused=True)
    except RuntimeError:
        return torch.optim.Adam([logits], lr=lr)


class SearchBatches:
    """Minibatches in a seeded order: a fresh permutation of the training set every epoch, no augmentation."""

    def __init__(self, data: Dataset, batch_size: int, order_seed: int, device: torch.device, dtype: torch.dtype):
        self.x = data.train_x.to(device, dtype)
        self.y = data.train_y.to(device)
        self.batch_size = batch_size
        self.order_seed = order_seed
        self.per_epoch = batches_per_epoch(len(self.y), batch_size)
        self.drawn = 0
        self.order: torch.Tensor | None = None

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = divmod(self.drawn, self.per_epoch)
        if index == 0:
            self.order = epoch_permutation(len(self.y), self.order_seed, epoch).to(self.x.device)
        self.drawn += 1
        picked = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        return self.x.index_select(0, picked), self.y.index_select(0, picked)


def _check_arguments(model, data, density, search_steps, seed, log_every, config: CtsConfig, training_lr) -> float:
    """Validate what `search_mask` was given; return the learning rate on the logits."""
    if isinstance(density, bool) or not isinstance(density, numbers.Real) or not 0 < density < 1:
        raise TicketlabError(f"CTS density must be strictly between 0 and 1 (the fraction of weights kept); got {density!r}")
    for name, value, lowest in (("search_steps", search_steps, 1), ("seed", seed, 0), ("log_every", log_every, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lowest:
            raise TicketlabError(f"CTS {name} must be an int >= {lowest}; got {value!r}")
    names = prunable_names(model)
    if not names:
        raise TicketlabError(f"{type(model).__name__} has no prunable (conv or linear) weights; "
                             "build models with ticketlab.models.create_model")
    params = dict(model.named_parameters())
    total = sum(params[name].numel() for name in names)
    if int(round(density * total)) == 0:
        raise TicketlabError(f"density {density} keeps 0 of {total} weights; raise the density")
    _check_data(model, data)
    lr = config.lr if config.lr is not None else training_lr
    if lr is None:
        raise TicketlabError("CTS needs a learning rate for the logits: set CtsConfig.lr or pass the training "
                             "lr as training_lr (the paper uses the training lr, 0.1 on CIFAR)")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise TicketlabError(f"CTS learning rate must be a positive number; got {lr!r}")
    return float(lr)


def _check_data(model: nn.Module, data) -> None:
    if not isinstance(data, Dataset):
        raise TicketlabError("CTS searches with training data; pass a ticketlab Dataset (see load_dataset)")
    if len(data.train_y) == 0:
        raise TicketlabError(f"dataset {data.name} has no training examples to search with; use a larger training subset")
    check_model_fits_data(model, data)
