"""CIFAR-10 and CIFAR-100 from the official archives, binary or python version.

Searched under the data root (also under cifar10/, cifar-10/, CIFAR10/ and the
CIFAR-100 equivalents): the binary folder first, because reading it needs no
unpickling at all, then the python folder, read with the restricted unpickler.
Both give (N, 3, 32, 32) uint8 images; for CIFAR-100 we use the fine labels.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ticketlab.data.dataset import RawSplits
from ticketlab.data.rawfile import read_file_bytes
from ticketlab.data.roots import WHERE_TO_SET_ROOT, find_all, format_folders
from ticketlab.data.safe_pickle import load_restricted_pickle
from ticketlab.errors import TicketlabError

PIXELS_PER_IMAGE = 3 * 32 * 32
CIFAR_AUGMENT = "flip-crop"
ARCHIVE_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass(frozen=True)
class CifarVariant:
    """Everything that differs between CIFAR-10 and CIFAR-100."""

    name: str
    num_classes: int
    parent_folders: tuple[str, ...]  # tried under the root, besides the root itself
    binary_folder: str
    binary_train: tuple[str, ...]
    binary_test: str
    label_bytes: int  # bytes before the pixels in a binary record
    label_offset: int  # which of them is the label we use
    python_folder: str
    python_train: tuple[str, ...]
    python_test: str
    python_label_key: str
    archive_stem: str


CIFAR10 = CifarVariant(
    name="cifar10",
    num_classes=10,
    parent_folders=("cifar10", "cifar-10", "CIFAR10"),
    binary_folder="cifar-10-batches-bin",
    binary_train=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    binary_test="test_batch.bin",
    label_bytes=1,
    label_offset=0,
    python_folder="cifar-10-batches-py",
    python_train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    python_test="test_batch",
    python_label_key="labels",
    archive_stem="cifar-10",
)

CIFAR100 = CifarVariant(
    name="cifar100",
    num_classes=100,
    parent_folders=("cifar100", "cifar-100", "CIFAR100"),
    binary_folder="cifar-100-binary",
    binary_train=("train.bin",),
    binary_test="test.bin",
    label_bytes=2,  # coarse label, then fine label
    label_offset=1,
    python_folder="cifar-100-python",
    python_train=("train",),
    python_test="test",
    python_label_key="fine_labels",
    archive_stem="cifar-100",
)


def load_cifar10(root: Path) -> RawSplits:
    return load_cifar(CIFAR10, root)


def load_cifar100(root: Path) -> RawSplits:
    return load_cifar(CIFAR100, root)


def cifar10_files(root: Path) -> list[Path]:
    """The batch files load_cifar10 would read (none when no folder has them all)."""
    return list(first_complete_folder(CIFAR10, root)[1].values())


def cifar100_files(root: Path) -> list[Path]:
    return list(first_complete_folder(CIFAR100, root)[1].values())


def candidate_folders(variant: CifarVariant, root: Path):
    """(folder, wanted files, reader) in the order searched: binary before python under each parent."""
    for parent in [root] + [root / parent for parent in variant.parent_folders]:
        yield parent / variant.binary_folder, binary_files(variant), read_binary_set
        yield parent / variant.python_folder, python_files(variant), read_python_set


def first_complete_folder(variant: CifarVariant, root: Path):
    """(reader, name -> path) of the first complete batch folder; (None, {}) when there is none."""
    for folder, wanted, read in candidate_folders(variant, root):
        found, missing = find_all(folder, wanted)
        if not missing:
            return read, found
    return None, {}


def load_cifar(variant: CifarVariant, root: Path) -> RawSplits:
    """Read the first complete binary or python batch folder found under the root."""
    read, found = first_complete_folder(variant, root)
    if read is not None:
        return read(variant, found)
    searched: list[Path] = []
    incomplete: list[str] = []
    for folder, wanted, _ in candidate_folders(variant, root):
        searched.append(folder)
        found, missing = find_all(folder, wanted)
        if found:
            incomplete.append(f"{folder} lacks {', '.join(missing)}")
    partial = f" (incomplete: {'; '.join(incomplete)})" if incomplete else ""
    raise TicketlabError(
        f"{variant.name} not found in {format_folders(searched)}{partial}; download "
        f"{variant.archive_stem}-binary.tar.gz (or -python.tar.gz) from {ARCHIVE_PAGE} and extract it in {root}; "
        f"{WHERE_TO_SET_ROOT}"
    )


def binary_files(variant: CifarVariant) -> dict[str, tuple[str, ...]]:
    names = (*variant.binary_train, variant.binary_test)
    return {name: (name,) for name in names}


def python_files(variant: CifarVariant) -> dict[str, tuple[str, ...]]:
    names = (*variant.python_train, variant.python_test)
    return {name: (name,) for name in names}


def read_binary_set(variant: CifarVariant, paths: dict[str, Path]) -> RawSplits:
    train = [read_binary_batch(variant, paths[name]) for name in variant.binary_train]
    test_x, test_y = read_binary_batch(variant, paths[variant.binary_test])
    return assemble(variant, train, test_x, test_y)


def read_binary_batch(variant: CifarVariant, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch: fixed-size records of label byte(s) followed by 3072 pixel bytes."""
    content = read_file_bytes(path)
    record_size = variant.label_bytes + PIXELS_PER_IMAGE
    if len(content) == 0 or len(content) % record_size != 0:
        raise TicketlabError(
            f"{path} is truncated or not a {variant.name} binary batch: {len(content)} bytes is not "
            f"a whole number of {record_size}-byte records; download it again"
        )
    records = np.frombuffer(content, dtype=np.uint8).reshape(-1, record_size)
    labels = records[:, variant.label_offset]
    images = records[:, variant.label_bytes :]
    check_labels(variant, labels, path)
    return images, labels


