"""`find_mask`: run one pruning-at-initialization method on a model and return an exact-count mask.

This is the one entry point: it checks the user's options (bad ones are TicketlabErrors), builds
the `PaiRequest`, runs the method with the caller's RNG state and model untouched, and reports
what happened (achieved density, collapsed layers, examples used, time).

Under torchrun every rank scores the same batches with the same weights and no communication, so
the scores (SNIP, GraSP, ...) and the mask come out the same everywhere; the mask is compared by hash
across ranks to make sure. Scoring is cheap next to training, so it is simply repeated on each rank.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass

import torch
from torch import nn

from ticketlab import checks, distributed
from ticketlab.config import GRASP_BATCHES, GRASP_METHODS
from ticketlab.data import Dataset
from ticketlab.errors import TicketlabError
from ticketlab.guards import check_model_fits_data, isolated_rng
from ticketlab.mask import Mask
from ticketlab.models import output_name, prunable_names
from ticketlab.pai.methods import method_info
from ticketlab.pai.request import PaiRequest
from ticketlab.pai.selection import check_floor_fits, layer_floors, target_count


@dataclass
class PaiResult:
    mask: Mask
    scores: dict[str, torch.Tensor] | None  # final per-weight scores (float64, CPU), method's convention
    collapsed_layers: list[str]             # prunable layers left with no weight
    info: dict


def find_mask(method: str, model: nn.Module, data: Dataset | None, density: float, *, seed: int = 0,
              score_batches: int = 1, batch_size: int = 128, iterations: int | None = None,
              min_per_layer: int = 0, invert: bool = False, grasp_batches: str = "halves") -> PaiResult:
    """Keep exactly round(density · d) of the model's d prunable weights, chosen by `method`.

    The model holds the weights to score (θ₀, or θ_k when rewinding); its weights, mode and buffers
    are left as they were, and so is the global RNG. Data methods score on the first `score_batches`
    batches of a permutation of the training set seeded by `seed`. `invert` keeps the worst-scored
    weights instead (iterative methods invert at every round, so they follow the worst weights
    throughout); `min_per_layer` reserves each layer's best m weights (all of a smaller layer)
    before the global fill, at every round. `grasp_batches` (grasp, grasp-abs): "halves" computes BatchNorm
    statistics over each half of a scoring batch, as the reference code does; "whole" over the whole batch.
    """
    info = method_info(method)
    request = build_request(method, model, data, density, seed=seed, score_batches=score_batches,
                            batch_size=batch_size, iterations=iterations, min_per_layer=min_per_layer, invert=invert,
                            grasp_batches=grasp_batches)
    start = time.perf_counter()
    with isolated_rng(model, seed, "pai-global"):
        output = info.run(request)
    wall_time = time.perf_counter() - start

    mask = output.mask
    assert mask.num_kept() == request.count, f"{method} kept {mask.num_kept()} weights instead of {request.count}"
    distributed.all_equal_hash(f"{method} mask", distributed.tensor_bytes(mask.packed()))
    collapsed = [name for name in mask.names() if not bool(mask[name].any())]
    details = {
        "method": method,
        "density": mask.density(),
        "target_density": float(density),
        "kept": mask.num_kept(),
        "total": mask.num_total(),
        "examples_used": output.examples_used,
        "rounds": output.rounds,
        "bn_mode": info.bn_mode,
        "seed": seed,
        "min_per_layer": min_per_layer,
        "invert": invert,
        "wall_time_seconds": wall_time,
    }
    if info.uses_data:
        details.update(score_batches=score_batches, batch_size=batch_size)
    if method in GRASP_METHODS:
        details.update(grasp_batches=grasp_batches)
    if info.iterative:
        details["iterations"] = request.iterations
    details.update(output.extra)
    return PaiResult(mask, output.scores, collapsed, details)


def build_request(method: str, model: nn.Module, data: Dataset | None, density: float, *, seed: int = 0,
                  score_batches: int = 1, batch_size: int = 128, iterations: int | None = None,
                  min_per_layer: int = 0, invert: bool = False, grasp_batches: str = "halves") -> PaiRequest:
    """The validated request `find_mask` runs (public so tests can step through iterative rounds)."""
    info = method_info(method)
    checks.text("grasp_batches", grasp_batches, GRASP_BATCHES)
    if isinstance(density, bool) or not isinstance(density, numbers.Real) or not 0 < density <= 1:
        raise TicketlabError(f"density must be in (0, 1] (the fraction of weights kept); got {density!r}")
    seed, score_batches, batch_size, min_per_layer = (
        _checked_int(name, value, lowest) for name, value, lowest in
        (("seed", seed, 0), ("score_batches", score_batches, 1), ("batch_size", batch_size, 1),
         ("min_per_layer", min_per_layer, 0)))
    if iterations is not None:
        if not info.iterative:
            raise TicketlabError(f"method {method} is single-shot, so iterations does not apply; "
                                 "leave it unset or use iter-snip, force or synflow")
        iterations = _checked_int("iterations", iterations, 1)
    if invert and info.score_order is None:
        raise TicketlabError(f"method {method} has no scores to invert; use a scoring method "
                             "(magnitude, snip, grasp, synflow, ...) with invert")
    if info.uses_data:
        _check_data(method, model, data)

    names = prunable_names(model)
    if not names:
        raise TicketlabError(f"{type(model).__name__} has no prunable (conv or linear) weights; "
                             "build models with ticketlab.models.create_model")
    params = dict(model.named_parameters())
    sizes = {name: params[name].numel() for name in names}
    count = target_count(density, sum(sizes.values()))
    if count == 0:
        raise TicketlabError(f"density {density} keeps 0 of {sum(sizes.values())} weights; raise the density")
    check_floor_fits(layer_floors(sizes, min_per_layer), count, min_per_layer)
    return PaiRequest(model=model, data=data, prunable=names, classifier=output_name(model),
                      density=float(density), count=count, seed=seed, score_batches=score_batches,
                      batch_size=batch_size, iterations=iterations or info.default_iterations or 1,
                      min_per_layer=min_per_layer, invert=invert, grasp_batches=grasp_batches)


def _checked_int(name: str, value, lowest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lowest:
        raise TicketlabError(f"{name} must be an int >= {lowest}; got {value!r}")
    return int(value)


def _check_data(method: str, model: nn.Module, data: Dataset | None) -> None:
    if data is None:
        raise TicketlabError(f"method {method} scores with training data; pass a dataset, or use a data-free "
                             "method (random, erk, smart-ratio, magnitude, synflow)")
    check_model_fits_data(model, data)
