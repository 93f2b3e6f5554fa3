"""The dataset registry: one entry per name, and `load_dataset`, the single way to get data.

Adding a dataset is writing a loader `root -> RawSplits` and adding one entry
here; splitting, normalization and option checks are shared by all of them.
"""

import dataclasses
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ticketlab.data.cache import cache_key, cache_path, read_cached, write_cached
from ticketlab.data.cifar import cifar10_files, cifar100_files, load_cifar10, load_cifar100
from ticketlab.data.dataset import Dataset, RawSplits
from ticketlab.data.digits import load_digits
from ticketlab.data.external import from_torch
from ticketlab.data.idx_sets import fashion_mnist_files, load_fashion_mnist, load_mnist, mnist_files
from ticketlab.data.mnist1d_set import load_mnist1d
from ticketlab.data.prepare import prepare
from ticketlab.data.roots import resolve_data_root
from ticketlab.data.synthetic import load_synthetic, load_synthetic_images
from ticketlab.errors import TicketlabError
from ticketlab.factories import import_object, is_factory_name


@dataclass(frozen=True)
class DatasetEntry:
    """How to read one dataset, and how much of its training set to hold out by default. `files` lists the
    files the loader reads (none when they are missing): a set read from files is cached prepared."""

    loader: Callable[[Path], RawSplits]
    default_val_size: int
    description: str
    files: Callable[[Path], list[Path]] | None = None


DATASETS: dict[str, DatasetEntry] = {
    "fashion-mnist": DatasetEntry(
        load_fashion_mnist, 5000, "Fashion-MNIST: 28x28 grayscale clothing, 60k train / 10k test, 10 classes",
        fashion_mnist_files),
    "mnist": DatasetEntry(
        load_mnist, 5000, "MNIST: 28x28 grayscale digits, 60k train / 10k test, 10 classes", mnist_files),
    "cifar10": DatasetEntry(
        load_cifar10, 5000, "CIFAR-10: 32x32 colour, 50k train / 10k test, 10 classes, flip-crop augmentation",
        cifar10_files),
    "cifar100": DatasetEntry(
        load_cifar100, 5000, "CIFAR-100: 32x32 colour, 50k train / 10k test, 100 fine classes, flip-crop augmentation",
        cifar100_files),
    "mnist1d": DatasetEntry(
        load_mnist1d, 500, "MNIST-1D: length-40 series generated locally, 4000 train / 1000 test, 10 classes"),
    "digits": DatasetEntry(
        load_digits, 200, "scikit-learn digits: 8x8 grayscale, 1500 train / 297 test, 10 classes"),
    "synthetic": DatasetEntry(
        load_synthetic, 200, "generated Gaussian blobs for tests: 20 features, 2000 train / 500 test, 10 classes"),
    "synthetic-images": DatasetEntry(
        load_synthetic_images, 200, "generated 3x8x8 images for tests: 2000 train / 500 test, 10 classes"),
}


# Data given as tensors or torch Datasets, named by a fingerprint of its content so that run
# directories tell different data apart; it lives in this process only.
IN_MEMORY: dict[str, Dataset] = {}


def remember_in_memory(data: Dataset) -> str:
    """The name `memory-<fingerprint>` under which `load_dataset` finds `data` in this process."""
    digest = hashlib.sha256()
    for tensor in (data.train_x, data.train_y, data.val_x, data.val_y, data.test_x, data.test_y):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(str((tensor.dtype, tuple(tensor.shape))).encode())
        digest.update(tensor.numpy().tobytes())
    digest.update(f"{data.num_classes}:{data.augment}".encode())
    name = f"memory-{digest.hexdigest()[:16]}"
    IN_MEMORY[name] = data
    return name


def dataset_names() -> list[str]:
    """Registered dataset names, in registry order."""
    return list(DATASETS)


# The last dataset loaded with reuse=True and what it was loaded from: a run asks for its data more than once
# (its checks, then each job) and gets this one object instead of a fresh copy.
RECENT: dict[str, Dataset] = {}


