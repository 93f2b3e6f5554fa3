"""Datasets in memory and batches out of them: the data half of every ticketlab experiment.

    dataset = load_dataset("fashion-mnist", val_size=5000, split_seed=0)
    for x, y in iterate_batches(dataset.train_x, dataset.train_y, 128, epoch, seed):
        x = augment_batch(x, dataset.augment, generator)

Readers for the raw formats (IDX, CIFAR binary and python batches) live in
their own modules; `registry` maps names to them, `prepare` splits and
normalizes, `batching` and `augment` serve the training loop.
"""

from ticketlab.data.augment import AUGMENTATIONS, augment_batch
from ticketlab.data.batching import batches_per_epoch, epoch_permutation, iterate_batches
from ticketlab.data.dataset import Dataset
from ticketlab.data.external import from_tensors, from_torch
from ticketlab.data.registry import DATASETS, DatasetEntry, dataset_names, load_dataset

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "Dataset",
    "DatasetEntry",
    "augment_batch",
    "batches_per_epoch",
    "dataset_names",
    "epoch_permutation",
    "iterate_batches",
    "load_dataset",
]

# `Dataset.from_tensors(...)` / `Dataset.from_torch(...)`: the constructors for data of one's own, attached
# here because they build on the splitting and standardization that themselves build on Dataset.
Dataset.from_tensors = staticmethod(from_tensors)
Dataset.from_torch = staticmethod(from_torch)
