"""The attack suite: what a thief can do to a stolen signed ticket, with --strength per kind.

  finetune         strength = epochs of further training (default 10) at the train options' --lr
                   (default: the ticket's recipe), from the trained weights with a fresh optimizer and
                   a data order of its own; with the mask fixed (--keep-mask) or removed
                   (--no-keep-mask: every weight trains, the result is dense)
  prune-magnitude  strength = fraction of each layer's remaining weights removed, smallest |w| first
  prune-random     strength = fraction of each layer's remaining weights removed at random
  densify          strength = fraction of each layer's dead weights switched on, with random signs and
                   magnitude --scale × the layer's median alive |w| (default 0.01: small enough to
                   change little, far above the reader's 1e-3 threshold)
  permute          strength = fraction of each hidden layer's units shuffled among themselves (1 =
                   a full random permutation), the next layer's inputs permuted to match: the same
                   function in another order
  forge            strength = bits of the forger's own signature (default: as many as the carriers
                   allow); the forger makes a new key and signs and retrains the stolen ticket with it
Every attack returns a Ticket whose trained weights are the attacked model (θ_k kept, masked).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from ticketlab.config import TrainConfig
from ticketlab.data import batches_per_epoch
from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask
from ticketlab.models import model_from_architecture
from ticketlab.ownership.chain import layer_chain, permute_state
from ticketlab.ticket import Ticket
from ticketlab.trainer import train

KINDS = ("finetune", "prune-magnitude", "prune-random", "densify", "permute", "forge")
DEFAULT_STRENGTH = {"finetune": 10.0, "prune-magnitude": 0.5, "prune-random": 0.5, "densify": 1.0,
                    "permute": 1.0, "forge": None}
DEFAULT_DENSIFY_SCALE = 0.01
MAX_FINETUNE_EPOCHS = 100_000


def check_strength(kind: str, strength: float | None) -> float | None:
    if kind not in KINDS:
        raise TicketlabError(f"unknown attack kind {kind!r}; known: {', '.join(KINDS)}")
    if strength is None:
        return DEFAULT_STRENGTH[kind]
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
        raise TicketlabError(f"--strength must be a finite number, got {strength!r}")
    if kind == "finetune" and strength > MAX_FINETUNE_EPOCHS:
        raise TicketlabError(f"--strength for finetune is at most {MAX_FINETUNE_EPOCHS:,} epochs, got {strength:g}")
    if kind == "finetune" and not strength > 0:
        raise TicketlabError(f"--strength for finetune is a number of epochs > 0, got {strength}")
    if kind in ("prune-magnitude", "prune-random") and not 0 < strength < 1:
        raise TicketlabError(f"--strength for {kind} is the fraction of remaining weights removed, in (0, 1); got {strength}")
    if kind in ("densify", "permute") and not 0 < strength <= 1:
        raise TicketlabError(f"--strength for {kind} is a fraction in (0, 1]; got {strength}")
    if kind == "forge" and (strength != int(strength) or strength < 1):
        raise TicketlabError(f"--strength for forge is the forger's number of bits, a positive integer; got {strength}")
    return strength


def weights_of(ticket: Ticket) -> dict[str, torch.Tensor]:
    state = ticket.trained_state if ticket.trained_state is not None else ticket.init_state
    return {k: (v * ticket.mask[k] if k in ticket.mask.tensors else v).clone() for k, v in state.items()}


def attacked(ticket: Ticket, mask: Mask, weights: dict, extra: dict, init_state: dict | None = None) -> Ticket:
    init = init_state if init_state is not None else ticket.init_state
    init = {k: (v * mask[k] if k in mask.tensors else v).clone() for k, v in init.items()}
    return Ticket(ticket.architecture, mask, init, weights, {**ticket.info, "attack": extra})


def prune(ticket: Ticket, fraction: float, how: str, generator: torch.Generator) -> Ticket:
    weights, keep = weights_of(ticket), {}
    for name, m in ticket.mask.tensors.items():
        alive = torch.nonzero(m.reshape(-1)).reshape(-1)
        remove = round(fraction * len(alive))
        if how == "magnitude":
            order = torch.argsort(weights[name].reshape(-1)[alive].abs(), stable=True)
        else:
            order = torch.randperm(len(alive), generator=generator)
        flat = m.reshape(-1).clone()
        flat[alive[order[:remove]]] = False
        keep[name] = flat.reshape(m.shape)
        weights[name] = weights[name] * keep[name]
    return attacked(ticket, Mask(keep), weights, {"kind": f"prune-{how}", "strength": fraction})


def densify(ticket: Ticket, fraction: float, scale: float, generator: torch.Generator) -> Ticket:
    weights, keep = weights_of(ticket), {}
    for name, m in ticket.mask.tensors.items():
        dead = torch.nonzero(~m.reshape(-1)).reshape(-1)
        chosen = dead[torch.randperm(len(dead), generator=generator)[:round(fraction * len(dead))]]
        alive = weights[name][m].abs()
        size = scale * float(alive.median()) if alive.numel() else 0.0
        signs = torch.randint(0, 2, (len(chosen),), generator=generator).float() * 2 - 1
        flat_w, flat_m = weights[name].reshape(-1).clone(), m.reshape(-1).clone()
        flat_w[chosen] = size * signs
        flat_m[chosen] = True
        weights[name], keep[name] = flat_w.reshape(m.shape), flat_m.reshape(m.shape)
    return attacked(ticket, Mask(keep), weights, {"kind": "densify", "strength": fraction, "scale": scale})


def permute(ticket: Ticket, fraction: float, generator: torch.Generator) -> Ticket:
    chain = layer_chain(model_from_architecture(ticket.architecture))
    perms = {}
    for i, layer in enumerate(chain[:-1]):
        perm = torch.arange(layer.units)
        moved = torch.randperm(layer.units, generator=generator)[:round(fraction * layer.units)]
        perm[moved] = moved[torch.randperm(len(moved), generator=generator)]
        perms[i] = perm
    mask = Mask(permute_state(ticket.mask.tensors, chain, perms))
    weights = permute_state(weights_of(ticket), chain, perms)
    init = permute_state(ticket.init_state, chain, perms)
    return attacked(ticket, mask, weights, {"kind": "permute", "strength": fraction}, init_state=init)


def finetune(ticket: Ticket, data, cfg: TrainConfig, epochs: float, keep_mask: bool, work_dir: Path,
             data_seed: int, quiet: bool) -> tuple[Ticket, dict]:
    """Further training of the trained weights; returns the attacked ticket and the training summary."""
    steps = max(1, math.ceil(epochs * batches_per_epoch(len(data.train_y), cfg.batch_size)))
    run = dataclasses.replace(cfg, steps=f"{steps}it", eval_every=f"{steps}it", milestones="", warmup="0it")
    model = model_from_architecture(ticket.architecture)
    model.load_state_dict(weights_of(ticket))
    mask = ticket.mask if keep_mask else Mask.ones(model)
    summary = train(model, data, run, out_dir=work_dir, data_seed=data_seed, mask=mask if keep_mask else None,
                    quiet=quiet, label=f"finetune {epochs:g} epochs")
    extra = {"kind": "finetune", "strength": epochs, "lr": cfg.lr, "keep_mask": keep_mask, "iterations": steps}
    return attacked(ticket, mask, {k: v.detach().clone() for k, v in model.state_dict().items()}, extra), summary
