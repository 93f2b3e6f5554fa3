"""A disk cache of prepared datasets, so that a run reads one file instead of parsing and splitting again.

A prepared dataset of 8-bit pixels (the split, subset and statistics applied; padding and resizing are
cheap and done after) is kept as one safetensors file in the cache folder: $TICKETLAB_CACHE_DIR, else
$XDG_CACHE_HOME/ticketlab, else ~/.cache/ticketlab (under data/). Its name is a hash of everything the
preparation depends on: the dataset, the split options, a format version and each source file's path,
size and modification time, so a changed download or option never meets a stale cache. Files are
written atomically and carry a SHA-256 of their content; one that does not verify is ignored and
written again. A cache folder that cannot be written only means no cache: loading never fails for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

from ticketlab.cachedir import cache_root
from ticketlab.data.dataset import Dataset
from ticketlab.files import (content_checksum, header_digest, remove_stale_temporaries,
                             write_bytes_from_any_rank)

FORMAT = 1  # raise when what a cache file holds, or how a dataset is prepared, changes
META_KEY = "ticketlab_data_cache"
TENSORS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y", "mean", "std")


def cache_dir() -> Path:
    """The folder cached datasets go to."""
    return cache_root() / "data"


def cache_key(name: str, sources: list[Path], options: dict) -> str:
    """Hash of what a prepared dataset depends on: name, options, and each source file's path, size and mtime."""
    files = []
    for path in sources:
        stat = path.stat()
        files.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    text = json.dumps({"format": FORMAT, "dataset": name, "options": options, "files": files}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(name: str, key: str) -> Path:
    return cache_dir() / f"{name}-{key[:24]}.safetensors"


# safetensors dtype names of the tensors a cache file holds
DTYPES = {"U8": torch.uint8, "I64": torch.int64, "F32": torch.float32}
MAX_HEADER = 1 << 20


def read_cached(path: Path, key: str) -> Dataset | None:
    """The dataset cached at `path` under `key`; None when there is none or it does not verify.

    The tensors are read straight into their own memory and hashed on the way (the file is never held
    twice), so loading from the cache costs no more memory than the dataset itself."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size <= MAX_HEADER:
                return None
            header = json.loads(f.read(size))
            meta = json.loads(header["__metadata__"][META_KEY])
            if meta.get("key") != key or set(header) - {"__metadata__"} != set(TENSORS):
                return None
            digest = header_digest(header, META_KEY)
            tensors, position = {}, 0
            for name, entry in sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                                      key=lambda item: tuple(item[1]["data_offsets"])):  # an empty tensor before one at its offset
                tensor = torch.empty([int(n) for n in entry["shape"]], dtype=DTYPES[entry["dtype"]])
                start, end = entry["data_offsets"]
                buffer = memoryview(tensor.numpy()).cast("B") if tensor.numel() else memoryview(bytearray())  # writable
                if start != position or end - start != len(buffer) or f.readinto(buffer) != len(buffer):
                    return None
                digest.update(buffer)
                tensors[name], position = tensor, end
            if f.read(1) or digest.hexdigest() != meta.get("checksum") or tensors["train_x"].dtype != torch.uint8:
                return None
        return Dataset(name=meta["name"], train_x=tensors["train_x"], train_y=tensors["train_y"],
                       val_x=tensors["val_x"], val_y=tensors["val_y"], test_x=tensors["test_x"],
                       test_y=tensors["test_y"], num_classes=int(meta["num_classes"]), augment=str(meta["augment"]),
                       normalization=(tensors["mean"], tensors["std"]))
    except (OSError, KeyError, TypeError, ValueError, AttributeError):
        return None


def write_cached(path: Path, key: str, data: Dataset) -> None:
    """Keep `data` (8-bit pixels only) at `path`; a folder that cannot be written is skipped quietly."""
    if not data.is_pixels(data.stored("train")):
        return
    tensors = {f"{split}_x": data.stored(split).contiguous() for split in ("train", "val", "test")}
    tensors.update(train_y=data.train_y, val_y=data.val_y, test_y=data.test_y, mean=data.normalization[0],
                   std=data.normalization[1])
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"key": key, "name": data.name, "num_classes": data.num_classes, "augment": data.augment}
    meta["checksum"] = content_checksum(safetensors_bytes(tensors, metadata={META_KEY: json.dumps(meta)}), META_KEY)
    with contextlib.suppress(OSError):
        if path.parent.is_dir():  # what writers killed mid-write left behind
            remove_stale_temporaries(path.parent)
        write_bytes_from_any_rank(path, safetensors_bytes(tensors, metadata={META_KEY: json.dumps(meta)}))
