"""Ownership of a ticket: a registered, keyed signature that a dishonest party cannot game (docs/ownership.md).

    scheme.py     the constants of the test, fixed by a version number (n bits, m triggers, alpha)
    keys.py       key files, the keyed derivations (HMAC-SHA256), commitments
    structure.py  hidden units of any traceable model: sites, layers, carriers (torch.fx)
    canonical.py  loading a suspect (ticket, safetensors, .pt, ONNX) and its canonical form
                  (BatchNorm folded, dead units zeroed, rescaling balanced)
    align.py      keyed sketches of units and alignment by linear assignment
    signature.py  positions and bits from the key, embedding, the floors, reading
    triggers.py   the key-derived trigger set and its batch mixer
    claim.py      the public registration record and the private claim
    verification.py  registration checks, white-box and black-box tests
    attacks.py    what a thief or a dishonest claimant can do
    jobs.py       keygen, sign, register, verify, dispute, attack: files to files

Python API (lazy imports, so that building the command line does not import scipy):
"""

from __future__ import annotations

from pathlib import Path


def keygen(out: str | Path) -> dict:
    """Write a new secret key file (32 random bytes, mode 0600); returns its path and fingerprint."""
    from ticketlab.ownership.jobs import keygen_job
    return keygen_job(out)


def sign(ticket: str | Path, key: str | Path, out: str | Path, *, anchor: str = "", anchored_at: str | None = None,
         overrides: dict | None = None, data_root: str | None = None, quiet: bool = True) -> dict:
    """Sign and retrain a ticket file; writes OUT, OUT.claim.json (private) and OUT.record.json (publish it)."""
    from ticketlab.ownership.jobs import sign_job
    return sign_job(ticket, key, out, overrides=overrides, data_root=data_root, quiet=quiet, anchor=anchor,
                    anchored_at=anchored_at)


def register(model: str | Path, claim: str | Path, key: str | Path, out: str | Path | None = None, *,
             anchor: str = "", anchored_at: str | None = None) -> dict:
    """Write the registration record of a released file (ticket, safetensors, .pt or ONNX) of a signed model."""
    from ticketlab.ownership.jobs import register_job
    return register_job(model, claim, key, out, anchor=anchor, anchored_at=anchored_at)


def verify(suspect: str | Path, key: str | Path, claim: str | Path | None = None, *, record: str | Path | None = None,
           blackbox: bool = False, registered: str | Path | None = None) -> dict:
    """Test whether a suspect file carries the signature of (record, claim, key); result["verified"] is the verdict."""
    from ticketlab.ownership.jobs import verify_job
    return verify_job(suspect, key, claim, blackbox, record_path=record, registered=registered)


def attack(signed: str | Path, kind: str, out: str | Path, *, strength: float | None = None, seed: int = 0,
           output_format: str = "ticket", **options) -> dict:
    """Attack a signed ticket (kinds: ownership.attacks.KINDS) and write what a thief would publish."""
    from ticketlab.ownership.jobs import attack_job
    return attack_job(signed, kind, strength, out, seed=seed, output_format=output_format, **options)


def dispute(a: dict, b: dict) -> dict:
    """Decide between two parties, each {"model", "record", "claim", "key"} file paths; result["owner"] is "a", "b" or None."""
    from ticketlab.ownership.jobs import dispute_job
    return dispute_job(a["model"], a["record"], a["claim"], a["key"], b["model"], b["record"], b["claim"], b["key"])


def whitebox(state, record: dict, claim: dict, key: bytes) -> dict:
    """Verify a state dict in memory against a record and claim (dicts) and a key (bytes)."""
    from ticketlab.ownership.jobs import whitebox as run
    return run(state, record, claim, key)


def blackbox(predict, record: dict, claim: dict | None, key: bytes) -> dict:
    """Verify any callable mapping a batch to labels against a record (and claim) and a key (bytes)."""
    from ticketlab.ownership.jobs import blackbox as run
    return run(predict, record, claim, key)


__all__ = ["attack", "blackbox", "dispute", "keygen", "register", "sign", "verify", "whitebox"]
