"""Tests for ticketlab.data: format readers on tiny files in the real formats, splits, batching, augmentation."""

import gzip
import io
import pickle
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketlab.data import (
    DATASETS,
    augment_batch,
    batches_per_epoch,
    dataset_names,
    epoch_permutation,
    iterate_batches,
    load_dataset,
)
from ticketlab.data import idx_sets, mnist1d_set
from ticketlab.data.augment import flip_and_shift
from ticketlab.data.cifar import load_cifar10, load_cifar100
from ticketlab.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx_images, read_idx_labels
from ticketlab.data.prepare import split_indices
from ticketlab.data.roots import DATA_ROOT_ENV, resolve_data_root
from ticketlab.errors import TicketlabError

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# ---------------------------------------------------------------- file writers in the real formats


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(dim.to_bytes(4, "big") for dim in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, magic: int, gzipped: bool) -> Path:
    content = idx_bytes(array, magic)
    path.write_bytes(gzip.compress(content) if gzipped else content)
    return path


def write_mnist_set(folder: Path, num_train=50, num_test=20, gzipped=True, seed=0):
    """Four IDX files with random 28x28 images and labels; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_x": rng.integers(0, 256, (num_train, 28, 28), dtype=np.uint8),
        "train_y": (np.arange(num_train) % 10).astype(np.uint8),
        "test_x": rng.integers(0, 256, (num_test, 28, 28), dtype=np.uint8),
        "test_y": (np.arange(num_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gzipped else ""
    magics = (IMAGES_MAGIC, LABELS_MAGIC, IMAGES_MAGIC, LABELS_MAGIC)
    for name, key, magic in zip(IDX_NAMES, arrays, magics):
        write_idx(folder / f"{name}{suffix}", arrays[key], magic, gzipped)
    return arrays


def fake_cifar(num_train: int, num_test: int, num_classes: int, seed=0):
    """Rows of 3072 pixels whose three channels have clearly different means, plus labels."""
    rng = np.random.default_rng(seed)

    def images(n):
        channels = [rng.integers(60 * c, 60 * c + 100, (n, 1024)) for c in range(3)]
        return np.concatenate(channels, axis=1).astype(np.uint8)

    return (images(num_train), rng.integers(0, num_classes, num_train),
            images(num_test), rng.integers(0, num_classes, num_test))


def cifar_binary_records(images, labels, coarse_labels=None) -> bytes:
    columns = [labels[:, None]] if coarse_labels is None else [coarse_labels[:, None], labels[:, None]]
    return np.concatenate([*columns, images], axis=1).astype(np.uint8).tobytes()


class Python2StylePickler(pickle._Pickler):
    """Writes str and bytes as Python 2 wrote its str, and numpy's pre-2.0 module name, like the real CIFAR files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_string(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_python2_string
    dispatch[str] = save_python2_string

    def save_global(self, obj, name=None):
        if getattr(obj, "__name__", None) == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def python_batch_bytes(batch: dict, style: str) -> bytes:
    if style == "python2":
        buffer = io.BytesIO()
        Python2StylePickler(buffer, protocol=2).dump(batch)
        return buffer.getvalue()
    # A Python 3 re-pickle: str keys, native bytes.
    return pickle.dumps(batch, protocol=4)


def write_cifar10(root: Path, fmt: str, per_batch=20, num_test=20, seed=0):
    train_x, train_y, test_x, test_y = fake_cifar(5 * per_batch, num_test, 10, seed)
    if fmt == "binary":
        folder = root / "cifar-10-batches-bin"
        folder.mkdir(parents=True)
        for i in range(5):
            rows = slice(i * per_batch, (i + 1) * per_batch)
            (folder / f"data_batch_{i + 1}.bin").write_bytes(cifar_binary_records(train_x[rows], train_y[rows]))
        (folder / "test_batch.bin").write_bytes(cifar_binary_records(test_x, test_y))
    else:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for i in range(5):
            rows = slice(i * per_batch, (i + 1) * per_batch)
            batch = {"batch_label": "training batch", "labels": train_y[rows].tolist(), "data": train_x[rows]}
            (folder / f"data_batch_{i + 1}").write_bytes(python_batch_bytes(batch, fmt))
        test = {"batch_label": "testing batch", "labels": test_y.tolist(), "data": test_x}
        (folder / "test_batch").write_bytes(python_batch_bytes(test, fmt))
    return train_x, train_y, test_x, test_y


