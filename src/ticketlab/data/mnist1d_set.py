"""MNIST-1D generated locally with the `mnist1d` package: the standard 4000/1000 set of length-40 series.

We call the package's generator with its default arguments (seed 42), which
reproduces the published dataset, and never its download helper. Generation
takes about 3 s, so the result is cached as an .npz under <root>/mnist1d/,
written atomically; a cache that cannot be written or read is simply
regenerated, since it is derived data we own.
"""

import contextlib
import importlib.metadata
import os
import random
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ticketlab.data.dataset import RawSplits
from ticketlab.errors import TicketlabError

NUM_CLASSES = 10
INSTALL_HINT = "pip install 'ticketlab[mnist1d]'"
CACHE_KEYS = ("train_x", "train_y", "test_x", "test_y")


def load_mnist1d(root: Path) -> RawSplits:
    cache_path = root / "mnist1d" / f"mnist1d-{package_version()}-default.npz"
    arrays = read_cache(cache_path)
    if arrays is None:
        arrays = generate()
        write_cache(cache_path, arrays)
    return RawSplits(
        train_x=arrays["train_x"][:, None, :],
        train_y=arrays["train_y"],
        test_x=arrays["test_x"][:, None, :],
        test_y=arrays["test_y"],
        num_classes=NUM_CLASSES,
    )


def package_version() -> str:
    """The installed mnist1d version; it names the cache so an upgrade regenerates it."""
    try:
        return importlib.metadata.version("mnist1d")
    except importlib.metadata.PackageNotFoundError:
        raise TicketlabError(f"the mnist1d dataset needs the mnist1d package: {INSTALL_HINT}") from None


def generate() -> dict[str, np.ndarray]:
    """The default MNIST-1D split as float32 series (N, 40) and int64 labels."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise TicketlabError(f"the mnist1d package failed to import ({exc}): {INSTALL_HINT}") from None
    # make_dataset reseeds the global numpy and random generators; put them back
    # so loading data never changes the caller's random streams.
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        generated = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return {
        "train_x": np.asarray(generated["x"], dtype=np.float32),
        "train_y": np.asarray(generated["y"], dtype=np.int64),
        "test_x": np.asarray(generated["x_test"], dtype=np.float32),
        "test_y": np.asarray(generated["y_test"], dtype=np.int64),
    }


def read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the cache is absent or unusable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            arrays = {key: cached[key] for key in CACHE_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    consistent = (
        arrays["train_x"].ndim == 2
        and arrays["train_x"].shape[1:] == arrays["test_x"].shape[1:]
        and arrays["train_y"].shape == (len(arrays["train_x"]),)
        and arrays["test_y"].shape == (len(arrays["test_x"]),)
    )
    return arrays if consistent else None


def write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write via a temp file and os.replace so a crash never leaves a half-written cache."""
    temp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as temp:
            temp_name = temp.name
            np.savez(temp, **arrays)
        os.replace(temp_name, path)
    except OSError:
        # A read-only data root only costs us regeneration next time.
        if temp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
