"""Ownership of a ticket: keyed mask signatures, trigger sets, a sound verification test, attacks.

    keys.py       key files, ticket ids, HMAC signature bits, commitments
    chain.py      the supported models as a chain of layers; permutations of hidden units
    signature.py  units, carriers, bit placement, embedding with per-layer rebalancing, reading
    align.py      matching a suspect's units to the claim's reference (linear_sum_assignment)
    triggers.py   the key-derived out-of-distribution trigger set and its batch mixer
    claim.py      the claim file (no key, no bits)
    verify.py     binomial tests and decisions, white-box and black-box
    attacks.py    fine-tuning, further pruning, densification, permutation, forging
    jobs.py       what `keygen`, `sign`, `verify` and `attack` do

Python API: `blackbox(predict, claim, key)` verifies any callable mapping a batch to labels,
`whitebox(state_dict, claim, key)` a model's weights (claim from claim.read_claim, key bytes from
keys.read_key). They load lazily, so that building the CLI does not import scipy.
"""

_EXPORTS = {"blackbox": "verify", "whitebox": "verify", "read_signature": "verify", "signature_bits": "keys",
            "ticket_id": "keys"}
__all__ = ["blackbox", "read_signature", "signature_bits", "ticket_id", "whitebox"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
