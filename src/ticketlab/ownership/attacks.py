"""The attack suite: what a thief or a dishonest claimant can do, with --strength per kind.

Against the model (each returns a Ticket whose trained weights are the attacked model):
  finetune         strength = epochs of further training (default 10) at the train options' --lr
                   (default: the ticket's recipe), fresh optimizer, a data order of its own; the mask
                   kept (--keep-mask) or removed (--no-keep-mask: every weight trains, dense result)
  prune-magnitude  strength = fraction of each layer's remaining weights removed, smallest |w| first
  prune-random     strength = fraction of each layer's remaining weights removed at random
  densify          strength = fraction of each layer's dead weights switched on, random signs,
                   magnitude --scale × the layer's median alive |w| (default 0.01)
  permute          strength = fraction of every site's hidden units shuffled (the same function)
  rescale          strength = c_max (default 1e4): every hidden unit multiplied by c, log-uniform in
                   [1/c_max, c_max] (rows and bias, or its BatchNorm's γ and β), its outgoing weights
                   by 1/c (the same function for ReLU networks)
  disguise         rescale (c_max = strength, default 1e4), a full permutation and densification of
                   every dead weight at 0.01 × the median: all the free transformations at once
  shrink           hidden units nothing reads or writes removed physically (deploy/shrink.py): a
                   smaller model with the same function (strength unused)
  reprune          strength = epochs (default 1): fine-tune with the mask removed, re-prune with SNIP
                   (|w·∂L/∂w| on 10 batches, global) to the ticket's density, fine-tune again as long
  distill          strength = epochs (default 10): the thief's own ticket — a fresh initialization
                   (seed of the attack) pruned with SNIP to the same density — trained on the
                   stolen model's predicted labels of the training inputs (no true labels)
  forge            the forger makes a key, signs and retrains the stolen ticket, registers it
Against the test (functions, used by tests and the benchmark; no files):
  forged_claims    a registration's claim and record with fields rewritten (hand-chosen positions,
                   an edited significance or bit count, another K, sketch, salt or architecture)
  best_of_keys     the best p-value among many random keys' bits against fixed readings (a key search)
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from ticketlab.config import TrainConfig
from ticketlab.data import batches_per_epoch
from ticketlab.deploy.shrink import shrink as physically_shrink
from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask
from ticketlab.models import model_from_architecture
from ticketlab.models.registry import prunable_names
from ticketlab.ownership.structure import analyse
from ticketlab.ownership.verification import binomial_p_value
from ticketlab.pruning import keep_top_k
from ticketlab.ticket import Ticket
from ticketlab.trainer import train

KINDS = ("finetune", "prune-magnitude", "prune-random", "densify", "permute", "rescale", "disguise", "shrink",
         "reprune", "distill", "forge")
DEFAULT_STRENGTH = {"finetune": 10.0, "prune-magnitude": 0.5, "prune-random": 0.5, "densify": 1.0, "permute": 1.0,
                    "rescale": 1e4, "disguise": 1e4, "shrink": None, "reprune": 1.0, "distill": 10.0, "forge": None}
DEFAULT_DENSIFY_SCALE = 0.01
MAX_FINETUNE_EPOCHS = 100_000
SNIP_BATCHES = 10


def check_strength(kind: str, strength: float | None) -> float | None:
    if kind not in KINDS:
        raise TicketlabError(f"unknown attack kind {kind!r}; known: {', '.join(KINDS)}")
    if strength is None or kind in ("shrink", "forge"):
        if strength is not None and not (isinstance(strength, (int, float)) and math.isfinite(strength)):
            raise TicketlabError(f"--strength must be a finite number, got {strength!r}")
        return DEFAULT_STRENGTH[kind] if strength is None or kind == "shrink" else strength
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
        raise TicketlabError(f"--strength must be a finite number, got {strength!r}")
    if kind in ("finetune", "reprune", "distill"):
        if not 0 < strength <= MAX_FINETUNE_EPOCHS:
            raise TicketlabError(f"--strength for {kind} is a number of epochs in (0, {MAX_FINETUNE_EPOCHS:,}], got {strength:g}")
    if kind in ("prune-magnitude", "prune-random") and not 0 < strength < 1:
        raise TicketlabError(f"--strength for {kind} is the fraction of remaining weights removed, in (0, 1); got {strength}")
    if kind in ("densify", "permute") and not 0 < strength <= 1:
        raise TicketlabError(f"--strength for {kind} is a fraction in (0, 1]; got {strength}")
    if kind in ("rescale", "disguise") and not 1 <= strength <= 1e30:
        raise TicketlabError(f"--strength for {kind} is the largest scale factor c_max, from 1 to 1e30; got {strength}")
    return strength


def weights_of(ticket: Ticket) -> dict[str, torch.Tensor]:
    state = ticket.trained_state if ticket.trained_state is not None else ticket.init_state
    return {k: (v * ticket.mask[k] if k in ticket.mask.tensors else v).clone() for k, v in state.items()}


def attacked(ticket: Ticket, mask: Mask, weights: dict, extra: dict, init_state: dict | None = None,
             architecture: dict | None = None) -> Ticket:
    init = init_state if init_state is not None else ticket.init_state
    init = {k: (v * mask[k] if k in mask.tensors else v).clone() for k, v in init.items()}
    provenance = ticket.provenance.replace()
    provenance.extra["attack"] = extra
    return Ticket(architecture or ticket.architecture, mask, init, weights, provenance)


# ---- transformations that keep the function ------------------------------------------------------

def transform_state(state: dict, structure, perms: dict, scales: dict) -> dict:
    """Apply per-site unit permutations {site: perm, new = old[perm]} and positive scales {site: c per
    new unit} to a state dict (weights, biases, BatchNorm entries): the same function in eval mode.
    A unit whose producer has a BatchNorm is scaled through the BatchNorm's γ and β."""
    out = {k: v.clone() for k, v in state.items()}
    for site in structure.sites:
        perm, c = perms.get(site.index), scales.get(site.index)
        for p in site.producers:
            layer = structure.layers[p]
            names = [n for n in (layer.weight, layer.bias) if n]
            if layer.norm:
                names += [f"{layer.norm}.{n}" for n in ("weight", "bias", "running_mean", "running_var")]
            if perm is not None:
                for n in names:
                    if n in out:
                        out[n] = out[n][perm]
            if c is not None:
                targets = [f"{layer.norm}.weight", f"{layer.norm}.bias"] if layer.norm else names
                for n in targets:
                    if n in out:
                        out[n] = out[n] * c.reshape(-1, *[1] * (out[n].dim() - 1)).to(out[n].dtype)
        for q in site.consumers:
            layer = structure.layers[q]
            weight = out[layer.weight]
            view = weight.reshape(weight.shape[0], site.units, -1)
            if perm is not None:
                view = view[:, perm]
            if c is not None:
                view = view / c.reshape(1, -1, 1).to(view.dtype)
            out[layer.weight] = view.reshape(weight.shape)
    return out


