"""Two-in-one training (docs/methods.md, SuperTickets): one training of the supernet that searches and prunes at once.

Each step: task loss → optimizer step → the proximal step of ρ(t)·Σ π_j|γ_j| on the depthwise BN
scales (ρ rising linearly over the warm-up) → the mask. Every `shrink_interval` the channels with
|γ| ≤ threshold are removed physically (shrink.py; optimizer state, masks, dormant values and θ₀
follow), every `prune_interval` a progressive global magnitude prune with reactivation
(progressive.py). At the end a last shrink, and a last prune to exactly κ if the events did not
end there (too few events, a mask reset after a shrink, or the one-shot ablation).

This is the one loop besides the trainer's (trainer.py), because the network changes shape while it
trains; it uses the trainer's schedule, optimizer, batching and augmentation rules (pure functions of
data seed and iteration), so a run is deterministic for a given seed. It is not checkpointed mid-way:
an interrupted run starts again. Retraining, transfer and every later use go through the trainer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab import progress
from ticketlab.config import TrainConfig
from ticketlab.data import Dataset
from ticketlab.steps import to_iterations
from ticketlab.supertickets.config import SuperConfig
from ticketlab.supertickets.progressive import SparseState, progressive_density
from ticketlab.supertickets.shrink import (architecture_scales, l1_penalty, live_channels, proximal_l1_,
                                           remap_optimizer, shrink_)
from ticketlab.trainer import Schedule, TrainingBatches, build_optimizer, evaluate, set_learning_rate


@dataclass
class SearchOutcome:
    state: SparseState
    init_state: dict[str, torch.Tensor]   # θ₀ cut to the searched architecture
    events: list[dict] = field(default_factory=list)
    iterations: int = 0
    train_examples: int = 0
    wall_time_seconds: float = 0.0


def two_in_one(model: nn.Module, data: Dataset, cfg: TrainConfig, scfg: SuperConfig, *, data_seed: int,
               prune: bool = True, log=lambda message: None, quiet: bool = True, label: str = "two-in-one") -> SearchOutcome:
    """Train `model` in place with search (if scfg.search) and progressive pruning (if `prune`)."""
    started = time.perf_counter()
    schedule = Schedule.of(cfg, len(data.train_y))
    ipe = schedule.iterations_per_epoch
    prune_every = prune_interval(scfg, schedule.total, ipe)
    shrink_every = max(1, to_iterations(scfg.shrink_interval, ipe, "shrink-interval"))
    warmup = to_iterations(scfg.rho_warmup, ipe, "rho-warmup")
    progressive = prune and scfg.schedule == "progressive"

    init_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = SparseState(model)
    optimizer = build_optimizer(model, cfg)
    scales = architecture_scales(model) if scfg.search else []
    augment = data.augment if cfg.augment == "auto" else cfg.augment
    outcome = SearchOutcome(state, init_state)
    event = 0

    def note(iteration: int, kind: str, **details) -> None:
        entry = {"iteration": iteration, "event": kind, "density": state.density(), "channels": live_channels(model),
                 **details}
        outcome.events.append(entry)
        log(f"iteration {iteration}: {kind} " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                         for k, v in entry.items() if k not in ("iteration", "event")))

    def shrink(iteration: int) -> None:
        nonlocal scales, init_state
        before = dict(model.named_parameters())
        changes = shrink_(model, scfg.gamma_threshold)
        if not changes:
            return
        remap_optimizer(optimizer, model, before, changes)
        outcome.init_state = init_state = changes.apply_to_state(init_state)
        state.follow(model, changes, reset_shrunk=prune and scfg.masks_on_shrink == "reset")
        if prune:
            state.apply_(model)
        scales = architecture_scales(model)
        note(iteration, "shrink", removed_channels=changes.removed_channels, deleted_paths=changes.deleted_paths)

    def prune_to(iteration: int, density: float) -> None:
        stats = state.prune_(model, density, reactivation=scfg.reactivation)
        note(iteration, "prune", target=density, kept=state.kept(), total=state.total(), pruned=stats["pruned"],
             revived=stats["revived"])

    batches = TrainingBatches(data.train_x, data.train_y, cfg.batch_size, ipe, data_seed, augment)
    model.train()
    reporter = progress.Reporter(label, schedule.total, quiet=quiet)
    for iteration in range(schedule.total):
        x, y = batches.at(iteration)
        lr = schedule.learning_rate(iteration)
        set_learning_rate(optimizer, lr)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scales and scfg.rho > 0:
            rho = scfg.rho * min(1.0, (iteration + 1) / warmup) if warmup > 0 else scfg.rho
            proximal_l1_(scales, lr * rho)
        if prune:
            state.apply_(model)
        outcome.train_examples += len(y)

        done = iteration + 1
        if scfg.search and done % shrink_every == 0 and done < schedule.total:
            shrink(done)
        if progressive and done % prune_every == 0 and done < schedule.total:
            event += 1
            prune_to(done, progressive_density(event, scfg.density))
            if scfg.reset_masks_after_prune:
                state.forget_and_densify_()
        if scales and done % ipe == 0:
            note(done, "epoch", loss=loss.item(), penalty=l1_penalty(scales))
        reporter.advance(done, lambda: (loss.item(), None), final=done == schedule.total)
    reporter.close()

    if scfg.search:
        shrink(schedule.total)
    if prune and state.kept() != state.count(scfg.density):
        prune_to(schedule.total, scfg.density)
    outcome.iterations = schedule.total
    outcome.wall_time_seconds = time.perf_counter() - started
    return outcome


def prune_interval(scfg: SuperConfig, total: int, iterations_per_epoch: int) -> int:
    """Iterations between prune events; "auto" reaches κ at 80% of training (events of 10% each)."""
    if scfg.prune_interval != "auto":
        return max(1, to_iterations(scfg.prune_interval, iterations_per_epoch, "prune-interval"))
    events = max(1, math.ceil(round((1 - scfg.density) / 0.1, 9)))
    return max(1, int(0.8 * total) // events)


def accuracy(model: nn.Module, data: Dataset) -> dict:
    val_loss, val_acc = evaluate(model, data.val_x, data.val_y)
    test_loss, test_acc = evaluate(model, data.test_x, data.test_y)
    return {"val_accuracy": val_acc, "val_loss": val_loss, "test_accuracy": test_acc, "test_loss": test_loss}
