"""Atomic file writes: a temp file in the same folder, flushed, then renamed over the target.

An interrupted run therefore never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

from ticketlab import distributed


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


def remove_stale_temporaries(directory: Path) -> None:
    """Delete the temp files of writers that were killed mid-write (their pid no longer runs)."""
    for tmp in directory.rglob(".*.tmp"):
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
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    # safetensors refuses non-contiguous or shared-storage tensors; clone cheaply only where needed.
    clean = {k: (v if v.is_contiguous() else v.contiguous()).detach().cpu() for k, v in tensors.items()}
    write_bytes(path, safetensors_bytes(clean, metadata=metadata))
