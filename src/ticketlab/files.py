"""Atomic file writes: a temp file in the same folder, flushed, then renamed over the target.

An interrupted run therefore never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_bytes

from ticketlab import distributed
from ticketlab.checks import parse_json
from ticketlab.errors import TicketlabError


def _default_mode() -> int:
    # mkstemp creates files readable by the owner only; results should get the usual permissions.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _default_mode()


def write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Write atomically; `mode` sets the permissions (default: 0666 less the umask).

    In a distributed run (torchrun) only rank 0 writes, and every rank waits at a barrier before
    and after the write. This relies on every rank making the same sequence of writes (the same
    program on the same inputs; see ticketlab.distributed), so the barriers line up. Then the run's
    files change only while all ranks are inside the same write: an existence check or read between
    two writes sees the same files on every rank, and a file rank 0 wrote is there for all of them.
    Nothing may write files on one rank only (progress and logs go to stderr, not to files).
    """
    if distributed.world()[1] == 1:
        _write_atomically(Path(path), data, mode)
        return
    distributed.barrier()
    if distributed.is_main():
        _write_atomically(Path(path), data, mode)
    distributed.barrier()


def write_bytes_from_any_rank(path: str | Path, data: bytes) -> None:
    """Write atomically from this process whatever its rank, with no barrier: for derived data that any
    process may make at any time, the same bytes whoever writes them (a cache of prepared data)."""
    _write_atomically(Path(path), data, None)


def _write_atomically(path: Path, data: bytes, mode: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name lets a later run tell a killed writer's leftover from a live write.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temporaries(directory: Path, names: list[str] | None = None) -> None:
    """Delete the temp files of writers that were killed mid-write (their pid no longer runs): all under
    `directory`, or only those of the files `names` directly in it (outputs beside a user's other files)."""
    candidates = directory.rglob(".*.tmp") if names is None else [
        tmp for name in names for tmp in directory.glob(f".{glob.escape(name)}.*.tmp")]
    for tmp in candidates:
        parts = tmp.name.split(".")
        pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
        if pid is not None and not _running(pid):
            tmp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: str | Path, records: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def read_json(path: str | Path):
    """A JSON file ticketlab wrote; a damaged one is a one-line error saying how to recover."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise TicketlabError(f"cannot read {path} ({exc.strerror}); restore it, or delete it and run the command "
                             "again to recompute it") from None
    return parse_json(data, path)


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and string metadata of a safetensors file ticketlab wrote (any path, non-UTF-8 ones
    included); a damaged file is a one-line error saying how to recover."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        return safetensors_load(data), safetensors_metadata(data)
    except FileNotFoundError:
        raise
    except (OSError, SafetensorError, ValueError, RuntimeError) as exc:
        raise TicketlabError(f"{path} is damaged ({_short(exc)}); delete it and run the command again to recompute "
                             "it") from None


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of safetensors bytes (8-byte little-endian header length, then the JSON header)."""
    header_len = int.from_bytes(data[:8], "little")
    if len(data) < 8 or not 0 < header_len <= len(data) - 8:
        raise ValueError("not a safetensors file (bad header length)")
    header = json.loads(data[8:8 + header_len])
    metadata = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("not a safetensors file (bad metadata)")
    return metadata


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    # safetensors refuses non-contiguous or shared-storage tensors; clone cheaply only where needed.
    clean = {k: (v if v.is_contiguous() else v.contiguous()).detach().cpu() for k, v in tensors.items()}
    write_bytes(path, safetensors_bytes(clean, metadata=metadata))


# Checked safetensors files (tickets, compact and dense exports): one metadata entry holds a JSON object
# whose "checksum" is the SHA-256 of everything else in the file, so any edit, metadata included, shows.
def write_checked_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], key: str, meta: dict) -> None:
    clean = {k: (v if v.is_contiguous() else v.contiguous()).detach().cpu() for k, v in tensors.items()}
    meta = {k: v for k, v in meta.items() if k != "checksum"}
    meta["checksum"] = content_checksum(safetensors_bytes(clean, metadata={key: json.dumps(meta, sort_keys=True)}), key)
    write_bytes(path, safetensors_bytes(clean, metadata={key: json.dumps(meta, sort_keys=True)}))


def checked_metadata(data: bytes, key: str) -> dict | None:
    """The JSON object under metadata `key` of safetensors bytes (None when there is none), unverified."""
    try:
        meta = json.loads(safetensors_metadata(data)[key])
    except (ValueError, KeyError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def verify_checksum(data: bytes, key: str, meta: dict) -> bool:
    return isinstance(meta.get("checksum"), str) and content_checksum(data, key) == meta["checksum"]


def content_checksum(data: bytes, key: str) -> str:
    """SHA-256 of safetensors bytes but the checksum itself: the header (tensor names, dtypes, shapes, offsets
    and all metadata, as canonical JSON with metadata `key` parsed and its "checksum" left out), then the
    tensor bytes."""
    size = int.from_bytes(data[:8], "little")
    digest = header_digest(json.loads(data[8:8 + size]), key)
    digest.update(data[8 + size:])
    return digest.hexdigest()


def header_digest(header: dict, key: str):
    """The SHA-256 of content_checksum fed with a safetensors header, ready for the tensor bytes (which a
    reader may feed as it reads them, without holding the file twice)."""
    extra = dict(header.get("__metadata__") or {})
    meta = {k: v for k, v in json.loads(extra[key]).items() if k != "checksum"}
    canonical = {**header, "__metadata__": {**extra, key: meta}}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode())
