"""Verification: does a suspect carry the signature of a (record, claim, key)? And disputes between two.

Before any test: the record and the claim must be of a known scheme, name the same architecture and
salt, the key must open the record's key commitment and the claim must hash to its claim commitment.
A claim or record that fails is not verified, whatever the suspect looks like. Then everything that
decides the test comes from the key and the record through scheme.py and signature.py: the
carriers (every layer of the structure that can carry bits), the n positions, the n bits, the
trigger set, and the decision level alpha. The claim supplies only what the reading needs from the
owner's model (the sketch for alignment and the K of each carrier), all of it bound by the
commitment and recomputed from the registered model in a dispute.

White-box. The suspect's weights are put in canonical form (canonical.py), aligned to the sketch
(align.py) and read (signature.py); with k of n readings equal to the bits, p = P(X ≥ k) for
X ~ Binomial(n, 1/2): the bits are HMAC output, independent of anything made without the key, and
neither the positions, the alignment (signature entries left out) nor the reading depend on them.
(The owner's other weights were trained together with the signature: a second-order dependence,
measured on independent tickets by benchmarks/ownership_robustness.py.)
Black-box. The suspect's labels on the key's m triggers: k correct, p = P(X ≥ k) for
X ~ Binomial(m, 1/C), exact since the labels are uniform and independent of the inputs.
Both: p summed exactly in log space (no underflow at p = 1e-300); verified iff the registration checks pass and
p ≤ alpha.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ticketlab.errors import TicketlabError
from ticketlab.ownership.align import align
from ticketlab.ownership.canonical import canonical
from ticketlab.ownership.claim import claim_commitment
from ticketlab.ownership.keys import key_commitment
from ticketlab.ownership.scheme import Scheme, scheme as scheme_of
from ticketlab.ownership.signature import layer_bits, positions_and_bits, read
from ticketlab.ownership.structure import Structure, structure_of
from ticketlab.ownership.triggers import FAMILIES, chance_level, family_of, make_triggers

NULL_AGREEMENT = 0.5
_STRUCTURES: dict[str, Structure] = {}


def binomial_p_value(k: int, n: int, p0: float) -> tuple[float, float]:
    """P(X ≥ k) for X ~ Binomial(n, p0), and its log10: the tail's terms summed in log space, exact for
    the scheme's few thousand trials (and without importing scipy.stats, a second of every start)."""
    if k <= 0:
        return 1.0, 0.0
    if k > n or p0 <= 0.0:
        return 0.0, -math.inf
    if p0 >= 1.0:
        return 1.0, 0.0
    log_p0, log_q0 = math.log(p0), math.log1p(-p0)
    terms = [math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * log_p0 + (n - j) * log_q0
             for j in range(k, n + 1)]
    top = max(terms)
    log_p = min(0.0, top + math.log(math.fsum(math.exp(t - top) for t in terms)))
    return math.exp(log_p), log_p / math.log(10)


def structure_for(architecture: dict) -> Structure:
    import json
    name = json.dumps(architecture, sort_keys=True)
    if name not in _STRUCTURES:
        _STRUCTURES[name] = structure_of(architecture)
    return _STRUCTURES[name]


def context(scheme: Scheme, salt: str, structure: Structure) -> bytes:
    """What every keyed derivation is bound to: scheme version, the record's salt, the structure."""
    return f"scheme={scheme.version};salt={salt};structure={structure.digest()}".encode()


def registration_checks(record: dict, claim: dict | None, key: bytes) -> dict:
    """Do record, claim and key belong together? Each check by name, and the scheme."""
    scheme = scheme_of(record["scheme"])
    checks = {"key": key_commitment(key, record["salt"]) == record["key_commitment"],
              "scheme_constants": (record["bits"], record["triggers"]) == (scheme.bits, scheme.triggers)
              and math.isclose(float(record["alpha"]), scheme.alpha, rel_tol=1e-9)}
    if claim is not None:
        checks.update(claim=claim_commitment(claim) == record["claim_commitment"],
                      claim_matches_record=claim.get("scheme") == record["scheme"]
                      and claim.get("architecture") == record["architecture"] and claim.get("salt") == record["salt"])
    return checks


