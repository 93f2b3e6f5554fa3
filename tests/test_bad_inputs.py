"""Bad input, one case per test: one line on stderr, exit code 2, nothing half-written left behind."""

import gzip
import pickle

import pytest
import torch

from conftest import TINY_IMP
from test_cli import assert_clean_error
from test_data import ShellCommand, write_cifar10, write_mnist_set
from ticketlab.ticket import Ticket, load_ticket

# The IMP options without the IMP-only ones, for train and prune.
TINY = [a for i, a in enumerate(TINY_IMP) if a != "--levels" and (i == 0 or TINY_IMP[i - 1] != "--levels")]


@pytest.fixture(scope="module")
def ticket_path(tmp_path_factory):
    """A small trained ticket to damage in various ways."""
    from ticketlab.cli import main
    runs = tmp_path_factory.mktemp("runs")
    assert main(["imp", *TINY_IMP, "--levels", "1", "--runs-dir", str(runs), "--quiet"]) == 0
    return next(runs.glob("imp-*/seed-0/level-1/ticket.safetensors"))


def train_ticket(cli, path, tmp_path):
    return cli("train-ticket", path, "--runs-dir", tmp_path / "runs")


def test_corrupt_idx_magic(cli, tmp_path):
    folder = tmp_path / "data" / "mnist"
    write_mnist_set(folder)
    labels = folder / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[2:4] = b"\x08\x03"  # the images magic in the labels file
    labels.write_bytes(gzip.compress(bytes(raw)))
    res = cli("train", "--dataset", "mnist", "--data-root", tmp_path / "data", "--runs-dir", tmp_path / "runs")
    assert_clean_error(res, "train-labels-idx1-ubyte", "magic")
    assert not (tmp_path / "runs").exists()


def test_truncated_data_file(cli, tmp_path):
    folder = tmp_path / "data" / "mnist"
    write_mnist_set(folder, gzipped=False)
    images = folder / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    res = cli("train", "--dataset", "mnist", "--data-root", tmp_path / "data", "--runs-dir", tmp_path / "runs")
    assert_clean_error(res, "t10k-images-idx3-ubyte")
    assert not (tmp_path / "runs").exists()


def test_malicious_pickle_in_a_cifar_batch_is_not_executed(cli, tmp_path):
    write_cifar10(tmp_path / "data", "python3")
    sentinel = tmp_path / "pwned"
    (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(ShellCommand(f"touch {sentinel}")))
    res = cli("train", "--dataset", "cifar10", "--model", "conv2", "--data-root", tmp_path / "data", "--runs-dir", tmp_path / "runs")
    assert_clean_error(res, "data_batch_3", "refusing to unpickle")
    assert not sentinel.exists() and not (tmp_path / "runs").exists()


def test_ticket_with_a_tampered_checksum(cli, tmp_path, ticket_path):
    data = bytearray(ticket_path.read_bytes())
    data[-7] ^= 0x01
    bad = tmp_path / "tampered.safetensors"
    bad.write_bytes(bytes(data))
    assert_clean_error(train_ticket(cli, bad, tmp_path), "damaged", "checksum")
    assert not (tmp_path / "runs").exists()


def test_ticket_for_another_architecture(cli, tmp_path, ticket_path):
    ticket = load_ticket(ticket_path)
    other = {**ticket.architecture, "name": "mlp_64_16"}  # the stored weights are mlp_32_16's
    bad = tmp_path / "other.safetensors"
    Ticket(other, ticket.mask, ticket.init_state, None, ticket.info).save(bad)
    assert_clean_error(train_ticket(cli, bad, tmp_path), "another model")
    assert not (tmp_path / "runs").exists()


def test_ticket_with_nan_weights(cli, tmp_path, ticket_path):
    ticket = load_ticket(ticket_path)
    weights = {k: v.clone() for k, v in ticket.init_state.items()}
    weights["hidden.0.weight"][0, 0] = float("nan")
    bad = tmp_path / "nan.safetensors"
    Ticket(ticket.architecture, ticket.mask, weights, None, ticket.info).save(bad)
    assert_clean_error(train_ticket(cli, bad, tmp_path), "hidden.0.weight", "NaN")
    assert not (tmp_path / "runs").exists()


def test_impossible_density(cli, tmp_path):
    res = cli("prune", *TINY, "--method", "snip", "--density", "1.5", "--runs-dir", tmp_path / "runs")
    assert_clean_error(res, "density", "1.5")
    assert not (tmp_path / "runs").exists()


def test_conflicting_options(cli, tmp_path):
    res = cli("imp", *TINY_IMP, "--retrain", "finetune", "--rewind-optimizer", "--runs-dir", tmp_path / "runs")
    assert_clean_error(res, "--rewind-optimizer")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option,value", [("--model", "../../escaped"), ("--dataset", "../../escaped")])
def test_a_name_cannot_escape_the_runs_directory(cli, tmp_path, option, value):
    """Run directories are named by a hash of the options, so no name reaches the file system; names that
    look like paths are refused as unknown before anything is created."""
    runs = tmp_path / "a" / "b" / "runs"
    res = cli("train", *TINY, option, value, "--runs-dir", runs)
    assert_clean_error(res, "unknown")
    assert not (tmp_path / "a").exists() and not (tmp_path / "escaped").exists()


def test_nan_check_accepts_a_finite_ticket(ticket_path):
    ticket = load_ticket(ticket_path)  # the undamaged ticket loads
    assert all(torch.isfinite(v).all() for v in ticket.init_state.values())
