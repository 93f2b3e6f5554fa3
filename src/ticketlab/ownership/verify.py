"""Verification: binomial tests and decisions, white-box (weights) and black-box (labels only).

White-box. The suspect's weights (a ticket's trained weights with its mask applied, or a plain
state_dict) are aligned to the claim's reference (align.py), each claimed unit is read alive or
dead from weight magnitudes (signature.read_units), and the k of n units that agree with the
owner's bits give the one-sided p-value P(X ≥ k) for X ~ Binomial(n, p0) with p0 = 1/2: the bits
are HMAC outputs independent of anything a suspect made without the key, and neither the positions
nor the reading depend on them (the reference used for alignment has the signature units blanked),
so each bit agrees by chance with probability 1/2 whatever the suspect's mask looks like. Strictly,
the reference's other weights were retrained together with the signature, a second-order dependence
on the bits; benchmarks/ownership_robustness.py measures the null on independent tickets.
Black-box. The suspect's predicted labels on the key's trigger set: k correct of m, chance = the
frequency of the most common trigger label (a model answering one label everywhere scores it), and
the p-value P(X ≥ k) for X ~ Binomial(m, chance).
Both: p-values are computed in log space (scipy.stats.binom.logsf) so that tiny values stay exact;
the claim is verified iff the key matches the claim's commitment and p ≤ the significance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from scipy.stats import binom

from ticketlab.errors import TicketlabError
from ticketlab.models import model_from_architecture
from ticketlab.ownership.align import align
from ticketlab.ownership.chain import layer_chain, layer_index, permute_state
from ticketlab.ownership.claim import unpack_reference
from ticketlab.ownership.keys import commitment, signature_bits
from ticketlab.ownership.signature import read_units, unit_entries
from ticketlab.ownership.triggers import chance_level, make_triggers

NULL_AGREEMENT = 0.5


def binomial_p_value(k: int, n: int, p0: float) -> tuple[float, float]:
    """P(X ≥ k) for X ~ Binomial(n, p0), and its log10."""
    log_p = float(binom.logsf(k - 1, n, p0)) if k > 0 else 0.0
    return math.exp(log_p), log_p / math.log(10)


def decide(claim: dict, key: bytes, k: int, n: int, p0: float) -> dict:
    p, log10_p = binomial_p_value(k, n, p0)
    committed = commitment(key, claim["ticket_id"], claim["timestamp"]) == claim["commitment"]
    significance = float(claim.get("significance", 1e-6))
    return {"verified": bool(committed and p <= significance), "p_value": p, "log10_p_value": log10_p,
            "significance": significance, "commitment_ok": committed}


def _check_state(state: dict, model, what: str) -> None:
    expected = model.state_dict()
    for name, value in expected.items():
        if name not in state or tuple(state[name].shape) != tuple(value.shape):
            raise TicketlabError(f"{what} does not fit the claim's model {model.architecture['name']} "
                                 f"({name} missing or of another shape); give the claim made for this ticket")


def read_signature(state: dict[str, torch.Tensor], claim: dict) -> tuple[np.ndarray, dict[str, int]]:
    """The suspect's reading (alive or dead) of every claimed unit, in bit order, and the count per
    carrier; needs no key."""
    model = model_from_architecture(claim["architecture"])
    _check_state(state, model, "the suspect")
    chain = layer_chain(model)
    reference = unpack_reference(claim)
    usable = {name: torch.ones_like(t, dtype=torch.bool) for name, t in reference.items()}
    carriers = [(layer_index(chain, c["layer"]), c) for c in claim["carriers"]]
    for i, c in carriers:
        layer = chain[i]
        usable[layer.weight] &= ~unit_entries(tuple(usable[layer.weight].shape), layer.kind, torch.tensor(c["positions"]))
    state = {k: v.detach().float().cpu() for k, v in state.items()}
    aligned = permute_state(state, chain, align(state, reference, usable, chain))
    readings, counts = [], {}
    for i, c in carriers:
        layer = chain[i]
        alive = read_units(aligned[layer.weight], layer.kind, int(c["alive_units"]), int(c["alive_weights"]))
        readings.append(alive[torch.tensor(c["positions"], dtype=torch.long)].numpy())
        counts[layer.weight] = len(c["positions"])
    return np.concatenate(readings), counts


def whitebox(state: dict[str, torch.Tensor], claim: dict, key: bytes) -> dict:
    """Verify a suspect's weights (state_dict of the claim's architecture) against the claim."""
    readings, counts = read_signature(state, claim)
    bits = signature_bits(key, claim["ticket_id"], int(claim["bits"]))
    if len(readings) != len(bits):
        raise TicketlabError("the claim lists a different number of positions than bits; the claim file is damaged")
    agrees = readings == bits
    per_carrier, offset = {}, 0
    for name, count in counts.items():
        per_carrier[name] = int(agrees[offset:offset + count].sum())
        offset += count
    agree = int(agrees.sum())
    return {"mode": "white-box", "agreeing_bits": agree, "bits": len(bits), "agreement": agree / len(bits),
            "p0": NULL_AGREEMENT, "agreeing_bits_per_carrier": per_carrier,
            **decide(claim, key, agree, len(bits), NULL_AGREEMENT)}


def blackbox(predict: Callable, claim: dict, key: bytes, batch_size: int = 256) -> dict:
    """Verify a model seen only through `predict(batch) -> labels` (logits are taken by argmax)."""
    arch = claim["architecture"]
    x, y = make_triggers(key, claim["ticket_id"], int(claim["triggers"]), arch["input_shape"], arch["num_classes"])
    predicted = []
    with torch.inference_mode():
        for start in range(0, len(y), batch_size):
            out = torch.as_tensor(np.asarray(predict(x[start:start + batch_size])))
            predicted.append(out.argmax(1) if out.ndim == 2 else out.reshape(-1))
    labels = torch.cat(predicted).long()
    if labels.shape != y.shape:
        raise TicketlabError(f"the suspect answered {labels.numel()} labels for {len(y)} trigger inputs; it must map a batch to one label per input")
    correct = int((labels == y).sum())
    chance = chance_level(y)
    return {"mode": "black-box", "trigger_accuracy": correct / len(y), "correct": correct, "triggers": len(y),
            "chance": chance, **decide(claim, key, correct, len(y), chance)}


def suspect_state(path: str | Path, claim: dict) -> dict[str, torch.Tensor]:
    """The weights a suspect file computes with: a ticket (trained weights, mask applied), a compact
    export, or a plain safetensors state_dict of the claim's architecture."""
    from ticketlab.deploy.compact import is_compact
    from ticketlab.deploy.export import DENSE_KEY, load_exported
    path = Path(path)
    if not path.is_file():
        raise TicketlabError(f"suspect {path} does not exist; give a ticket file or a safetensors state_dict")
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        raise TicketlabError(f"{path} is not a safetensors file; give a ticket file or a safetensors state_dict "
                             "(other formats can be verified with --blackbox)") from None
    if "ticketlab" in metadata or DENSE_KEY in metadata or is_compact(metadata):
        loaded = load_exported(path)
        if getattr(loaded.module, "architecture", None) != claim["architecture"]:
            raise TicketlabError(f"{path} is not a {claim['architecture']['name']} of the claim's shape; give the claim made "
                                 "for this ticket (a shrunk export cannot be verified white-box: verify it with --blackbox)")
        return {k: v.detach() for k, v in loaded.module.state_dict().items()}
    return load_file(str(path))
