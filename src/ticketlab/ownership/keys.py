"""Owner keys, the keyed derivations of the test, and commitments.

- A key file holds 32 bytes from `secrets` and nothing else, written atomically with mode 0600.
- Everything the test uses (where the bits go, the bits, the trigger set, the sketch projections)
  is derived with HMAC-SHA256 keyed by the owner's key, over a label naming what is derived and a
  context fixed by the registration (scheme version, the record's salt, the model's structure): a
  pseudo-random function that nobody without the key can predict, and that the key holder cannot
  steer except by changing the key or the salt, both fixed in the published record.
- A commitment to the key is SHA-256(label ‖ salt ‖ key): published in the record, it binds the
  owner to one key without revealing it; the key is revealed only in a dispute.
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

KEY_BYTES = 32
SALT_BYTES = 16
PREFIX = b"ticketlab-ownership/"


def generate_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def generate_salt() -> str:
    return secrets.token_hex(SALT_BYTES)


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


def key_commitment(key: bytes, salt: str) -> str:
    return hashlib.sha256(PREFIX + b"key\x00" + bytes.fromhex(salt) + key).hexdigest()


def prf(key: bytes, label: str, context: bytes, count: int) -> bytes:
    """`count` pseudo-random bytes: HMAC-SHA256(key, prefix ‖ label ‖ 0 ‖ context ‖ counter) blocks."""
    head = PREFIX + label.encode() + b"\x00" + context
    blocks, counter = [], 0
    while 32 * len(blocks) < count:
        blocks.append(hmac.new(key, head + counter.to_bytes(8, "big"), hashlib.sha256).digest())
        counter += 1
    return b"".join(blocks)[:count]


def prf_bits(key: bytes, label: str, context: bytes, n: int) -> np.ndarray:
    raw = np.frombuffer(prf(key, label, context, (n + 7) // 8), dtype=np.uint8)
    return np.unpackbits(raw)[:n].astype(bool)


def prf_seed(key: bytes, label: str, context: bytes) -> int:
    """A 63-bit seed for a torch generator (trigger inputs, sketch projections)."""
    return int.from_bytes(prf(key, label, context, 8), "little") >> 1


def prf_sample(key: bytes, label: str, context: bytes, population: int, count: int) -> np.ndarray:
    """`count` distinct integers in [0, population), uniformly at random, in draw order: 64-bit words
    of the PRF stream, rejected above the largest multiple of `population` (no modulo bias), repeats
    skipped. A fixed procedure that depends on nothing but its arguments."""
    if count > population:
        raise ValueError("more draws than the population")
    limit = (2 ** 64 // population) * population
    chosen, seen, offset = [], set(), 0
    while len(chosen) < count:
        need = 2 * (count - len(chosen)) + 16
        words = np.frombuffer(prf(key, label + f"/{offset}", context, 8 * need), dtype="<u8")
        offset += 1
        for word in words.tolist():
            if word >= limit:
                continue
            value = word % population
            if value not in seen:
                seen.add(value)
                chosen.append(value)
                if len(chosen) == count:
                    break
    return np.asarray(chosen, dtype=np.int64)
