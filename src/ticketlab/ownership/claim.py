"""The two files of a signature: the public registration record and the private claim.

Registration record (published at release, `<name>.record.json`; small, no secret):
    format, scheme                 "ticketlab-ownership-record", the scheme version (scheme.py)
    architecture                   the model spec: the structure the test derives from
    salt                           16 random bytes chosen at signing (part of the derivation context)
    key_commitment                 SHA-256(label ‖ salt ‖ key)
    claim_commitment               SHA-256(label ‖ canonical JSON of the private claim)
    model                          the released file: kind, file_sha256 (its bytes), weights_sha256
                                   (its tensors, by name) — which model this record is about
    anchor, anchored_at            a user-supplied time anchor (a git commit, a transparency-log entry)
                                   and the time it attests; checked by people, compared in disputes
    bits, triggers, alpha          the scheme's constants, for readers; verification takes them from
                                   the scheme and refuses a record that states others

Private claim (kept by the owner with the key; revealed only in a dispute, `<name>.claim.json`):
    format, scheme, architecture, salt    as in the record
    alive_blocks                   per carrier layer, K: alive blocks of the signed layer
    sketch                         per part of every site, k sign bits of keyed projections (align.py)
    nonce                          16 random bytes (the commitment hides the claim's content)
Neither holds positions, bits, weights or a mask: what decides the test is derived from the key and
the record (signature.py). Every field of the claim is fixed by the record's claim_commitment, and
everything a verifier reads from it is recomputed from the registered model in a dispute.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import secrets
from pathlib import Path

from ticketlab.errors import TicketlabError
from ticketlab.files import write_json
from ticketlab.ownership.keys import PREFIX
from ticketlab.ownership.scheme import CURRENT

CLAIM_FORMAT = "ticketlab-ownership-claim"
RECORD_FORMAT = "ticketlab-ownership-record"
FORMAT = CLAIM_FORMAT
MAX_FILE_BYTES = 256 << 20
DEFAULT_SIGNIFICANCE = CURRENT.alpha  # the scheme's level; the command line's default for --significance


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def claim_commitment(claim: dict) -> str:
    return hashlib.sha256(PREFIX + b"claim\x00" + canonical_json(claim)).hexdigest()


def record_digest(record: dict) -> str:
    """What a time anchor must attest: SHA-256 of the record's canonical JSON (git commit it, or log it)."""
    return hashlib.sha256(PREFIX + b"record\x00" + canonical_json(record)).hexdigest()


def new_nonce() -> str:
    return secrets.token_hex(16)


def write_claim(path: str | Path, claim: dict) -> None:
    write_json(path, claim)


def write_record(path: str | Path, record: dict) -> None:
    write_json(path, record)


def _read_json(path: str | Path, what: str, writer: str) -> dict:
    path = Path(path)
    if path.is_dir():
        raise TicketlabError(f"{what} {path} is a folder; give the {writer}")
    if not path.is_file():
        raise TicketlabError(f"{what} {path} does not exist; give the {writer}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise TicketlabError(f"{what} {path} is larger than {MAX_FILE_BYTES >> 20} MiB; give the {writer}")
    try:
        value = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError):
        raise TicketlabError(f"{path} is not JSON; give the {writer}") from None
    if not isinstance(value, dict):
        raise TicketlabError(f"{path} is not a ticketlab {what}; give the {writer}")
    return value


def _refuse_constant(name):
    raise ValueError(name)


def read_claim(path: str | Path) -> dict:
    path = Path(path)
    claim = _read_json(path, "claim file", ".claim.json that `ticketlab sign` wrote")
    if claim.get("format") != CLAIM_FORMAT:
        raise TicketlabError(f"{path} is not a ticketlab ownership claim; give the .claim.json that `ticketlab sign` wrote")
    if claim.get("version") == 1 and "scheme" not in claim:
        legacy = _legacy_problem(claim)
        if legacy:
            raise TicketlabError(f"claim {path} is damaged: {legacy}; use the .claim.json that `ticketlab sign` wrote")
        raise TicketlabError(f"{path} is a version 1 claim, which is no longer accepted: its test trusted the positions "
                             "and significance written in the claim; sign and register the ticket again")
    problem = claim_problem(claim)
    if problem:
        raise TicketlabError(f"claim {path} is damaged: {problem}; use the .claim.json that `ticketlab sign` wrote")
    return claim