def load_dataset(name: str, data_root: str | os.PathLike | None = None, val_size: int | None = None,
                 train_subset: int = 0, split_seed: int = 0, test_subset: int = 0, pad: int = 0,
                 resize: int = 0, reuse: bool = False) -> Dataset:
    """Load dataset `name` into memory with a validation split held out of its training set.

    data_root: folder to search (default $TICKETLAB_DATA_ROOT, else ./data).
    val_size: examples held out for validation (default: the dataset's own; 0 for none).
    train_subset: keep only this many training examples (0 keeps all).
    test_subset: evaluate on only the first this many test examples (0 keeps all).
    split_seed: chooses which examples are held out.
    pad: zero-pad images by this many pixels on every side (after standardization, so the padding
      is the training mean), e.g. 2 takes 28x28 Fashion-MNIST to the 32x32 of CIFAR networks.
    resize: resample images to resize x resize pixels (bilinear, before padding), e.g. 28 takes the
      8x8 digits to the resolution of a network made for Fashion-MNIST.
    reuse: return the Dataset object of the previous call with reuse=True when it was loaded with the same
      options from the same files (unchanged size and mtime), rather than loading again.

    Sets read from files (MNIST, Fashion-MNIST, CIFAR) are kept prepared in a disk cache (data/cache.py).
    """
    if isinstance(name, str) and name.startswith("memory-"):
        if name not in IN_MEMORY:
            raise TicketlabError(f"dataset {name} was held in memory by the Python process that made this run; "
                                 "pass the data to the Python API again (e.g. tl.train(ticket, data))")
        return IN_MEMORY[name]
    entry = DATASETS.get(name)
    if entry is None and not is_factory_name(name):
        raise TicketlabError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}, or "
                             "package.module:factory for a dataset of your own")
    if not isinstance(pad, int) or pad < 0:
        raise TicketlabError(f"--pad must be a non-negative number of pixels, got {pad!r}")
    if not isinstance(resize, int) or resize < 0:
        raise TicketlabError(f"--resize must be a non-negative number of pixels, got {resize!r}")
    if entry is None:
        return _resized_and_padded(name, _from_factory(name, val_size, train_subset, split_seed, test_subset),
                                   resize, pad)
    root = resolve_data_root(data_root)
    options = {"val_size": entry.default_val_size if val_size is None else val_size, "train_subset": train_subset,
               "split_seed": split_seed, "test_subset": test_subset}
    sources = entry.files(root) if entry.files is not None else []
    key = cache_key(name, sources, options)
    recent_key = f"{key}:{resize}:{pad}"
    if reuse and recent_key in RECENT:
        return RECENT[recent_key]
    data = read_cached(cache_path(name, key), key) if sources else None
    if data is None:
        data = prepare(name, entry.loader(root), **options)
        if sources:
            write_cached(cache_path(name, key), key, data)
    data = _resized_and_padded(name, data, resize, pad)
    if reuse:
        RECENT.clear()
        RECENT[recent_key] = data
    return data


def _resized_and_padded(name: str, data: Dataset, resize: int, pad: int) -> Dataset:
    if resize:
        data = _resized(name, data, resize)
    if pad:
        if data.train_x.dim() != 4:
            raise TicketlabError(f"--pad applies to image datasets; {name} has inputs of shape {tuple(data.input_shape)}")
        sides = (pad, pad, pad, pad)
        data = dataclasses.replace(data, train_x=F.pad(data.train_x, sides), val_x=F.pad(data.val_x, sides),
                                   test_x=F.pad(data.test_x, sides))
    return data


def _from_factory(name: str, val_size: int | None, train_subset: int, split_seed: int, test_subset: int) -> Dataset:
    """A dataset of the user's own: `package.module:factory` returns (train, test) torch Datasets or a Dataset."""
    made = import_object(name, "dataset factory")()
    if isinstance(made, Dataset):
        if val_size is not None or train_subset or test_subset:
            raise TicketlabError(f"dataset factory {name} returns a ready Dataset, already split; drop --val-size, "
                                 "--train-subset and --test-subset (or return (train, test) torch Datasets)")
        return dataclasses.replace(made, name=name)
    if isinstance(made, (tuple, list)) and len(made) == 2:
        return from_torch(made[0], made[1], val_size=val_size, seed=split_seed, name=name, train_subset=train_subset,
                          test_subset=test_subset)
    raise TicketlabError(f"dataset factory {name} returned a {type(made).__name__}; return (train_set, test_set) "
                         "torch Datasets or a ticketlab Dataset")


def _resized(name: str, data: Dataset, size: int) -> Dataset:
    if data.train_x.dim() != 4:
        raise TicketlabError(f"--resize applies to image datasets; {name} has inputs of shape {tuple(data.input_shape)}")

    def scale(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) if len(x) else x.new_zeros(0, x.shape[1], size, size)

    return dataclasses.replace(data, train_x=scale(data.train_x), val_x=scale(data.val_x), test_x=scale(data.test_x))