def _structure(ticket: Ticket):
    return analyse(model_from_architecture(ticket.architecture))


def random_permutations(structure, fraction: float, generator: torch.Generator) -> dict:
    perms = {}
    for site in structure.sites:
        perm = torch.arange(site.units)
        moved = torch.randperm(site.units, generator=generator)[:round(fraction * site.units)]
        perm[moved] = moved[torch.randperm(len(moved), generator=generator)]
        perms[site.index] = perm
    return perms


def random_scales(structure, c_max: float, generator: torch.Generator) -> dict:
    top = math.log(c_max)
    return {s.index: torch.exp((2 * torch.rand(s.units, generator=generator, dtype=torch.float64) - 1) * top)
            for s in structure.sites}


def _permuted_mask(mask: Mask, structure, perms: dict) -> Mask:
    moved = transform_state({k: v.float() for k, v in mask.tensors.items()}, structure, perms, {})
    return Mask({k: moved[k] > 0 for k in mask.tensors})


def permute(ticket: Ticket, fraction: float, generator: torch.Generator) -> Ticket:
    structure = _structure(ticket)
    perms = random_permutations(structure, fraction, generator)
    weights = transform_state(weights_of(ticket), structure, perms, {})
    init = transform_state(ticket.init_state, structure, perms, {})
    return attacked(ticket, _permuted_mask(ticket.mask, structure, perms), weights,
                    {"kind": "permute", "strength": fraction}, init_state=init)


def rescale(ticket: Ticket, c_max: float, generator: torch.Generator) -> Ticket:
    structure = _structure(ticket)
    scales = random_scales(structure, c_max, generator)
    weights = transform_state(weights_of(ticket), structure, {}, scales)
    return attacked(ticket, ticket.mask, weights, {"kind": "rescale", "strength": c_max})


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
        flat_w[chosen] = size * signs.to(flat_w.dtype)
        flat_m[chosen] = True
        weights[name], keep[name] = flat_w.reshape(m.shape), flat_m.reshape(m.shape)
    return attacked(ticket, Mask(keep), weights, {"kind": "densify", "strength": fraction, "scale": scale})


