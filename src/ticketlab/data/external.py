"""Data of the user's own: tensors or any map-style torch Dataset, held in memory as a `Dataset`.

Items are read once, in index order, and stacked; from then on training draws ticketlab's own seeded
batch order, so runs are as deterministic and exactly resumable as on the registry's datasets. The
inputs must fit in memory: at most `MAX_BYTES` of float32 (one clear error beyond it, before any
item is read past the first). A DataLoader is accepted for its dataset when its sampler reads every item
once (sequential or shuffled: ticketlab draws its own order instead); one whose sampler picks a subset,
weights items or draws with replacement is refused, as is one over an IterableDataset, whose order is
its own. A dataset whose items
change from one read to the next (random transforms) is refused: give a deterministic one and use
the trainer's augmentation instead.
"""

from __future__ import annotations

import numpy as np
import torch

from ticketlab.data.dataset import Dataset, RawSplits
from ticketlab.data.prepare import prepare
from ticketlab.errors import TicketlabError

MAX_BYTES = 8 * 2**30  # float32 inputs of the train and test sets together
DEFAULT_VAL_FRACTION = 0.1  # held out of the training set when val_size is not given (at most 5000)


def from_tensors(train_x, train_y, test_x, test_y, *, val_size: int | None = None, seed: int = 0,
                 name: str = "tensors", num_classes: int | None = None, train_subset: int = 0, test_subset: int = 0,
                 augment: str = "none") -> Dataset:
    """A Dataset from in-memory arrays: inputs (N, ...) and integer labels (N,); the validation split
    (val_size examples, default 10% up to 5000) is held out of the training set by `seed`, and inputs
    are standardized per channel with training statistics, as for every registry dataset."""
    arrays = [_array(a, what) for a, what in ((train_x, "train_x"), (train_y, "train_y"), (test_x, "test_x"),
                                              (test_y, "test_y"))]
    train_x, train_y, test_x, test_y = arrays
    for x, y, split in ((train_x, train_y, "train"), (test_x, test_y, "test")):
        if x.ndim < 2 or len(x) != len(y) or y.ndim != 1:
            raise TicketlabError(f"{split} inputs must be (N, ...) and labels (N,) with the same N; got "
                                 f"{x.shape} and {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise TicketlabError(f"{split} labels must be integers (class indices); got {y.dtype}")
    if len(train_y) == 0 or len(test_y) == 0:
        raise TicketlabError("the training and test sets must hold at least one example each")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise TicketlabError(f"train and test inputs differ in shape: {train_x.shape[1:]} vs {test_x.shape[1:]}")
    top = int(max(train_y.max(), test_y.max()))
    classes = num_classes if num_classes is not None else top + 1
    if min(int(train_y.min()), int(test_y.min())) < 0 or top >= classes:
        raise TicketlabError(f"labels must lie in 0 .. {classes - 1} (num_classes {classes}); got {train_y.min()} .. {top}")
    if augment not in ("none", "flip-crop"):
        raise TicketlabError(f"augment must be none or flip-crop, got {augment!r}")
    if val_size is None:
        val_size = min(5000, int(DEFAULT_VAL_FRACTION * len(train_y)))
    raw = RawSplits(train_x, train_y, test_x, test_y, classes, augment)
    return prepare(name, raw, val_size=val_size, train_subset=train_subset, split_seed=seed, test_subset=test_subset)


def from_torch(train_set, test_set, *, val_size: int | None = None, seed: int = 0, name: str | None = None,
               num_classes: int | None = None, train_subset: int = 0, test_subset: int = 0,
               augment: str = "none") -> Dataset:
    """A Dataset from two map-style torch Datasets (or DataLoaders over them) of (input, label) items."""
    train_set, test_set = _map_style(train_set, "train"), _map_style(test_set, "test")
    total = 0
    for dataset in (train_set, test_set):
        first = _item(dataset, 0)
        total += len(dataset) * first[0].size * 4
    if total > MAX_BYTES:
        raise TicketlabError(f"the datasets need {total / 2**30:.1f} GiB as float32 in memory, more than the "
                             f"{MAX_BYTES / 2**30:.0f} GiB ticketlab holds; pass a subset (torch.utils.data.Subset)")
    train_x, train_y = _materialize(train_set, "train")
    test_x, test_y = _materialize(test_set, "test")
    return from_tensors(train_x, train_y, test_x, test_y, val_size=val_size, seed=seed,
                        name=name or type(train_set).__name__, num_classes=num_classes, train_subset=train_subset,
                        test_subset=test_subset, augment=augment)


def _map_style(dataset, split: str):
    loader = dataset if isinstance(dataset, torch.utils.data.DataLoader) else None
    if loader is not None:
        dataset = loader.dataset  # its batching, shuffling and workers play no part: ticketlab draws its own order
    if isinstance(dataset, torch.utils.data.IterableDataset):
        raise TicketlabError(f"the {split} set is an IterableDataset, whose order is its own; ticketlab needs a "
                             "map-style dataset (__len__ and __getitem__) to draw a seeded, resumable order")
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise TicketlabError(f"the {split} set is a {type(dataset).__name__}; give a map-style torch Dataset "
                             "(__len__ and __getitem__) or tensors (Dataset.from_tensors)")
    if len(dataset) == 0:
        raise TicketlabError(f"the {split} set is empty")
    if loader is not None:
        _check_loader(loader, split)
    return dataset


def _check_loader(loader, split: str) -> None:
    """A loader is taken for its dataset only when its sampler reads every item once (sequential or shuffled):
    a sampler that picks a subset, weights items or draws with replacement defines other data, and
    ignoring it would silently train on something else."""
    sampler = getattr(loader.batch_sampler, "sampler", None) if loader.batch_sampler is not None else loader.sampler
    if type(loader.batch_sampler) not in (torch.utils.data.BatchSampler, type(None)):
        raise TicketlabError(f"the {split} DataLoader has its own batch sampler ({type(loader.batch_sampler).__name__}), "
                             "which decides what is trained on; pass its dataset (a torch.utils.data.Subset for a "
                             "subset) instead")
    every_item_once = isinstance(sampler, torch.utils.data.SequentialSampler) or (
        isinstance(sampler, torch.utils.data.RandomSampler) and not sampler.replacement
        and sampler.num_samples == len(sampler.data_source))
    if not every_item_once:
        raise TicketlabError(f"the {split} DataLoader samples with a {type(sampler).__name__}, which does not read "
                             "every item once; ticketlab would ignore it and train on the whole dataset, so pass the "
                             "data it should use (e.g. a torch.utils.data.Subset) instead")


def _item(dataset, index: int) -> tuple[np.ndarray, int]:
    item = dataset[index]
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise TicketlabError(f"dataset items must be (input, label) pairs; item {index} is a {type(item).__name__}")
    x, y = _array(item[0], f"input {index}"), _array(item[1], f"label {index}")
    if y.size != 1 or not np.issubdtype(y.dtype, np.integer):
        raise TicketlabError(f"item {index}'s label must be one integer class index; got {item[1]!r}")
    return x, int(y.reshape(()))


def _materialize(dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    first = _item(dataset, 0)
    again = _item(dataset, 0)
    if first[0].shape != again[0].shape or not np.array_equal(first[0], again[0]) or first[1] != again[1]:
        raise TicketlabError(f"the {split} set returns different values for the same index (random transforms?); "
                             "give a deterministic dataset and use ticketlab's --augment for augmentation")
    xs = np.empty((len(dataset), *first[0].shape), dtype=np.float32)
    ys = np.empty(len(dataset), dtype=np.int64)
    for index in range(len(dataset)):
        x, y = first if index == 0 else _item(dataset, index)
        if x.shape != first[0].shape:
            raise TicketlabError(f"{split} item {index} has input shape {x.shape}, item 0 {first[0].shape}; "
                                 "every input must have the same shape")
        xs[index], ys[index] = x, y
    return xs, ys


def _array(value, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        raise TicketlabError(f"{what} is a {type(value).__name__}; give a tensor or array") from None
    if array.dtype == object:
        raise TicketlabError(f"{what} is not numeric (a {type(value).__name__}); give tensors or arrays")
    return array
