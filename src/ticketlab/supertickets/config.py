"""`SuperConfig`: the knobs of two-in-one training (docs/methods.md, SuperTickets) and its baselines and ablations."""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab import checks
from ticketlab.config import (GRASP_BATCHES, GRASP_BATCHES_HELP, GRASP_METHODS, MAX_SCORE_BATCHES, option,
                              resolve_grasp_batches, validate_density)
from ticketlab.errors import TicketlabError

BASELINES = ("none", "magnitude", "snip", "grasp", "synflow", "random")


@dataclass
class SuperConfig:
    density: float = option(0.1, "target density κ of the ticket: the fraction of conv/linear weights kept "
                            "(the classifier is never pruned)")
    prune_interval: str = option("auto", "progressive magnitude pruning every this often; the k-th event prunes to "
                                 "density 1 - min(0.1k, 1 - κ); auto spaces the events so that κ is reached at 80% "
                                 "of training and the last 20% re-rank at κ (reactivation)")
    shrink_interval: str = option("2ep", "remove the channels with |γ| <= --gamma-threshold every this often")
    rho: float = option(0.02, "weight ρ of the FLOPs-weighted L1 penalty on the depthwise BN scales γ")
    rho_warmup: str = option("2ep", "ρ rises linearly from 0 to --rho over this long")
    gamma_threshold: float = option(1e-3, "channels with |γ| at or below this are removed by a shrink")
    schedule: str = option("progressive", "progressive pruning events, or one prune to κ at the end (ablation)",
                           choices=("progressive", "one-shot"))
    reactivation: bool = option(True, "rank dormant (pruned) weights with the live ones at every event, so strong "
                                "ones come back; --no-reactivation ranks live weights only (ablation)")
    masks_on_shrink: str = option("reset", "after a shrink, reset the shrunk blocks' masks to dense (the paper) or "
                                  "keep them (ablation)", choices=("reset", "keep"))
    reset_masks_after_prune: bool = option(False, "ablation: after each prune event the pruned weights stay at zero "
                                           "and the mask is reset to dense until the next event")
    search: bool = option(True, "architecture search (L1 penalty and shrinking); --no-search prunes the fixed supernet")
    baseline: str = option("none", "instead of two-in-one training: search only, then one-shot pruning to κ with "
                           "this method on the searched, trained network", choices=BASELINES)
    retrain: str = option("0it", "then retrain with the mask fixed, from the found weights, for this long "
                          "(0it = no retraining; results report both)")
    score_batches: int = option(1, "baselines: minibatches of training data SNIP and GraSP score on")
    grasp_batches: str | None = option(None, GRASP_BATCHES_HELP, identity="always", choices=GRASP_BATCHES)
    calibration_batches: int = option(10, "before a found network is evaluated, its BatchNorm statistics are "
                                      "re-estimated on this many training batches (pruning makes them stale); 0 = off")

    def __post_init__(self):
        validate_super(self)
        self.grasp_batches = resolve_grasp_batches(self.grasp_batches, self.baseline in GRASP_METHODS)


def validate_super(cfg: SuperConfig) -> None:
    validate_density(cfg.density)
    checks.text("--prune-interval", cfg.prune_interval)
    if cfg.prune_interval != "auto":
        checks.length(cfg.prune_interval, "prune-interval")
    checks.length(cfg.shrink_interval, "shrink-interval")
    checks.length(cfg.rho_warmup, "rho-warmup")
    checks.length(cfg.retrain, "retrain")
    checks.non_negative("--rho", cfg.rho)
    checks.non_negative("--gamma-threshold", cfg.gamma_threshold)
    checks.integer("--calibration-batches", cfg.calibration_batches, 0, MAX_SCORE_BATCHES)
    checks.integer("--score-batches", cfg.score_batches, 1, MAX_SCORE_BATCHES)
    checks.text("--schedule", cfg.schedule, ("progressive", "one-shot"))
    checks.text("--masks-on-shrink", cfg.masks_on_shrink, ("reset", "keep"))
    checks.text("--baseline", cfg.baseline, BASELINES)
    for name in ("reactivation", "reset_masks_after_prune", "search"):
        checks.boolean("--" + name.replace("_", "-"), getattr(cfg, name))
    if cfg.baseline != "none" and not cfg.search:
        raise TicketlabError("a baseline prunes the searched network; drop --no-search or use --baseline none")


@dataclass
class TransferSource:
    """Part of a transfer run's identity: which ticket it starts from (by content, not by path)."""
    ticket_checksum: str = option("", "checksum of the source ticket file")