def disguise(ticket: Ticket, c_max: float, generator: torch.Generator) -> Ticket:
    """Densify every dead weight (0.01 × median), then permute every site fully and rescale every unit."""
    dense = densify(ticket, 1.0, DEFAULT_DENSIFY_SCALE, generator)
    structure = _structure(ticket)
    perms = random_permutations(structure, 1.0, generator)
    scales = random_scales(structure, c_max, generator)
    weights = transform_state(weights_of(dense), structure, perms, scales)
    init = transform_state(dense.init_state, structure, perms, {})
    return attacked(ticket, _permuted_mask(dense.mask, structure, perms), weights,
                    {"kind": "disguise", "strength": c_max}, init_state=init)


def shrink(ticket: Ticket) -> Ticket:
    model = model_from_architecture(ticket.architecture)
    model.load_state_dict(weights_of(ticket))
    small, mask = physically_shrink(model, ticket.mask)
    state = {k: v.detach().clone() for k, v in small.state_dict().items()}
    return attacked(ticket, mask, state, {"kind": "shrink"}, init_state=state, architecture=small.architecture)


# ---- attacks that train ---------------------------------------------------------------------------

def _steps(epochs: float, data, cfg: TrainConfig) -> int:
    return max(1, math.ceil(epochs * batches_per_epoch(len(data.train_y), cfg.batch_size)))


def _short_run(cfg: TrainConfig, steps: int) -> TrainConfig:
    return dataclasses.replace(cfg, steps=f"{steps}it", eval_every=f"{steps}it", milestones="", warmup="0it")


def finetune(ticket: Ticket, data, cfg: TrainConfig, epochs: float, keep_mask: bool, work_dir: Path,
             data_seed: int, quiet: bool) -> tuple[Ticket, dict]:
    """Further training of the trained weights; returns the attacked ticket and the training summary."""
    steps = _steps(epochs, data, cfg)
    model = model_from_architecture(ticket.architecture)
    model.load_state_dict(weights_of(ticket))
    mask = ticket.mask if keep_mask else Mask.ones(model)
    summary = train(model, data, _short_run(cfg, steps), out_dir=work_dir, data_seed=data_seed,
                    mask=mask if keep_mask else None, quiet=quiet, label=f"finetune {epochs:g} epochs")
    extra = {"kind": "finetune", "strength": epochs, "lr": cfg.lr, "keep_mask": keep_mask, "iterations": steps}
    return attacked(ticket, mask, {k: v.detach().clone() for k, v in model.state_dict().items()}, extra), summary


def snip_mask(model: torch.nn.Module, data, kept: int, batch_size: int, seed: int) -> Mask:
    """SNIP (Lee et al. 2019) at the model's current weights: keep the `kept` weights with the largest
    |w · ∂L/∂w| summed over SNIP_BATCHES batches, over all prunable tensors together."""
    names = list(prunable_names(model))
    params = dict(model.named_parameters())
    scores = {n: torch.zeros_like(params[n]) for n in names}
    generator = torch.Generator().manual_seed(seed)
    was = model.training
    model.train()
    for _ in range(SNIP_BATCHES):
        index = torch.randint(0, len(data.train_y), (batch_size,), generator=generator)
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(data.train_x[index]), data.train_y[index])
        loss.backward()
        for n in names:
            scores[n] += (params[n].grad * params[n]).abs().detach()
    model.zero_grad()
    model.train(was)
    every = Mask({n: torch.ones_like(scores[n], dtype=torch.bool) for n in names})
    return keep_top_k(scores, every, min(max(kept, 1), every.num_total()))


def reprune(ticket: Ticket, data, cfg: TrainConfig, epochs: float, work_dir: Path, data_seed: int,
            quiet: bool) -> tuple[Ticket, dict]:
    dense, _ = finetune(ticket, data, cfg, epochs, False, work_dir / "dense", data_seed, quiet)
    model = model_from_architecture(ticket.architecture)
    model.load_state_dict(weights_of(dense))
    mask = snip_mask(model, data, ticket.mask.num_kept(), cfg.batch_size, data_seed)
    mask.apply_(model)
    steps = _steps(epochs, data, cfg)
    summary = train(model, data, _short_run(cfg, steps), out_dir=work_dir / "sparse", data_seed=data_seed + 1,
                    mask=mask, quiet=quiet, label=f"reprune: finetune {epochs:g} epochs")
    extra = {"kind": "reprune", "strength": epochs, "lr": cfg.lr, "method": "snip"}
    return attacked(ticket, mask, {k: v.detach().clone() for k, v in model.state_dict().items()}, extra), summary


