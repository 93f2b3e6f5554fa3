"""`ticketlab infer`: test accuracy of a ticket or an exported model on the fastest path available.

Torch models (ticket, compact and dense exports) go through `sparsify`: each Linear runs on CSR
when that measured faster at the inference batch size, else dense. TorchScript and ONNX files run
as they are (ONNX on onnxruntime). The data default to the ticket's own dataset and split. Tickets
and compact files take the inputs standardized as in training; dense, TorchScript and ONNX exports
take raw inputs (they standardize them themselves), so they are fed the test set un-standardized.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from ticketlab.config import DataConfig
from ticketlab.data.dataset import UINT8_SCALE
from ticketlab.deploy.export import RawInputs, load_exported
from ticketlab.deploy.sparse import sparsify
from ticketlab.errors import TicketlabError
from ticketlab.runtime import load_data_config

MAX_BATCH = 65_536  # examples per inference batch: a larger batch only costs memory


def data_config_for(loaded, dataset: str | None, data_root: str | None, test_subset: int | None) -> DataConfig:
    stored = (loaded.meta.get("info") or loaded.meta).get("data_config") if loaded.meta else None
    if dataset is None and not stored:
        raise TicketlabError("this file does not record its dataset; give --dataset")
    cfg = DataConfig(**stored) if stored and (dataset is None or dataset == stored.get("dataset")) else DataConfig(dataset=dataset)
    changes = {k: v for k, v in (("data_root", data_root), ("test_subset", test_subset)) if v is not None}
    return DataConfig(**{**vars(cfg), **changes})


@torch.no_grad()
def run_inference(path: str, dataset: str | None = None, data_root: str | None = None, test_subset: int | None = None,
                  batch_size: int = 256, path_mode: str = "auto", torchscript: bool = False, data=None) -> dict:
    """`torchscript=True` allows a TorchScript file, whose loading runs code from it (trusted files only).
    `data`: a Dataset already in memory to evaluate on (instead of `dataset` or the one the file records)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
        raise TicketlabError(f"--batch-size must be a whole number from 1 to {MAX_BATCH:,}, got {batch_size!r}")
    loaded = load_exported(path, torchscript=torchscript)
    if data is None:
        data = load_data_config(data_config_for(loaded, dataset, data_root, test_subset))
    elif test_subset:
        data = dataclasses.replace(data, test_x=data.test_x[:test_subset], test_y=data.test_y[:test_subset])
    if loaded.input_shape and tuple(loaded.input_shape) != tuple(data.input_shape) and loaded.kind != "onnx":
        raise TicketlabError(f"{path} takes inputs of shape {tuple(loaded.input_shape)} but {data.name} has "
                             f"{tuple(data.input_shape)}; give the dataset it was trained on")
    run, paths = loaded.run, {}
    if loaded.module is not None and loaded.kind != "torchscript":
        run, paths = sparsify(loaded.module, batch_size=batch_size, path=path_mode)
        if loaded.normalization is not None:
            run = RawInputs(run, *loaded.normalization)
    test_x = raw_inputs(data, path) if loaded.normalization is not None else data.test_x
    correct = 0
    start = time.perf_counter()
    for first in range(0, len(data.test_y), batch_size):
        logits = run(test_x[first:first + batch_size])
        correct += int((logits.argmax(1) == data.test_y[first:first + batch_size]).sum())
    seconds = time.perf_counter() - start
    return {"file": str(path), "kind": loaded.kind, "dataset": data.name, "examples": len(data.test_y),
            "test_accuracy": correct / max(1, len(data.test_y)), "seconds": seconds,
            "inputs": "standardized" if loaded.normalization is None else "raw",
            "examples_per_second": len(data.test_y) / seconds if seconds > 0 else None, "batch_size": batch_size,
            "linear_paths": paths}


def raw_inputs(data, path) -> torch.Tensor:
    """The test inputs as they were before standardization (pixels in [0, 1]), for a file that takes raw inputs."""
    if getattr(data, "normalization", None) is None:  # a Dataset made directly: ticketlab never standardized it
        return data.test_x
    stored = data.stored("test")
    if data.is_pixels(stored):  # 8-bit pixels as read from the file
        return stored.to(torch.float32).mul_(UINT8_SCALE)
    mean, std = data.normalization
    return data.test_x * std + mean