def read_python_set(variant: CifarVariant, paths: dict[str, Path]) -> RawSplits:
    train = [read_python_batch(variant, paths[name]) for name in variant.python_train]
    test_x, test_y = read_python_batch(variant, paths[variant.python_test])
    return assemble(variant, train, test_x, test_y)


def read_python_batch(variant: CifarVariant, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python batch: a dict with an (N, 3072) uint8 array and a list of N labels."""
    batch = load_restricted_pickle(path)
    if not isinstance(batch, dict):
        raise TicketlabError(f"{path} holds a {type(batch).__name__}, not a CIFAR batch dict; replace the file")
    images = batch_entry(batch, "data", path)
    labels = batch_entry(batch, variant.python_label_key, path)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 \
            or images.shape[1] != PIXELS_PER_IMAGE or len(images) == 0:
        shape = getattr(images, "shape", type(images).__name__)
        raise TicketlabError(
            f"{path} has data {shape}, expected an (N, {PIXELS_PER_IMAGE}) uint8 array; replace the file"
        )
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise TicketlabError(f"{path} has labels that are not integers; replace the file") from None
    if labels.shape != (len(images),):
        raise TicketlabError(
            f"{path} has {labels.size} labels for {len(images)} images; the file is damaged, replace it"
        )
    check_labels(variant, labels, path)
    return images, labels


def batch_entry(batch: dict, key: str, path: Path):
    """A batch dict entry; Python 2 pickles give bytes keys, re-pickled copies may give str keys."""
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise TicketlabError(f"{path} has no '{key}' entry; it is not a {path.parent.name} batch, replace the file")


def check_labels(variant: CifarVariant, labels: np.ndarray, path: Path) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= variant.num_classes):
        raise TicketlabError(
            f"{path} has labels outside 0..{variant.num_classes - 1}; it is not a {variant.name} file, replace it"
        )


def assemble(variant: CifarVariant, train: list[tuple[np.ndarray, np.ndarray]],
             test_x: np.ndarray, test_y: np.ndarray) -> RawSplits:
    """Concatenate the training batches and reshape rows of 3072 bytes into (3, 32, 32) images."""
    train_x = np.concatenate([images for images, _ in train])
    train_y = np.concatenate([labels for _, labels in train]).astype(np.int64)
    return RawSplits(
        train_x=train_x.reshape(-1, 3, 32, 32),
        train_y=train_y,
        test_x=test_x.reshape(-1, 3, 32, 32),
        test_y=test_y.astype(np.int64),
        num_classes=variant.num_classes,
        augment=CIFAR_AUGMENT,
    )
