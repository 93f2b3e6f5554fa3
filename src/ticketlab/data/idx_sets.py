"""MNIST and Fashion-MNIST: find the four IDX files and check they form one dataset.

Both sets share file names, so each searches its own named folders first. For
Fashion-MNIST the Debian package location comes before the bare data root: a
bare root could just as well hold MNIST files, and the packaged copy is known
to be Fashion-MNIST.
"""

from pathlib import Path

import numpy as np

from ticketlab.data.dataset import RawSplits
from ticketlab.data.idx import read_idx_images, read_idx_labels
from ticketlab.data.roots import WHERE_TO_SET_ROOT, find_all, format_folders
from ticketlab.errors import TicketlabError

# Role -> accepted file names; the dotted spelling comes from some unpacked archives.
IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
IMAGE_SIZE = 28
NUM_CLASSES = 10
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def fashion_mnist_folders(root: Path) -> list[Path]:
    return [root / "fashion-mnist", root / "fashion_mnist", root / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST, root]


def mnist_folders(root: Path) -> list[Path]:
    return [root / "mnist", root / "MNIST" / "raw", root]


def load_fashion_mnist(root: Path) -> RawSplits:
    how_to_get = (
        "as root: apt-get install dataset-fashion-mnist, or put the IDX files "
        f"(train-images-idx3-ubyte.gz and the 3 others) in {root / 'fashion-mnist'}"
    )
    return load_idx_set("fashion-mnist", fashion_mnist_folders(root), how_to_get)


def load_mnist(root: Path) -> RawSplits:
    how_to_get = (
        "put the 4 MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in {root / 'mnist'}"
    )
    return load_idx_set("mnist", mnist_folders(root), how_to_get)


def fashion_mnist_files(root: Path) -> list[Path]:
    """The four files load_fashion_mnist would read (none when they are not all there)."""
    return list(first_complete_folder(fashion_mnist_folders(root)).values())


def mnist_files(root: Path) -> list[Path]:
    return list(first_complete_folder(mnist_folders(root)).values())


def first_complete_folder(folders: list[Path]) -> dict[str, Path]:
    """role -> path of the IDX files in the first folder holding all four; empty when none does."""
    for folder in folders:
        found, missing = find_all(folder, IDX_FILES)
        if not missing:
            return found
    return {}


def load_idx_set(name: str, folders: list[Path], how_to_get: str) -> RawSplits:
    """Read the first folder holding all four IDX files."""
    found = first_complete_folder(folders)
    if found:
        return read_idx_set(found)
    incomplete: list[str] = []
    for folder in folders:
        found, missing = find_all(folder, IDX_FILES)
        if found:
            incomplete.append(f"{folder} lacks {', '.join(IDX_FILES[role][0] for role in missing)}")
    partial = f" (incomplete: {'; '.join(incomplete)})" if incomplete else ""
    raise TicketlabError(
        f"{name} not found in {format_folders(folders)}{partial}; {how_to_get}; {WHERE_TO_SET_ROOT}"
    )


def read_idx_set(paths: dict[str, Path]) -> RawSplits:
    train_x = read_images(paths["train_images"])
    train_y = read_labels(paths["train_labels"], len(train_x), paths["train_images"])
    test_x = read_images(paths["test_images"])
    test_y = read_labels(paths["test_labels"], len(test_x), paths["test_images"])
    return RawSplits(train_x, train_y, test_x, test_y, num_classes=NUM_CLASSES)


def read_images(path: Path) -> np.ndarray:
    """(N, 1, 28, 28) uint8 images; the channel axis makes them look like every other image set."""
    images = read_idx_images(path)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or len(images) == 0:
        raise TicketlabError(
            f"{path} holds images of shape {images.shape}, expected (N, {IMAGE_SIZE}, {IMAGE_SIZE}) with N > 0; "
            "it is not an MNIST-style file"
        )
    return images[:, None, :, :]


def read_labels(path: Path, num_images: int, images_path: Path) -> np.ndarray:
    labels = read_idx_labels(path)
    if len(labels) != num_images:
        raise TicketlabError(
            f"{path} has {len(labels)} labels but {images_path} has {num_images} images; "
            "the files come from different downloads, replace them with a matching set"
        )
    if labels.max() >= NUM_CLASSES:
        raise TicketlabError(f"{path} has label {labels.max()}, expected 0..{NUM_CLASSES - 1}; replace the file")
    return labels.astype(np.int64)
