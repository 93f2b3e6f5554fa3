"""The claim file: everything a verifier needs except the key, as one JSON file.

    format, version, architecture        what model the claim is about
    ticket_id                            SHA-256 of the unsigned ticket's mask (the bits derive from it)
    timestamp, commitment                SHA-256(key ‖ ticket id ‖ timestamp), see keys.py
    bits, triggers, significance         n, m and the decision level (default 1e-6)
    unit, linear_group, liveness         the unit definition and the reading rule's constants
    carriers                             per carrier layer: kind, unit positions (bit order), total
                                         units, and the reference's alive units K and weights K_w
    reference                            the signed ticket's trained weights and biases of the layers
                                         alignment uses (the chain up to the last carrier, plus the
                                         layer after it unless that one is a conv net's large
                                         flattening layer), float16, zlib-compressed safetensors in
                                         base64, with its SHA-256; signature units are zeroed in it
                                         so that it does not reveal the bits
    signed_checksum                      the signed ticket file's checksum, to recognise it

Neither the key nor the bits are stored; the bits follow from the key and the ticket id only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from pathlib import Path

import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from ticketlab.errors import TicketlabError
from ticketlab.files import write_json

FORMAT = "ticketlab-ownership-claim"
VERSION = 1
DEFAULT_SIGNIFICANCE = 1e-6
MAX_TRIGGERS = 100_000  # trigger inputs in a claim (each one generated in memory at verification)


def pack_reference(tensors: dict[str, torch.Tensor]) -> tuple[str, str]:
    data = zlib.compress(safetensors_save({k: v.detach().cpu().to(torch.float16).contiguous() for k, v in tensors.items()}), 9)
    return base64.b64encode(data).decode("ascii"), hashlib.sha256(data).hexdigest()


def unpack_reference(claim: dict) -> dict[str, torch.Tensor]:
    try:
        data = base64.b64decode(claim["reference"]["data"])
        if hashlib.sha256(data).hexdigest() != claim["reference"]["sha256"]:
            raise ValueError("checksum")
        return {k: v.float() for k, v in safetensors_load(zlib.decompress(data)).items()}
    except (KeyError, ValueError, TypeError, zlib.error) as exc:
        raise TicketlabError(f"the claim's reference weights are damaged ({exc}); use the claim file `sign` wrote") from None


def write_claim(path: str | Path, claim: dict) -> None:
    write_json(path, claim)


def read_claim(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise TicketlabError(f"claim file {path} does not exist; give the .claim.json that `ticketlab sign` wrote")
    try:
        claim = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise TicketlabError(f"{path} is not JSON; give the .claim.json that `ticketlab sign` wrote") from None
    if not isinstance(claim, dict) or claim.get("format") != FORMAT:
        raise TicketlabError(f"{path} is not a ticketlab ownership claim; give the .claim.json that `ticketlab sign` wrote")
    if claim.get("version") != VERSION:
        raise TicketlabError(f"{path} is claim version {claim.get('version')}, this ticketlab reads version {VERSION}")
    problem = claim_problem(claim)
    if problem:
        raise TicketlabError(f"claim {path} is damaged: {problem}; use the .claim.json that `ticketlab sign` wrote")
    return claim


def _int(value, lowest: int = 0, highest: int | None = None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lowest and (highest is None or value <= highest)


def claim_problem(claim: dict) -> str | None:
    """What is wrong with a claim's fields (types and ranges of everything verification reads), or None."""
    arch = claim.get("architecture")
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str) or not isinstance(arch.get("input_shape"), list) \
            or not all(_int(d, 1) for d in arch["input_shape"]) or not _int(arch.get("num_classes"), 1):
        return "architecture must hold a name, an input_shape list and num_classes"
    tid = claim.get("ticket_id")
    if not isinstance(tid, str) or len(tid) != 64 or any(c not in "0123456789abcdef" for c in tid):
        return "ticket_id must be 64 hexadecimal digits"
    for name in ("timestamp", "commitment"):
        if not isinstance(claim.get(name), str):
            return f"{name} must be text"
    if not _int(claim.get("bits")):
        return "bits must be a whole number"
    if not _int(claim.get("triggers", 0), 0, MAX_TRIGGERS):
        return f"triggers must be a whole number from 0 to {MAX_TRIGGERS:,}"
    significance = claim.get("significance", DEFAULT_SIGNIFICANCE)
    if isinstance(significance, bool) or not isinstance(significance, (int, float)) or not 0 < significance < 1:
        return "significance must be a number in (0, 1)"
    carriers = claim.get("carriers")
    if not isinstance(carriers, list) or not all(
            isinstance(c, dict) and isinstance(c.get("layer"), str) and isinstance(c.get("kind"), str)
            and isinstance(c.get("positions"), list) and all(_int(p) for p in c["positions"])
            and _int(c.get("alive_units")) and _int(c.get("alive_weights")) for c in carriers):
        return "carriers must be a list of objects with layer, kind, positions, alive_units and alive_weights"
    reference = claim.get("reference")
    if not isinstance(reference, dict) or not isinstance(reference.get("data"), str) \
            or not isinstance(reference.get("sha256"), str):
        return "reference must hold data and sha256 text"
    return None
