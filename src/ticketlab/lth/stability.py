"""Instability analysis (linear mode connectivity, Frankle et al. 2020) of a ticket or a dense net.

From θ_k, two copies train to the end with different data orders (and augmentation draws). The
error barrier is the largest test error along the straight line between their final weights minus
the mean of the two ends: ~0 means training from θ_k is stable (the copies land in one linearly
connected minimum), which is when rewinding to k finds matching tickets. If k is later than the
ticket's own rewind point, the ticket is first trained (one copy, its own data order) up to k.
All tensors of the state, BatchNorm running statistics included, are interpolated. The interpolated
running statistics are not those of the interpolated weights (the means and variances of a network
halfway between two others are not halfway between theirs), which inflates the barrier of BatchNorm
nets; `bn_reestimate=N` re-estimates them at every point on N training batches (batch size of the
recipe, a seeded order, no augmentation), as the linear-mode-connectivity literature does. 0 (the
default) keeps the interpolated statistics.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from ticketlab.batchnorm import batchnorm_layers, recalibrate_batchnorm
from ticketlab.config import derive_seed
from ticketlab.errors import TicketlabError
from ticketlab.files import read_json, write_json
from ticketlab.figures import pyplot, save_figure
from ticketlab.models import model_from_architecture
from ticketlab.runs import open_dir
from ticketlab.runtime import load_data_config
from ticketlab.steps import to_iterations
from ticketlab.ticket import load_ticket, read_metadata
from ticketlab.trainer import Schedule, evaluate, load_final_weights, train

RESULT = "result.json"


def interpolate(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    return {k: (torch.lerp(a[k], b[k], alpha) if a[k].is_floating_point() else a[k]) for k in a}


def error_barrier(errors: list[float]) -> float:
    return max(errors) - (errors[0] + errors[-1]) / 2


def run_stability(ticket_path: str, rewind_step: str | None, runs_dir: str, seed: int, points: int,
                  data_root: str | None, quiet: bool, same_data_order: bool = False, bn_reestimate: int = 0) -> dict:
    ticket = load_ticket(ticket_path)
    if ticket.provenance.train_config is None or ticket.provenance.data_config is None:
        raise TicketlabError(f"{ticket_path} records no training recipe; stability needs a ticket made by train, imp or demo")
    train_cfg, data_cfg = ticket.recipe(), ticket.data_config()
    if data_root is not None:
        data_cfg = dataclasses.replace(data_cfg, data_root=data_root)
    if points < 3:
        raise TicketlabError(f"--points must be at least 3, got {points}")
    if isinstance(bn_reestimate, bool) or not isinstance(bn_reestimate, int) or bn_reestimate < 0:
        raise TicketlabError(f"--bn-reestimate must be 0 or a number of batches, got {bn_reestimate!r}")
    data = load_data_config(data_cfg)
    schedule = Schedule.of(train_cfg, len(data.train_y))
    start = int(ticket.provenance.rewind_step or 0)
    k = start if rewind_step is None else to_iterations(rewind_step, schedule.iterations_per_epoch, "rewind-step")
    if not start <= k < schedule.total:
        raise TicketlabError(f"--rewind-step {k} must lie between the ticket's rewind point {start} and the training "
                             f"length {schedule.total}")

    identity = {"ticket": read_metadata(ticket_path)["checksum"], "k": k, "seed": seed, "points": points,
                "same_data_order": same_data_order}
    if bn_reestimate:  # only when asked, so earlier runs keep their names
        identity["bn_reestimate"] = bn_reestimate
    run_dir = Path(runs_dir) / ("stability-" + hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10])
    if (run_dir / RESULT).exists():
        return read_json(run_dir / RESULT)
    open_dir(run_dir)

    recorded_seed = ticket.provenance.data_seed
    base_seed = recorded_seed if recorded_seed is not None else derive_seed(seed, "data")
    model = model_from_architecture(ticket.architecture)
    model.load_state_dict(ticket.init_state)
    if k > start:  # bring the ticket from its own rewind point to k, with its own data order
        to_k = dataclasses.replace(train_cfg, steps=f"{k}it", eval_every=f"{k}it")
        train(model, data, to_k, out_dir=run_dir / "to-k", data_seed=base_seed, mask=ticket.mask,
              start_iteration=start, quiet=quiet, label=f"to k={k}")
    theta_k = {n: v.clone() for n, v in model.state_dict().items()}

    finals = []
    for copy in ("a", "b"):
        copy_seed = derive_seed(seed, "stability-copy") if same_data_order else derive_seed(seed, f"stability-copy-{copy}")
        model.load_state_dict(theta_k)
        train(model, data, train_cfg, out_dir=run_dir / f"copy-{copy}", data_seed=copy_seed, mask=ticket.mask,
              start_iteration=k, quiet=quiet, label=f"copy {copy}")
        load_final_weights(run_dir / f"copy-{copy}", model)
        finals.append({n: v.clone() for n, v in model.state_dict().items()})

    alphas = [i / (points - 1) for i in range(points)]
    errors = []
    for alpha in alphas:
        model.load_state_dict(interpolate(finals[0], finals[1], alpha))
        # The same batches at every point, so the points differ only by their weights.
        recalibrate_batchnorm(model, data, bn_reestimate, train_cfg.batch_size, derive_seed(seed, "stability-bn"))
        errors.append(1 - evaluate(model, data.test_x, data.test_y)[1])
    result = {"run_dir": str(run_dir), "ticket": str(ticket_path), "rewind_step": k, "alphas": alphas,
              "test_errors": errors, "barrier": error_barrier(errors), "density": ticket.mask.density(),
              "plot": str(run_dir / "barrier.png"), "bn_reestimate": bn_reestimate,
              "batchnorm": bool(batchnorm_layers(model))}
    plot_barrier(alphas, errors, k, run_dir / "barrier.png")
    write_json(run_dir / RESULT, result)
    return result


def plot_barrier(alphas: list[float], errors: list[float], k: int, path: Path) -> None:
    fig, ax = pyplot().subplots(figsize=(6, 4), dpi=110)
    ax.plot(alphas, [100 * e for e in errors], "o-")
    ax.set_xlabel("interpolation α (0 = copy A, 1 = copy B)")
    ax.set_ylabel("test error (%)")
    ax.set_title(f"linear interpolation from rewind step {k}: barrier {100 * error_barrier(errors):.2f} pp")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