def decide(checks: dict, k: int, n: int, p0: float, alpha: float) -> dict:
    p, log10_p = binomial_p_value(k, n, p0)
    registered = all(checks.values())
    failed = [name for name, ok in checks.items() if not ok]
    return {"verified": bool(registered and p <= alpha), "p_value": p, "log10_p_value": log10_p, "alpha": alpha,
            "significance": alpha, "registration_ok": registered, "commitment_ok": registered,
            "failed_checks": failed}


def derivation(record: dict, key: bytes) -> tuple[Scheme, Structure, bytes]:
    scheme = scheme_of(record["scheme"])
    structure = structure_for(record["architecture"])
    return scheme, structure, context(scheme, record["salt"], structure)


def read_signature(state: dict[str, torch.Tensor], record: dict, claim: dict, key: bytes) -> tuple[np.ndarray, np.ndarray, dict]:
    """(readings, bits, per carrier: (positions, agreeing)) of a suspect's weights; no decision."""
    scheme, structure, ctx = derivation(record, key)
    positions, bits, order = positions_and_bits(structure, scheme, key, ctx)
    form = canonical(state, structure, "the suspect")
    try:
        maps = align(form, structure, claim["sketch"], positions, key, ctx, scheme.sketch_bits)
    except (KeyError, ValueError) as exc:
        raise TicketlabError(f"the claim's sketch does not fit {structure.name} ({exc}); use the claim made for this model") from None
    missing = [structure.layers[i].path for i in positions if structure.layers[i].path not in claim["alive_blocks"]]
    if missing:
        raise TicketlabError(f"the claim gives no alive_blocks for {', '.join(missing)}; use the claim made for this model")
    readings = read(form, structure, maps, positions, order, claim["alive_blocks"], scheme.relative_threshold)
    per_layer: dict[str, list[int]] = {}
    for (layer, _), agrees in zip(order, (readings == bits).tolist()):
        entry = per_layer.setdefault(structure.layers[layer].path, [0, 0])
        entry[0] += 1
        entry[1] += int(agrees)
    return readings, bits, per_layer


def whitebox(state: dict[str, torch.Tensor], record: dict, claim: dict, key: bytes) -> dict:
    """Verify a suspect's weights (a state dict, possibly shrunk, BatchNorm folded or not) against a registration."""
    checks = registration_checks(record, claim, key)
    scheme = scheme_of(record["scheme"])
    readings, bits, per_layer = read_signature(state, record, claim, key)
    agree = int((readings == bits).sum())
    return {"mode": "white-box", "scheme": scheme.version, "agreeing_bits": agree, "bits": len(bits),
            "agreement": agree / len(bits), "p0": NULL_AGREEMENT,
            "agreeing_bits_per_carrier": {name: agreeing for name, (_, agreeing) in per_layer.items()},
            "bits_per_carrier": {name: count for name, (count, _) in per_layer.items()},
            **decide(checks, agree, len(bits), NULL_AGREEMENT, scheme.alpha)}


def trigger_set(record: dict, key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    scheme, structure, ctx = derivation(record, key)
    arch = record["architecture"]
    return make_triggers(key, ctx, scheme.triggers, arch["input_shape"], arch["num_classes"])


def blackbox(predict: Callable, record: dict, claim: dict | None, key: bytes, batch_size: int = 256) -> dict:
    """Verify a model seen only through `predict(batch) -> labels` (logits are taken by argmax)."""
    checks = registration_checks(record, claim, key)
    scheme = scheme_of(record["scheme"])
    x, y = trigger_set(record, key)
    predicted = []
    with torch.inference_mode():
        for start in range(0, len(y), batch_size):
            out = torch.as_tensor(np.asarray(predict(x[start:start + batch_size])))
            predicted.append(out.argmax(1) if out.ndim == 2 else out.reshape(-1))
    labels = torch.cat(predicted).long()
    if labels.shape != y.shape:
        raise TicketlabError(f"the suspect answered {labels.numel()} labels for {len(y)} trigger inputs; it must map a batch to one label per input")
    hits = labels == y
    correct = int(hits.sum())
    chance = chance_level(record["architecture"]["num_classes"])
    families = family_of(len(y))
    per_family = {name: float(hits[families == i].float().mean()) for i, name in enumerate(FAMILIES)}
    return {"mode": "black-box", "scheme": scheme.version, "trigger_accuracy": correct / len(y), "correct": correct,
            "triggers": len(y), "chance": chance, "trigger_accuracy_per_family": per_family,
            **decide(checks, correct, len(y), chance, scheme.alpha)}
