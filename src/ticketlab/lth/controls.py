"""Controls that tell whether a ticket is special, each trained with the ticket's own recipe.

Every control starts at the ticket's rewind iteration k, with the same data order and schedule:
  random-reinit       same mask, fresh weights from the init distribution (own seed)
  random-reinit-sign  same mask, fresh magnitudes with the signs of θ_k
  shuffle-layerwise   each layer's mask permuted (same per-layer counts), weights θ_k
  random-global       a random mask with the same total count, weights θ_k
θ_k is the run's rewind point (level-0/rewind.safetensors), unmasked, so a control's mask may keep
weights the ticket pruned. Each control lives in `level-L/control-<kind>/` beside the ticket. An IMP run
trains a level's controls together with its ticket as one vectorized model (`control_companion`, see
ticketlab.multitrain); `train_control` trains one on its own, with the same result.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ticketlab.config import derive_seed
from ticketlab.errors import TicketlabError
from ticketlab.files import read_safetensors
from ticketlab.lth.imp import INIT, TICKET, Companion, ImpSetup, retrain_config, rewind_iteration, ticket_provenance
from ticketlab.mask import Mask
from ticketlab.models import model_from_config
from ticketlab.multitrain import Member, train_together
from ticketlab.pai.ablations import random_global, shuffle_layerwise
from ticketlab.ticket import Ticket
from ticketlab.trainer import REWIND

CONTROL_KINDS = ("random-reinit", "random-reinit-sign", "shuffle-layerwise", "random-global")
MASK_CONTROLS = ("shuffle-layerwise", "random-global")  # change the mask, keep θ_k


def rewind_point(setup: ImpSetup, seed_dir: Path) -> dict[str, torch.Tensor]:
    """θ_k: level 0's rewind snapshot; with k = 0, θ₀ itself (the same weights) before level 0 has written it."""
    path = seed_dir / "level-0" / REWIND
    if not path.exists() and rewind_iteration(setup) == 0:
        path = seed_dir / "level-0" / INIT
    return read_safetensors(path)[0]


def trains_with_ticket(kind: str, setup: ImpSetup, level: int) -> bool:
    """Whether the control can train beside its ticket: everything it starts from exists before the ticket
    trains (at level 0 with k > 0, θ_k appears only during the ticket's training)."""
    return level > 0 or kind == "random-reinit" or rewind_iteration(setup) == 0


def control_mask_and_weights(kind: str, setup: ImpSetup, seed_dir: Path, level: int,
                             mask: Mask) -> tuple[Mask, dict[str, torch.Tensor]]:
    seed = derive_seed(setup.seed, f"control:{kind}:{level}")
    if kind in ("random-reinit", "random-reinit-sign"):
        fresh = model_from_config(setup.model_cfg, setup.data.input_shape, setup.data.num_classes, seed=seed)
        weights = {k: v.clone() for k, v in fresh.state_dict().items()}
        if kind == "random-reinit-sign":
            theta_k = rewind_point(setup, seed_dir)
            for name in mask.names():
                sign = torch.where(theta_k[name] < 0, -1.0, 1.0).to(weights[name].dtype)
                weights[name] = weights[name].abs() * sign
        return mask, weights
    if kind == "shuffle-layerwise":
        return shuffle_layerwise(mask, seed), rewind_point(setup, seed_dir)
    if kind == "random-global":
        return random_global(mask, seed), rewind_point(setup, seed_dir)
    raise TicketlabError(f"unknown control kind {kind!r}; known: {', '.join(CONTROL_KINDS)}")


def control_companion(kind: str, setup: ImpSetup, seed_dir: Path, level: int, mask: Mask) -> Companion:
    """One control of the level's mask as a training that can run beside the ticket's; finishing it writes its
    ticket file."""
    out_dir = seed_dir / f"level-{level}" / f"control-{kind}"
    control_mask, weights = control_mask_and_weights(kind, setup, seed_dir, level, mask)
    model = model_from_config(setup.model_cfg, setup.data.input_shape, setup.data.num_classes, seed=0)
    model.load_state_dict(weights)
    start_weights = {n: (v * control_mask[n] if n in control_mask.tensors else v).clone()
                     for n, v in model.state_dict().items()}

    def finish(summary: dict) -> None:
        if not (out_dir / TICKET).exists():
            Ticket(model.architecture, control_mask, start_weights, model.state_dict(),
                   ticket_provenance(setup, f"control:{kind}", level, summary)).save(out_dir / TICKET)

    member = Member(model, out_dir, derive_seed(setup.seed, "data"), control_mask, label=f"level {level} {kind}")
    return Companion(member, finish)


def train_control(kind: str, setup: ImpSetup, seed_dir: Path, level: int, mask: Mask) -> dict:
    """Train one control of the level's mask; returns its summary (stored; a rerun returns it at once)."""
    companion = control_companion(kind, setup, seed_dir, level, mask)
    summary, = train_together([companion.member], setup.data, setup.train_cfg if level == 0 else retrain_config(setup),
                              start_iteration=rewind_iteration(setup) if level > 0 else 0, quiet=setup.quiet)
    companion.finish(summary)
    return summary
