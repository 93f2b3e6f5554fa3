"""Owner keys, ticket ids, the keyed signature bits and the commitment.

- A key file holds 32 bytes from `secrets` and nothing else, written atomically with mode 0600.
- The ticket id is SHA-256 over the ticket's mask (layer names, shapes and packed bits in model
  order), so a claim is bound to one topology and not to its weights.
- Signature bit i comes from HMAC-SHA256(key, "ticketlab-signature" ‖ ticket id ‖ counter), each
  counter block giving 256 bits; without the key nobody (a forger included) can predict them.
- Other key-derived randomness (where the bits go, the trigger set) uses the same construction
  with its own label, so it is independent of the bits and reproducible by the key holder alone.
- The commitment is SHA-256(key ‖ ticket id ‖ timestamp): published (or filed) before a dispute,
  it shows the owner held this key for this ticket at that time without revealing the key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from pathlib import Path

import numpy as np

from ticketlab.errors import TicketlabError
from ticketlab.files import write_bytes
from ticketlab.mask import Mask

KEY_BYTES = 32
SIGNATURE_LABEL = b"ticketlab-signature"


def generate_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def write_key(path: str | Path, key: bytes) -> None:
    path = Path(path)
    if path.exists():  # an owner's key is never overwritten by accident
        raise TicketlabError(f"{path} already exists; a key file is never overwritten, choose another --out")
    write_bytes(path, key, mode=0o600)


def read_key(path: str | Path) -> bytes:
    path = Path(path)
    if path.is_dir():
        raise TicketlabError(f"key file {path} is a folder; give the file `ticketlab keygen` wrote")
    if not path.is_file():
        raise TicketlabError(f"key file {path} does not exist; create one with `ticketlab keygen --out {path}`")
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise TicketlabError(f"{path} holds {len(key)} bytes, a ticketlab key holds {KEY_BYTES}; give a file written by `ticketlab keygen`")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:  # as ssh does for private keys: say so, and go on
        print(f"ticketlab: warning: key file {path} is accessible by others (mode {mode:04o}); "
              f"make it private with chmod 600 {path}", file=sys.stderr)
    return key


def key_fingerprint(key: bytes) -> str:
    """A short public name for a key (a hash: it reveals nothing about the key)."""
    return hashlib.sha256(b"ticketlab-key-fingerprint" + key).hexdigest()[:16]


def ticket_id(mask: Mask) -> str:
    digest = hashlib.sha256()
    for name, bits in mask.packed().items():
        digest.update(name.encode())
        digest.update(str(list(mask[name].shape)).encode())
        digest.update(bits.numpy().tobytes())
    return digest.hexdigest()


def keyed_bytes(key: bytes, label: bytes, tid: str, count: int) -> bytes:
    """`count` pseudo-random bytes: HMAC-SHA256(key, label ‖ ticket id ‖ counter) blocks, counter from 0."""
    blocks, counter = [], 0
    while 32 * len(blocks) < count:
        blocks.append(hmac.new(key, label + bytes.fromhex(tid) + counter.to_bytes(4, "big"), hashlib.sha256).digest())
        counter += 1
    return b"".join(blocks)[:count]


def signature_bits(key: bytes, tid: str, n: int) -> np.ndarray:
    """The owner's n signature bits for this ticket (bool array)."""
    raw = np.frombuffer(keyed_bytes(key, SIGNATURE_LABEL, tid, (n + 7) // 8), dtype=np.uint8)
    return np.unpackbits(raw)[:n].astype(bool)


def keyed_seed(key: bytes, label: str, tid: str) -> int:
    """A 63-bit seed for key-derived randomness other than the bits (placement, triggers)."""
    return int.from_bytes(keyed_bytes(key, b"ticketlab-" + label.encode(), tid, 8), "little") >> 1


def commitment(key: bytes, tid: str, timestamp: str) -> str:
    return hashlib.sha256(key + bytes.fromhex(tid) + timestamp.encode()).hexdigest()