def read_record(path: str | Path) -> dict:
    path = Path(path)
    record = _read_json(path, "record", ".record.json that `ticketlab sign` or `ticketlab register` wrote")
    if record.get("format") != RECORD_FORMAT:
        raise TicketlabError(f"{path} is not a ticketlab registration record; give the .record.json that "
                             "`ticketlab sign` or `ticketlab register` wrote")
    problem = record_problem(record)
    if problem:
        raise TicketlabError(f"record {path} is damaged: {problem}")
    return record


def _int(value, lowest: int = 0, highest: int | None = None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lowest and (highest is None or value <= highest)


def _hex(value, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and all(c in "0123456789abcdef" for c in value)


def _architecture_problem(arch) -> str | None:
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str) or not isinstance(arch.get("input_shape"), list) \
            or not all(_int(d, 1) for d in arch["input_shape"]) or not _int(arch.get("num_classes"), 1):
        return "architecture must hold a name, an input_shape list and num_classes"
    return None


def claim_problem(claim: dict) -> str | None:
    """What is wrong with a claim's fields (types and ranges of everything verification reads), or None."""
    if not _int(claim.get("scheme"), 1):
        return "scheme must be a whole number"
    problem = _architecture_problem(claim.get("architecture"))
    if problem:
        return problem
    if not _hex(claim.get("salt"), 32):
        return "salt must be 32 hexadecimal digits"
    if not isinstance(claim.get("nonce"), str):
        return "nonce must be text"
    alive = claim.get("alive_blocks")
    if not isinstance(alive, dict) or not all(isinstance(k, str) and _int(v) for k, v in alive.items()):
        return "alive_blocks must map layer names to whole numbers"
    sketch = claim.get("sketch")
    if not isinstance(sketch, list) or not all(
            isinstance(e, dict) and _int(e.get("site")) and isinstance(e.get("layer"), str)
            and e.get("side") in ("rows", "cols") and _int(e.get("units"), 1, 1 << 24) and _int(e.get("bits"), 1, 4096)
            and isinstance(e.get("data"), str) for e in sketch):
        return "sketch must be a list of objects with site, layer, side, units, bits and data"
    for entry in sketch:
        try:
            size = len(base64.b64decode(entry["data"], validate=True))
        except (binascii.Error, ValueError):
            return f"the sketch of {entry['layer']} is not base64"
        if size != entry["units"] * ((entry["bits"] + 7) // 8):
            return f"the sketch of {entry['layer']} holds {size} bytes, not {entry['units']} units of {entry['bits']} bits"
    return None


def record_problem(record: dict) -> str | None:
    if not _int(record.get("scheme"), 1):
        return "scheme must be a whole number"
    problem = _architecture_problem(record.get("architecture"))
    if problem:
        return problem
    if not _hex(record.get("salt"), 32):
        return "salt must be 32 hexadecimal digits"
    for name in ("key_commitment", "claim_commitment"):
        if not _hex(record.get(name), 64):
            return f"{name} must be 64 hexadecimal digits"
    model = record.get("model")
    if not isinstance(model, dict) or not _hex(model.get("file_sha256"), 64) or not _hex(model.get("weights_sha256"), 64):
        return "model must hold file_sha256 and weights_sha256 (64 hexadecimal digits each)"
    if not isinstance(record.get("anchor"), str) or not isinstance(record.get("anchored_at"), str):
        return "anchor and anchored_at must be text"
    for name in ("bits", "triggers"):
        if not _int(record.get(name)):
            return f"{name} must be a whole number"
    alpha = record.get("alpha")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        return "alpha must be a number"
    return None


def _legacy_problem(claim: dict) -> str | None:
    """Field checks of a version 1 claim, so that a damaged one says what is wrong with it."""
    problem = _architecture_problem(claim.get("architecture"))
    if problem:
        return problem
    tid = claim.get("ticket_id")
    if not _hex(tid, 64):
        return "ticket_id must be 64 hexadecimal digits"
    if not _int(claim.get("bits")):
        return "bits must be a whole number"
    if not _int(claim.get("triggers", 0), 0, 100_000):
        return "triggers must be a whole number from 0 to 100,000"
    carriers = claim.get("carriers")
    if not isinstance(carriers, list) or not all(isinstance(c, dict) and isinstance(c.get("layer"), str) for c in carriers):
        return "carriers must be a list of objects with layer, kind, positions, alive_units and alive_weights"
    return None