def write_cifar100(root: Path, fmt: str, num_train=100, num_test=20, seed=0):
    train_x, train_y, test_x, test_y = fake_cifar(num_train, num_test, 100, seed)
    if fmt == "binary":
        folder = root / "cifar-100-binary"
        folder.mkdir(parents=True)
        (folder / "train.bin").write_bytes(cifar_binary_records(train_x, train_y, train_y // 5))
        (folder / "test.bin").write_bytes(cifar_binary_records(test_x, test_y, test_y // 5))
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
            batch = {"data": x, "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist()}
            (folder / name).write_bytes(python_batch_bytes(batch, fmt))
    return train_x, train_y, test_x, test_y


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("gzipped", [False, True])
def test_idx_round_trip(tmp_path, gzipped):
    images = np.random.default_rng(1).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5, 9, 2], dtype=np.uint8)
    images_path = write_idx(tmp_path / "images", images, IMAGES_MAGIC, gzipped)
    labels_path = write_idx(tmp_path / "labels", labels, LABELS_MAGIC, gzipped)
    np.testing.assert_array_equal(read_idx_images(images_path), images)
    np.testing.assert_array_equal(read_idx_labels(labels_path), labels)


def test_idx_compression_is_detected_by_content_not_name(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    gz_without_suffix = write_idx(tmp_path / "labels-a", labels, LABELS_MAGIC, gzipped=True)
    plain_with_suffix = write_idx(tmp_path / "labels-b.gz", labels, LABELS_MAGIC, gzipped=False)
    np.testing.assert_array_equal(read_idx_labels(gz_without_suffix), labels)
    np.testing.assert_array_equal(read_idx_labels(plain_with_suffix), labels)


def test_idx_wrong_magic_names_the_file(tmp_path):
    labels_path = write_idx(tmp_path / "labels-file", np.arange(5, dtype=np.uint8), LABELS_MAGIC, gzipped=False)
    with pytest.raises(TicketlabError, match="labels-file.*magic number 0x00000801, expected 0x00000803"):
        read_idx_images(labels_path)


@pytest.mark.parametrize("change", ["truncated", "overlong", "header-only"])
def test_idx_size_must_match_header_exactly(tmp_path, change):
    content = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8), IMAGES_MAGIC)
    content = {"truncated": content[:-1], "overlong": content + b"\0", "header-only": content[:10]}[change]
    path = tmp_path / "broken-images"
    path.write_bytes(content)
    with pytest.raises(TicketlabError, match="broken-images") as error:
        read_idx_images(path)
    assert "\n" not in str(error.value)


def test_truncated_gzip_names_the_file(tmp_path):
    content = gzip.compress(idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8), IMAGES_MAGIC))
    path = tmp_path / "cut.gz"
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(TicketlabError, match="cut.gz is a damaged gzip file"):
        read_idx_images(path)


@pytest.mark.parametrize("gzipped", [False, True])
def test_mnist_loads_from_its_folder(tmp_path, gzipped):
    written = write_mnist_set(tmp_path / "mnist", gzipped=gzipped)
    raw = idx_sets.load_mnist(tmp_path)
    np.testing.assert_array_equal(raw.train_x[:, 0], written["train_x"])
    np.testing.assert_array_equal(raw.test_y, written["test_y"])
    dataset = load_dataset("mnist", tmp_path, val_size=10)
    assert dataset.input_shape == (1, 28, 28)
    assert (len(dataset.train_x), len(dataset.val_x), len(dataset.test_x)) == (40, 10, 20)
    assert dataset.train_y.dtype == torch.int64 and dataset.train_x.dtype == torch.float32
    assert dataset.num_classes == 10 and dataset.augment == "none"


def test_fashion_mnist_torchvision_layout_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(idx_sets, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    written = write_mnist_set(tmp_path / "FashionMNIST" / "raw", gzipped=False)
    raw = idx_sets.load_fashion_mnist(tmp_path)
    np.testing.assert_array_equal(raw.train_x[:, 0], written["train_x"])


def test_label_count_mismatch_is_reported(tmp_path):
    folder = tmp_path / "mnist"
    write_mnist_set(folder)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(3, dtype=np.uint8), LABELS_MAGIC, gzipped=True)
    with pytest.raises(TicketlabError, match="t10k-labels-idx1-ubyte.gz has 3 labels but .* has 20 images"):
        load_dataset("mnist", tmp_path)


