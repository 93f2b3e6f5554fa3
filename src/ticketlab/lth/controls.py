"""Controls that tell whether a ticket is special, each trained with the ticket's own recipe.

Every control starts at the ticket's rewind iteration k, with the same data order and schedule:
  random-reinit       same mask, fresh weights from the init distribution (own seed)
  random-reinit-sign  same mask, fresh magnitudes with the signs of θ_k
  shuffle-layerwise   each layer's mask permuted (same per-layer counts), weights θ_k
  random-global       a random mask with the same total count, weights θ_k
θ_k is the run's rewind point (level-0/rewind.safetensors), unmasked, so a control's mask may keep
weights the ticket pruned. Each control lives in `level-L/control-<kind>/` beside the ticket.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ticketlab.config import derive_seed
from ticketlab.errors import TicketlabError
from ticketlab.files import read_safetensors
from ticketlab.lth.imp import TICKET, ImpSetup, retrain_config, rewind_iteration, ticket_provenance
from ticketlab.mask import Mask
from ticketlab.models import model_from_config
from ticketlab.pai.ablations import random_global, shuffle_layerwise
from ticketlab.ticket import Ticket
from ticketlab.trainer import REWIND, train

CONTROL_KINDS = ("random-reinit", "random-reinit-sign", "shuffle-layerwise", "random-global")
MASK_CONTROLS = ("shuffle-layerwise", "random-global")  # change the mask, keep θ_k


def control_mask_and_weights(kind: str, setup: ImpSetup, seed_dir: Path, level: int,
                             mask: Mask) -> tuple[Mask, dict[str, torch.Tensor]]:
    theta_k = read_safetensors(seed_dir / "level-0" / REWIND)[0]
    seed = derive_seed(setup.seed, f"control:{kind}:{level}")
    if kind in ("random-reinit", "random-reinit-sign"):
        fresh = model_from_config(setup.model_cfg, setup.data.input_shape, setup.data.num_classes, seed=seed)
        weights = {k: v.clone() for k, v in fresh.state_dict().items()}
        if kind == "random-reinit-sign":
            for name in mask.names():
                sign = torch.where(theta_k[name] < 0, -1.0, 1.0).to(weights[name].dtype)
                weights[name] = weights[name].abs() * sign
        return mask, weights
    if kind == "shuffle-layerwise":
        return shuffle_layerwise(mask, seed), theta_k
    if kind == "random-global":
        return random_global(mask, seed), theta_k
    raise TicketlabError(f"unknown control kind {kind!r}; known: {', '.join(CONTROL_KINDS)}")


def train_control(kind: str, setup: ImpSetup, seed_dir: Path, level: int, mask: Mask) -> dict:
    """Train one control of the level's mask; returns its summary (stored; a rerun returns it at once)."""
    out_dir = seed_dir / f"level-{level}" / f"control-{kind}"
    control_mask, weights = control_mask_and_weights(kind, setup, seed_dir, level, mask)
    model = model_from_config(setup.model_cfg, setup.data.input_shape, setup.data.num_classes, seed=0)
    model.load_state_dict(weights)
    start_weights = {n: (v * control_mask[n] if n in control_mask.tensors else v).clone()
                     for n, v in model.state_dict().items()}
    summary = train(model, setup.data, setup.train_cfg if level == 0 else retrain_config(setup), out_dir=out_dir,
                    data_seed=derive_seed(setup.seed, "data"), mask=control_mask,
                    start_iteration=rewind_iteration(setup) if level > 0 else 0, quiet=setup.quiet,
                    label=f"level {level} {kind}")
    if not (out_dir / TICKET).exists():
        Ticket(model.architecture, control_mask, start_weights, model.state_dict(),
               ticket_provenance(setup, f"control:{kind}", level, summary)).save(out_dir / TICKET)
    return summary