@torch.no_grad()
def _labels(model: torch.nn.Module, x: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[s:s + batch]).argmax(1) for s in range(0, len(x), batch)])


def distill(ticket: Ticket, data, cfg: TrainConfig, epochs: float, work_dir: Path, seed: int,
            quiet: bool) -> tuple[Ticket, dict]:
    teacher = model_from_architecture(ticket.architecture)
    teacher.load_state_dict(weights_of(ticket))
    student_data = copy.copy(data)
    student_data.train_y = _labels(teacher, data.train_x)
    student_data.val_y = _labels(teacher, data.val_x) if len(data.val_y) else data.val_y
    student = model_from_architecture(ticket.architecture, seed=seed)
    mask = snip_mask(student, student_data, ticket.mask.num_kept(), cfg.batch_size, seed)
    mask.apply_(student)
    steps = _steps(epochs, data, cfg)
    summary = train(student, student_data, _short_run(cfg, steps), out_dir=work_dir, data_seed=seed, mask=mask,
                    quiet=quiet, label=f"distill {epochs:g} epochs")
    extra = {"kind": "distill", "strength": epochs, "lr": cfg.lr, "mask": "snip", "init_seed": seed}
    init = model_from_architecture(ticket.architecture, seed=seed).state_dict()
    return attacked(ticket, mask, {k: v.detach().clone() for k, v in student.state_dict().items()}, extra,
                    init_state=init), summary


# ---- attacks on the test itself -----------------------------------------------------------------------

def forged_claims(record: dict, claim: dict, generator: np.random.Generator | None = None) -> list[tuple[str, dict, dict]]:
    """(what was changed, record, claim) for every rewrite of a claim or record field a dishonest
    claimant might try; none may verify anything the genuine registration does not."""
    generator = generator or np.random.default_rng(0)
    out = []

    def claim_with(what, **changes):
        out.append((what, record, {**claim, **changes}))

    def record_with(what, **changes):
        out.append((what, {**record, **changes}, claim))
    claim_with("hand-chosen positions added to the claim", positions=[[0, 0, 0]] * 8)
    claim_with("an edited significance in the claim", significance=0.99)
    claim_with("an edited bit count in the claim", bits=16)
    first = next(iter(claim["alive_blocks"]))
    claim_with("another K (alive blocks) for a carrier", alive_blocks={**claim["alive_blocks"], first: 1})
    sketch = [dict(e) for e in claim["sketch"]]
    raw = bytearray(__import__("base64").b64decode(sketch[0]["data"]))
    raw[:] = generator.integers(0, 256, len(raw), dtype=np.uint8).tobytes()
    sketch[0]["data"] = __import__("base64").b64encode(bytes(raw)).decode()
    claim_with("a rewritten alignment sketch", sketch=sketch)
    claim_with("another salt in the claim", salt="0" * 32)
    record_with("an edited alpha in the record", alpha=0.99)
    record_with("an edited bit count in the record", bits=16)
    record_with("another salt in the record", salt="0" * 32)
    record_with("another architecture in the record", architecture={**record["architecture"], "num_classes": 2})
    return out


def best_of_keys(readings: np.ndarray, keys: int, seed: int = 0, chunk: int = 1 << 16) -> dict:
    """A key search against fixed readings: the most agreeing of `keys` random bit strings (what any
    key's HMAC bits are to a suspect made without it), its count and its p-value; vectorised."""
    n = len(readings)
    target = np.packbits(readings.astype(np.uint8))
    table = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint16)
    rng = np.random.default_rng(seed)
    best = 0
    done = 0
    while done < keys:
        size = min(chunk, keys - done)
        draws = rng.integers(0, 256, (size, len(target)), dtype=np.uint8)
        if n % 8:
            draws[:, -1] &= np.uint8((0xFF << (8 - n % 8)) & 0xFF)
            masked = target.copy()
            masked[-1] &= np.uint8((0xFF << (8 - n % 8)) & 0xFF)
        else:
            masked = target
        disagree = table[np.bitwise_xor(draws, masked)].sum(axis=1)
        best = max(best, int(n - disagree.min()))
        done += size
    p, log10 = binomial_p_value(best, n, 0.5)
    return {"keys": keys, "bits": n, "best_agreeing_bits": best, "best_p_value": p, "best_log10_p_value": log10}