# ---------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("fmt", ["binary", "python2", "python3"])
def test_cifar10_formats(tmp_path, fmt):
    train_x, train_y, test_x, test_y = write_cifar10(tmp_path, fmt)
    raw = load_cifar10(tmp_path)
    np.testing.assert_array_equal(raw.train_x, train_x.reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(raw.train_y, train_y)
    np.testing.assert_array_equal(raw.test_x, test_x.reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(raw.test_y, test_y)
    dataset = load_dataset("cifar10", tmp_path, val_size=10)
    assert (len(dataset.train_x), len(dataset.val_x), len(dataset.test_x)) == (90, 10, 20)
    assert dataset.input_shape == (3, 32, 32) and dataset.augment == "flip-crop" and dataset.num_classes == 10


@pytest.mark.parametrize("fmt", ["binary", "python2", "python3"])
def test_cifar100_formats_use_fine_labels(tmp_path, fmt):
    train_x, train_y, test_x, test_y = write_cifar100(tmp_path / "cifar100", fmt)
    raw = load_cifar100(tmp_path)
    np.testing.assert_array_equal(raw.train_x, train_x.reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(raw.train_y, train_y)
    np.testing.assert_array_equal(raw.test_y, test_y)
    assert raw.num_classes == 100


def test_cifar_binary_is_preferred_over_python(tmp_path):
    _, binary_labels, _, _ = write_cifar10(tmp_path, "binary", seed=1)
    write_cifar10(tmp_path, "python3", seed=2)
    np.testing.assert_array_equal(load_cifar10(tmp_path).train_y, binary_labels)


def test_truncated_cifar_binary_names_the_file(tmp_path):
    write_cifar10(tmp_path, "binary")
    batch = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    batch.write_bytes(batch.read_bytes()[:-100])
    with pytest.raises(TicketlabError, match="data_batch_3.bin is truncated"):
        load_dataset("cifar10", tmp_path)


def test_truncated_cifar_pickle_names_the_file(tmp_path):
    write_cifar10(tmp_path, "python3")
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(TicketlabError, match="test_batch is not a readable pickle"):
        load_dataset("cifar10", tmp_path)


def test_cifar_pickle_with_wrong_label_count_is_rejected(tmp_path):
    write_cifar10(tmp_path, "python3")
    images = np.zeros((20, 3072), dtype=np.uint8)
    batch = {"data": images, "labels": [0] * 19}
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps(batch))
    with pytest.raises(TicketlabError, match="data_batch_2 has 19 labels for 20 images"):
        load_dataset("cifar10", tmp_path)


class ShellCommand:
    """Unpickling this runs os.system: what a malicious 'dataset' would contain."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import os

        return os.system, (self.command,)


class EvalCode:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        import builtins

        return builtins.exec, (self.code,)


@pytest.mark.parametrize("attack", ["os.system", "builtins.exec", "nested"])
def test_malicious_cifar_pickle_is_refused_and_not_executed(tmp_path, attack):
    write_cifar10(tmp_path, "python3")
    sentinel = tmp_path / "pwned"
    payload = {
        "os.system": ShellCommand(f"touch {sentinel}"),
        "builtins.exec": EvalCode(f"open({str(sentinel)!r}, 'w').close()"),
        "nested": {"data": [ShellCommand(f"touch {sentinel}")], "labels": [0]},
    }[attack]
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps(payload))
    with pytest.raises(TicketlabError, match=r"data_batch_1: refusing to unpickle global (posix|os|builtins)\."):
        load_dataset("cifar10", tmp_path)
    assert not sentinel.exists()


# ---------------------------------------------------------------- finding data


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(idx_sets, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    with pytest.raises(TicketlabError) as error:
        load_dataset("fashion-mnist", tmp_path / "empty-root")
    message = str(error.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(tmp_path / "empty-root" / "fashion-mnist") in message
    assert "--data-root" in message and DATA_ROOT_ENV in message
    assert "\n" not in message


@pytest.mark.parametrize("name, hint", [("mnist", "train-images-idx3-ubyte.gz"), ("cifar10", "cifar-10-binary.tar.gz"),
                                        ("cifar100", "cifar-100-binary.tar.gz")])
def test_missing_dataset_says_where_to_put_it(tmp_path, name, hint):
    with pytest.raises(TicketlabError, match=f"{name} not found in .*{hint}"):
        load_dataset(name, tmp_path)


def test_incomplete_folder_is_pointed_out(tmp_path):
    write_mnist_set(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(TicketlabError, match="mnist lacks t10k-images-idx3-ubyte"):
        load_dataset("mnist", tmp_path)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(TicketlabError, match="unknown dataset 'imagenet'.*fashion-mnist.*cifar100"):
        load_dataset("imagenet")


def test_registry_has_the_promised_names():
    assert {"fashion-mnist", "mnist", "cifar10", "cifar100", "mnist1d", "synthetic", "synthetic-images",
            "digits"} == set(dataset_names())
    assert all(entry.description and entry.default_val_size > 0 for entry in DATASETS.values())


def test_data_root_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    assert resolve_data_root(None) == Path("data")
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "from-env"))
    assert resolve_data_root(None) == tmp_path / "from-env"
    assert resolve_data_root(tmp_path / "explicit") == tmp_path / "explicit"


def test_environment_variable_is_used_to_find_data(tmp_path, monkeypatch):
    write_mnist_set(tmp_path / "mnist", num_train=30)
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
    assert len(load_dataset("mnist", val_size=5).train_x) == 25


# ---------------------------------------------------------------- splits and normalization


def test_split_indices_are_disjoint_and_cover_everything():
    train_idx, val_idx = split_indices(1000, 150, split_seed=3)
    assert len(val_idx) == 150 and len(train_idx) == 850
    assert not set(train_idx.tolist()) & set(val_idx.tolist())
    assert sorted(np.concatenate([train_idx, val_idx]).tolist()) == list(range(1000))


def rows_as_bytes(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


def test_validation_examples_are_not_trained_on():
    dataset = load_dataset("synthetic", val_size=300)
    assert (len(dataset.train_x), len(dataset.val_x), len(dataset.test_x)) == (1700, 300, 500)
    train_rows, val_rows = rows_as_bytes(dataset.train_x), rows_as_bytes(dataset.val_x)
    assert len(train_rows) == 1700 and len(val_rows) == 300
    assert not train_rows & val_rows


def test_same_split_seed_same_split_and_different_seed_different_split():
    first = load_dataset("synthetic", split_seed=5)
    again = load_dataset("synthetic", split_seed=5)
    other = load_dataset("synthetic", split_seed=6)
    assert torch.equal(first.val_x, again.val_x) and torch.equal(first.train_y, again.train_y)
    assert rows_as_bytes(first.val_x) != rows_as_bytes(other.val_x)
    assert torch.equal(first.test_x, again.test_x)


def test_per_channel_normalization_uses_training_statistics(tmp_path):
    write_cifar10(tmp_path, "binary", per_batch=40)
    dataset = load_dataset("cifar10", tmp_path, val_size=20)
    mean = dataset.train_x.mean(dim=(0, 2, 3))
    std = dataset.train_x.std(dim=(0, 2, 3), correction=0)
    torch.testing.assert_close(mean, torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(std, torch.ones(3), atol=1e-4, rtol=0)
    # The raw channels have means 110, 170, 230 of 255: one global scale would leave these far from 0.
    assert dataset.test_x.mean(dim=(0, 2, 3)).abs().max() < 0.2


def test_val_size_zero_gives_empty_tensors_of_the_right_shape():
    dataset = load_dataset("synthetic-images", val_size=0)
    assert dataset.val_x.shape == (0, 3, 8, 8) and dataset.val_y.shape == (0,)
    assert len(dataset.train_x) == 2000


def test_train_subset_keeps_the_first_examples_of_the_split():
    full = load_dataset("synthetic", split_seed=2)
    subset = load_dataset("synthetic", train_subset=100, split_seed=2)
    assert len(subset.train_x) == 100
    assert torch.equal(subset.train_y, full.train_y[:100])
    assert torch.equal(subset.val_y, full.val_y)


@pytest.mark.parametrize("options, message", [
    ({"val_size": 2000}, "val_size 2000 leaves no training examples"),
    ({"val_size": -1}, "val_size must be 0 or more"),
    ({"train_subset": 1801}, "train_subset 1801 is more than the 1800"),
])
def test_impossible_sizes_are_user_errors(options, message):
    with pytest.raises(TicketlabError, match=message):
        load_dataset("synthetic", **options)


def test_synthetic_is_learnable_by_a_linear_model():
    dataset = load_dataset("synthetic")
    torch.manual_seed(0)
    model = torch.nn.Linear(20, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(300):
        x, y = next(iterate_batches(dataset.train_x, dataset.train_y, 64, epoch=step, seed=0))
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    accuracy = (model(dataset.val_x).argmax(1) == dataset.val_y).float().mean().item()
    assert accuracy > 0.6  # chance is 0.1


def test_digits_sizes():
    dataset = load_dataset("digits")
    assert (len(dataset.train_x), len(dataset.val_x), len(dataset.test_x)) == (1300, 200, 297)
    assert dataset.input_shape == (1, 8, 8) and set(dataset.test_y.tolist()) == set(range(10))


def test_mnist1d_is_the_standard_set_and_cached(tmp_path):
    numpy_state_before = np.random.get_state()[1].copy()
    python_state_before = random.getstate()
    dataset = load_dataset("mnist1d", tmp_path)
    assert (len(dataset.train_x), len(dataset.val_x), len(dataset.test_x)) == (3500, 500, 1000)
    assert dataset.input_shape == (1, 40) and dataset.num_classes == 10
    # Generating must not reseed the caller's global random generators.
    assert np.array_equal(np.random.get_state()[1], numpy_state_before)
    assert random.getstate() == python_state_before
    caches = list((tmp_path / "mnist1d").glob("*.npz"))
    assert len(caches) == 1 and not list((tmp_path / "mnist1d").glob("*.tmp"))
    from_cache = load_dataset("mnist1d", tmp_path)
    assert torch.equal(from_cache.train_x, dataset.train_x) and torch.equal(from_cache.test_y, dataset.test_y)


def test_unreadable_mnist1d_cache_is_ignored(tmp_path):
    bad_cache = tmp_path / "cache.npz"
    bad_cache.write_bytes(b"not a zip file")
    assert mnist1d_set.read_cache(bad_cache) is None
    good_cache = tmp_path / "good.npz"
    arrays = {"train_x": np.zeros((4, 40), np.float32), "train_y": np.zeros(4, np.int64),
              "test_x": np.zeros((2, 40), np.float32), "test_y": np.zeros(2, np.int64)}
    mnist1d_set.write_cache(good_cache, arrays)
    assert mnist1d_set.read_cache(good_cache)["test_x"].shape == (2, 40)


REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (REAL_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist(tmp_path):
    dataset = load_dataset("fashion-mnist", tmp_path)
    assert (len(dataset.train_x), len(dataset.val_x), len(dataset.test_x)) == (55000, 5000, 10000)
    assert dataset.input_shape == (1, 28, 28) and dataset.num_classes == 10
    assert torch.bincount(dataset.test_y).tolist() == [1000] * 10
    assert abs(dataset.train_x.mean().item()) < 1e-3


# ---------------------------------------------------------------- batching


def test_epoch_permutation_is_a_pure_function_of_seed_and_epoch():
    first = epoch_permutation(500, seed=7, epoch=3)
    assert torch.equal(first, epoch_permutation(500, seed=7, epoch=3))
    assert torch.equal(first.sort().values, torch.arange(500))
    assert not torch.equal(first, epoch_permutation(500, seed=7, epoch=4))
    assert not torch.equal(first, epoch_permutation(500, seed=8, epoch=3))
    # Seed and epoch must not simply add up: (seed 1, epoch 2) differs from (seed 2, epoch 1).
    assert not torch.equal(epoch_permutation(500, 1, 2), epoch_permutation(500, 2, 1))


@pytest.mark.parametrize("num_examples, batch_size, expected", [(100, 10, 10), (101, 10, 11), (9, 10, 1), (0, 4, 0)])
def test_batches_per_epoch_keeps_the_last_partial_batch(num_examples, batch_size, expected):
    assert batches_per_epoch(num_examples, batch_size) == expected


def test_iterate_batches_visits_every_example_once_in_permutation_order():
    x = torch.arange(53, dtype=torch.float32)[:, None] * torch.ones(1, 3)
    y = torch.arange(53)
    batches = list(iterate_batches(x, y, 10, epoch=2, seed=1))
    assert [len(batch_y) for _, batch_y in batches] == [10, 10, 10, 10, 10, 3]
    visited = torch.cat([batch_y for _, batch_y in batches])
    assert torch.equal(visited, epoch_permutation(53, seed=1, epoch=2))
    assert all(torch.equal(batch_x[:, 0].long(), batch_y) for batch_x, batch_y in batches)


def test_iterate_batches_resumes_mid_epoch():
    x, y = torch.randn(40, 2), torch.arange(40)
    full = list(iterate_batches(x, y, 8, epoch=5, seed=3))
    resumed = list(iterate_batches(x, y, 8, epoch=5, seed=3, start_batch=2))
    assert len(resumed) == 3
    assert all(torch.equal(a[1], b[1]) for a, b in zip(full[2:], resumed))


def test_bad_batch_size_is_a_user_error():
    with pytest.raises(TicketlabError, match="batch size must be at least 1"):
        batches_per_epoch(10, 0)


# ---------------------------------------------------------------- augmentation


def reference_flip_and_shift(x, flip, shift_y, shift_x, padding):
    """Slow, obvious per-image version: flip, zero-pad, slice."""
    height, width = x.shape[-2:]
    out = torch.empty_like(x)
    for b in range(len(x)):
        image = x[b].flip(-1) if flip[b] else x[b]
        padded = torch.nn.functional.pad(image, (padding,) * 4)
        top, left = padding + int(shift_y[b]), padding + int(shift_x[b])
        out[b] = padded[:, top : top + height, left : left + width]
    return out


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), height=st.integers(1, 9), width=st.integers(1, 9), padding=st.integers(0, 4))
def test_flip_and_shift_matches_per_image_reference(seed, height, width, padding):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 2, height, width, generator=generator)
    flip = torch.rand(6, generator=generator) < 0.5
    shift_y, shift_x = torch.randint(-padding, padding + 1, (2, 6), generator=generator)
    expected = reference_flip_and_shift(x, flip, shift_y, shift_x, padding)
    assert torch.equal(flip_and_shift(x, flip, shift_y, shift_x, padding), expected)


def test_zero_shift_without_flip_is_identity_and_flip_alone_mirrors():
    x = torch.randn(4, 3, 32, 32)
    zeros = torch.zeros(4, dtype=torch.long)
    assert torch.equal(flip_and_shift(x, torch.zeros(4, dtype=torch.bool), zeros, zeros, 4), x)
    assert torch.equal(flip_and_shift(x, torch.ones(4, dtype=torch.bool), zeros, zeros, 4), x.flip(-1))
    one = torch.ones(4, dtype=torch.long)
    shifted = flip_and_shift(x, torch.zeros(4, dtype=torch.bool), zeros, one, 4)
    assert torch.equal(shifted[..., :-1], x[..., 1:]) and torch.equal(shifted[..., -1], torch.zeros(4, 3, 32))


def test_flip_crop_is_reproducible_and_changes_images():
    x = torch.randn(64, 3, 32, 32)
    first = augment_batch(x, "flip-crop", torch.Generator().manual_seed(11))
    again = augment_batch(x, "flip-crop", torch.Generator().manual_seed(11))
    other = augment_batch(x, "flip-crop", torch.Generator().manual_seed(12))
    assert first.shape == x.shape and first.dtype == x.dtype
    assert torch.equal(first, again) and not torch.equal(first, other)
    changed = (first != x).flatten(1).any(dim=1)
    assert changed.sum() > 48  # only no-flip with zero offset (1 in 162) leaves an image as it was
    # Every output pixel is an input pixel of the same image or padding zero.
    for b in range(3):
        assert set(first[b].unique().tolist()) <= set(x[b].unique().tolist()) | {0.0}


def test_augment_none_returns_the_input_and_unknown_kind_fails():
    x = torch.randn(2, 3, 8, 8)
    assert augment_batch(x, "none", torch.Generator()) is x
    with pytest.raises(TicketlabError, match="unknown augmentation 'mixup'; choose one of: none, flip-crop"):
        augment_batch(x, "mixup", torch.Generator())
    with pytest.raises(TicketlabError, match="needs \\(B, C, H, W\\) images"):
        augment_batch(torch.randn(2, 20), "flip-crop", torch.Generator())


def test_test_subset_keeps_the_first_test_examples():
    full = load_dataset("synthetic")
    part = load_dataset("synthetic", test_subset=120)
    assert len(part.test_y) == 120 and torch.equal(part.test_y, full.test_y[:120])
    assert torch.equal(part.test_x, full.test_x[:120])
    with pytest.raises(TicketlabError, match="test_subset"):
        load_dataset("synthetic", test_subset=10_000)
