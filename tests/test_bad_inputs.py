"""Bad input, one case per test: one line on stderr, exit code 2, nothing half-written left behind."""

import gzip
import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch

from conftest import TINY_IMP
from test_cli import assert_clean_error
from test_data import ShellCommand, write_cifar10, write_mnist_set
from ticketlab.config import DataConfig
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
    Ticket(other, ticket.mask, ticket.init_state, None, ticket.provenance).save(bad)
    assert_clean_error(train_ticket(cli, bad, tmp_path), "another model")
    assert not (tmp_path / "runs").exists()


def test_ticket_with_nan_weights(cli, tmp_path, ticket_path):
    ticket = load_ticket(ticket_path)
    weights = {k: v.clone() for k, v in ticket.init_state.items()}
    weights["hidden.0.weight"][0, 0] = float("nan")
    bad = tmp_path / "nan.safetensors"
    Ticket(ticket.architecture, ticket.mask, weights, None, ticket.provenance).save(bad)
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


# ---- the table: every command, bad input of every kind ------------------------------------------
#
# Each case is a command line whose mistake must be refused with exit code 2, one line on stderr, no
# traceback, and nothing written: every file under the case's folder and the shared fixture folder
# (tickets, exports, keys, a finished run) is byte-identical afterwards. Placeholders in {braces}
# name fixture files (see `world`); {new} is a runs directory that does not exist yet.

TRAIN = TINY + ["--runs-dir", "{new}"]
IMP = TINY_IMP + ["--runs-dir", "{new}"]
ON_FINISHED = TINY_IMP[:-3] + ["--levels", "1", "--quiet", "--runs-dir", "{finished}"]  # the fixture's own run
IMAGES = ["--dataset", "synthetic-images", "--train-subset", "200", "--steps", "20it", "--batch-size", "20",
          "--eval-every", "20it", "--quiet", "--runs-dir", "{new}"]
GPU = torch.cuda.is_available()


def case(command, *args, words=(), skip=False):
    shown = list(args)
    for prefix in (TRAIN, IMP, ON_FINISHED, IMAGES):  # the id names what the case changes
        if shown[:len(prefix)] == prefix:
            shown = (["{finished}"] if prefix is ON_FINISHED else []) + shown[len(prefix):]
            break
    return pytest.param([command, *args], list(words), id=" ".join([command, *shown])[:80],
                        marks=pytest.mark.skipif(skip, reason="this machine has the resource the case lacks"))


TABLE = [
    # -- train: every number finite and in range, lengths positive and bounded, checked before writing
    case("train", *TRAIN, "--lr", "nan", words=["--lr", "nan"]),
    case("train", *TRAIN, "--lr", "inf", words=["--lr", "inf"]),
    case("train", *TRAIN, "--lr", "0", words=["--lr"]),
    case("train", *TRAIN, "--weight-decay", "nan", words=["--weight-decay"]),
    case("train", *TRAIN, "--weight-decay=-0.1", words=["--weight-decay"]),
    case("train", *TRAIN, "--momentum=-1", words=["--momentum", "[0, 1)"]),
    case("train", *TRAIN, "--momentum", "1", words=["--momentum"]),
    case("train", *TRAIN, "--momentum", "nan", words=["--momentum"]),
    case("train", *TRAIN, "--gamma=-1", words=["--gamma"]),
    case("train", *TRAIN, "--gamma", "inf", words=["--gamma"]),
    case("train", *TRAIN, "--steps", "0it", words=["--steps", "zero"]),
    case("train", *TRAIN, "--steps", "0ep", words=["--steps", "zero"]),
    case("train", *TRAIN, "--steps", "100000001it", words=["--steps", "100,000,000"]),
    case("train", *TRAIN, "--steps", "10000000ep", words=["--steps", "100,000,000"]),  # 1.9e8 iterations on 600 examples
    case("train", *TRAIN, "--eval-every", "0it", words=["--eval-every"]),
    case("train", *TRAIN, "--eval-every", "0ep", words=["--eval-every"]),
    case("train", *TRAIN, "--batch-size", "601", words=["--batch-size", "600"]),
    case("train", *TRAIN, "--batch-size", "0", words=["--batch-size"]),
    case("train", *TRAIN, "--device", "cuda", words=["--device", "cpu"], skip=GPU),
    case("train", *TRAIN, "--device", "cuda:99", words=["--device"]),
    case("train", *TRAIN, "--device", "foo", words=["--device", "foo"]),
    case("train", *TRAIN, "--seed=-1", words=["--seed"]),
    case("train", *TRAIN, "--train-subset=-5", words=["--train-subset"]),
    case("train", *TRAIN, "--test-subset=-1", words=["--test-subset"]),
    case("train", *TRAIN, "--val-size=-1", words=["--val-size"]),
    case("train", *IMAGES, "--pad", "100000", words=["--pad"]),  # terabytes of padding
    case("train", *IMAGES, "--resize", "100000", words=["--resize"]),
    case("train", *TRAIN, "--nesterov", words=["--nesterov", "--momentum"]),
    case("train", *TRAIN, "--optimizer", "adam", "--nesterov", "--momentum", "0.9", words=["--nesterov"]),
    case("train", *TRAIN, "--augment", "flip-crop", words=["flip-crop"]),
    case("train", *TRAIN, "--milestones", "10it,soon", words=["milestone", "soon"]),
    case("train", *TRAIN, "--lr", "1e-3", "--steps", "60it", "--warmup", "3 it s", words=["warmup"]),
    case("train", *TRAIN, "--steps", "40", words=["--steps", "40ep", "40it"]),
    case("imp", *IMP, "--rewind-step", "5", words=["--rewind-step", "5ep", "5it"]),
    case("train", *TINY, "--runs-dir", "{file}", words=["is a file"]),
    case("train", *TINY, "--runs-dir", "{file}/runs", words=["is a file"]),
    case("train", *TINY, "--runs-dir", "", words=["empty"]),
    case("train", *TINY, "--runs-dir", "{tmp}/" + "n" * 300 + "/runs", words=["too long"]),
    # -- imp and demo: pruning levels keep weights, the rewind point lies inside training
    case("imp", *IMP, "--levels", "1000000", words=["--levels", "1000"]),
    case("imp", *IMP, "--levels", "40", words=["level", "fewer --levels"]),
    case("imp", *IMP, "--levels", "40", "--strategy", "layerwise", words=["level"]),
    case("imp", *IMP, "--levels", "8", "--output-prune-fraction", "0.9", words=["classifier.weight"]),
    case("imp", *IMP, "--schedule", "0.5,1e-12", words=["--schedule", "1e-12"]),
    case("imp", *IMP, "--schedule", "0.5,0.49999", words=["level 2"]),
    case("imp", *IMP, "--schedule", ",".join(f"{0.999 ** i:.6f}" for i in range(1, 1101)), words=["limit"]),
    case("imp", *IMP, "--prune-fraction", "nan", words=["--prune-fraction", "nan"]),
    case("imp", *IMP, "--output-prune-fraction", "inf", words=["--output-prune-fraction"]),
    case("imp", *IMP, "--conv-prune-fraction", "1", words=["--conv-prune-fraction"]),
    case("imp", *IMP, "--rewind-step", "100it", words=["--rewind-step", "60"]),
    case("imp", *IMP, "--rewind-step", "60it", words=["--rewind-step"]),
    case("imp", *IMP, "--rewind-step", "4ep", words=["--rewind-step", "76"]),  # 19 iterations per epoch
    case("imp", *IMP, "--rewind-step", "100000001it", words=["--rewind-step", "100,000,000"]),
    case("imp", *IMP, "--seeds", "", words=["seed"]),
    case("imp", *IMP, "--seeds", "0,0", words=["distinct"]),
    case("imp", *IMP, "--seeds=-1", words=["seed"]),
    case("imp", *IMP, "--workers", "0", words=["--workers"]),
    case("imp", *IMP, "--workers=-2", words=["--workers"]),
    case("imp", *ON_FINISHED, "--workers", "0", words=["--workers"]),
    case("imp", *ON_FINISHED, "--seeds", "0,", "--lr", "nan", words=["--lr"]),
    case("imp", *ON_FINISHED, "--seeds", "", words=["seed"]),
    case("demo", *IMP, "--levels", "1", "--weight-decay", "nan", words=["--weight-decay"]),
    # -- prune, cts, pai, sanity: densities keep a weight, requests fit the method, all before open_run
    case("prune", *TRAIN, "--method", "snip", "--density", "1e-9", words=["--density", "keeps 0"]),
    case("prune", *TRAIN, "--method", "snip", "--density", "nan", words=["--density"]),
    case("prune", *TRAIN, "--method", "snip", "--density", "0", words=["--density"]),
    case("prune", *TRAIN, "--method", "snip", "--min-per-layer", "100000", words=["min"]),
    case("prune", *TRAIN, "--method", "snip", "--iterations", "5", words=["single-shot"]),
    case("prune", *TRAIN, "--method", "synflow", "--iterations", "100000000", words=["--iterations"]),
    case("prune", *TRAIN, "--method", "snip", "--score-batches", "0", words=["--score-batches"]),
    case("prune", *TRAIN, "--method", "snip", "--rewind-step", "100it", words=["--rewind-step"]),
    case("prune", *TRAIN, "--method", "snip", "--batch-size", "601", words=["--batch-size", "600"]),
    case("prune", *TRAIN, "--method", "bogus", words=["bogus"]),
    case("cts", *TRAIN, "--search-steps", "nan%", words=["--search-steps"]),
    case("cts", *TRAIN, "--search-steps", "0.0001%", words=["--search-steps"]),
    case("cts", *TRAIN, "--search-steps", "0it", words=["--search-steps"]),
    case("cts", *TRAIN, "--temperature", "nan", words=["temperature"]),
    case("cts", *TRAIN, "--density", "1e-9", words=["--density", "keeps 0"]),
    case("pai", *TRAIN, "--methods", "snip", "--densities", "0.1,0.1", words=["twice"]),
    case("pai", *TRAIN, "--methods", "snip", "--densities", "", words=["density"]),
    case("pai", *TRAIN, "--methods", "", "--densities", "0.1", words=["method"]),
    case("pai", *TRAIN, "--methods", "snip", "--densities", "0.1,1e-9", words=["--densities", "keeps 0"]),
    case("pai", *TRAIN, "--methods", "snip,bogus", "--densities", "0.1", words=["bogus"]),
    case("pai", *TRAIN, "--methods", "snip", "--densities", "0.1", "--workers", "0", words=["--workers"]),
    case("sanity", *TRAIN, "--method", "snip", "--imp-schedule", "0.5", words=["--imp-schedule"]),
    case("sanity", *TRAIN, "--method", "imp", "--density", "1e-9", words=["level"]),
    case("sanity", *TRAIN, "--method", "snip", "--seeds", "0,0", words=["distinct"]),
    # -- layers, filters, supertickets, transfer
    case("layers", *IMAGES, "--model", "resnet8", "--power-watts", "nan", words=["--power-watts"]),
    case("layers", *IMAGES, "--model", "resnet8", "--remove=-1", words=["--remove"]),
    case("layers", *IMAGES, "--model", "resnet8", "--min-per-stage", "0", words=["--min-per-stage"]),
    case("layers", *IMAGES, "--model", "resnet8", "--batch-size", "201", words=["--batch-size", "200"]),
    case("filters", "--match-ticket", "{ticket}", "--power-watts", "0", words=["--power-watts"]),
    case("supertickets", *IMAGES, "--rho", "nan", words=["--rho"]),
    case("supertickets", *IMAGES, "--density", "0", words=["--density"]),
    case("supertickets", *IMAGES, "--gamma-threshold=-1", words=["--gamma-threshold"]),
    case("supertickets", *IMAGES, "--retrain", "100000001it", words=["--retrain"]),
    case("transfer", "{ticket}", *IMAGES, "--lr", "nan", words=["--lr"]),
    # -- train-ticket and stability
    case("train-ticket", "{ticket}", "--momentum", "inf", "--runs-dir", "{new}", words=["--momentum"]),
    case("stability", "{ticket}", "--points", "1000000000", "--runs-dir", "{new}", words=["--points"]),
    case("stability", "{ticket}", "--rewind-step", "1ep1", "--runs-dir", "{new}", words=["rewind-step"]),
    case("stability", "{ticket}", "--seed=-4", "--runs-dir", "{new}", words=["--seed"]),
    # -- files that are folders, empty, of another kind, or crafted
    case("show", "{dir}", words=["not a file"]),
    case("show", "{empty}", words=["empty"]),
    case("show", "{compact}", words=["not a ticketlab ticket"]),
    case("export", "{ticket}", "--format", "compact", "--out", "{dir}", words=["is a folder"]),
    case("export", "{ticket}", "--format", "dense", "--out", "{ticket}", words=["the ticket itself"]),
    case("export", "{ticket}", "--format", "dense", "--out", "{file}/x.dense", words=["is a file"]),
    case("export", "{dir}", "--format", "dense", "--out", "{tmp}/x.dense", words=["not a file"]),
    case("infer", "{torchscript}", "--dataset", "synthetic", words=["--torchscript", "runs code"]),
    case("infer", "{empty}", "--dataset", "synthetic", words=["--torchscript"]),
    case("infer", "{compact_list}", words=["compact", "list"]),
    case("infer", "{compact_shapes}", words=["mask_shapes"]),
    case("infer", "{compact_no_checksum}", words=["checksum"]),
    case("infer", "{dense_not_json}", "--dataset", "synthetic", words=["not JSON"]),
    case("infer", "{dense_list}", "--dataset", "synthetic", words=["list"]),
    case("infer", "{dense_no_architecture}", "--dataset", "synthetic", words=["architecture"]),
    case("infer", "{dir}", words=["folder"]),
    case("infer", "{ticket}", "--test-subset=-1", words=["--test-subset"]),
    case("infer", "{ticket}", "--batch-size", "0", words=["--batch-size"]),
    case("verify", "{torchscript}", "--key", "{key}", "--claim", "{claim}", "--blackbox", words=["--torchscript"]),
    case("verify", "{ticket}", "--key", "{key}", "--claim", "{claim}", "--torchscript", words=["--blackbox"]),
    case("verify", "{ticket}", "--key", "{key}", "--claim", "{claim_architecture}", words=["architecture"]),
    case("verify", "{ticket}", "--key", "{key}", "--claim", "{claim_carriers}", words=["carriers"]),
    case("verify", "{ticket}", "--key", "{key}", "--claim", "{claim_ticket_id}", words=["ticket_id"]),
    case("verify", "{ticket}", "--key", "{key}", "--claim", "{claim_triggers}", "--blackbox", words=["triggers"]),
    case("verify", "{ticket}", "--key", "{key}", "--claim", "{claim_bits}", words=["bits"]),
    case("verify", "{ticket}", "--key", "{key}", "--claim", "{not_utf8}", words=["not JSON"]),
    case("verify", "{ticket}", "--key", "{dir}", "--claim", "{claim}", words=["folder"]),
    case("verify", "{ticket}", "--key", "{empty}", "--claim", "{claim}", words=["0 bytes"]),
    case("sign", "{ticket}", "--key", "{key}", "--out", "{dir}", words=["--out", "folder"]),
    case("sign", "{ticket}", "--key", "{key}", "--out", "{tmp}/s.safetensors", "--claim", "{dir}", words=["--claim"]),
    case("sign", "{ticket}", "--key", "{key}", "--out", "{tmp}/s.safetensors", "--triggers-per-batch", "0",
         words=["--triggers-per-batch"]),
    case("sign", "{ticket}", "--key", "{key}", "--out", "{tmp}/s.safetensors", "--record", "{dir}", words=["--record"]),
    case("sign", "{ticket}", "--key", "{key}", "--out", "{tmp}/s.safetensors", "--anchored-at", "yesterday",
         words=["--anchored-at", "ISO 8601"]),
    case("sign", "{ticket}", "--key", "{key}", "--out", "{tmp}/s.safetensors", "--anchored-at", "2026-01-31T12:00:00",
         words=["--anchored-at"]),
    case("sign", "{ticket}", "--key", "{key}", "--out", "{tmp}/s.safetensors", "--bits", "64", words=["--bits"]),
    case("verify", "{ticket}", "--key", "{key}", words=["--claim"]),
    case("register", "{ticket}", "--claim", "{claim}", "--key", "{key}", "--out", "{dir}", words=["folder"]),
    case("register", "{ticket}", "--claim", "{claim}", "--key", "{key}", "--anchor", "a\nb", words=["--anchor"]),
    case("dispute", "--a-model", "{ticket}", "--a-record", "{tmp}/none.json", "--a-claim", "{claim}", "--a-key", "{key}",
         "--b-model", "{ticket}", "--b-record", "{tmp}/none.json", "--b-claim", "{claim}", "--b-key", "{key}",
         words=["none.json"]),
    case("sign", "{ticket}", "--key", "{key}", "--out", "{tmp}/s.safetensors", "--lr", "nan", words=["--lr"]),
    case("attack", "{ticket}", "--kind", "forge", "--strength", "nan", "--out", "{tmp}/a.safetensors", words=["--strength"]),
    case("attack", "{ticket}", "--kind", "finetune", "--strength", "inf", "--out", "{tmp}/a.safetensors",
         words=["--strength"]),
    case("attack", "{ticket}", "--kind", "densify", "--scale", "nan", "--out", "{tmp}/a.safetensors", words=["--scale"]),
    case("attack", "{ticket}", "--kind", "densify", "--out", "{dir}", words=["folder"]),
    case("attack", "{ticket}", "--kind", "finetune", "--batch-size", "100000", "--out", "{tmp}/a.safetensors",
         words=["--batch-size", "600"]),
    case("attack", "{ticket}", "--kind", "permute", "--seed=-3", "--out", "{tmp}/a.safetensors", words=["--seed"]),
    case("keygen", "--out", "{dir}", words=["folder"]),
    case("keygen", "--out", "{file}/owner.key", words=["is a file"]),
    # -- mismatches
    case("robustness", "{ticket}", "--dense", "{image_ticket}", words=["inputs"]),
    case("robustness", "{ticket}", "{image_ticket}", "--dense", "{ticket}", words=["different data"]),
    case("robustness", "{ticket}", "--dense", "{ticket}", "--seed=-1", words=["--seed"]),
    # -- profile, report, control, frontier, sweep
    case("profile", "{ticket}", "--batch-sizes", "100000000", words=["--batch-sizes"]),
    case("profile", "{ticket}", "--batch-sizes", "1,1", words=["--batch-sizes"]),
    case("profile", "{ticket}", "--repeats", "1000000000", words=["--repeats"]),
    case("report", "{run}", "--out", "{file}", words=["--out", "not a folder"]),
    case("report", "{bad_run}", "--out", "{tmp}/report", words=["config.json", "JSON"]),
    case("control", "{run}", "--kind", "random-reinit", "--seeds", "", words=["seed"]),
    case("control", "{run}/seed-x", "--kind", "random-reinit", words=["seed"]),
    case("control", "{bad_run}", "--kind", "random-reinit", words=["config.json"]),
    case("control", "{run}", "--kind", "random-reinit", "--levels", "1-0", words=["1-0"]),
    case("control", "{run}", "--kind", "random-reinit", "--levels", "0-99999999999999", words=["not finished"]),
    case("report", "{run}", "--out", "{tmp}/report", "--curves", "", words=["level"]),
    case("frontier", "{run}", "--out", "{file}", words=["--out"]),
    case("frontier", "{bad_run}", "--out", "{tmp}/frontier", words=["summary.json"]),
    case("sweep", "{not_utf8}", "--runs-dir", "{new}", words=["UTF-8"]),
    case("sweep", "{huge_grid}", "--runs-dir", "{new}", words=["limit"]),
    case("sweep", "{table_grid}", "--runs-dir", "{new}", words=["grid.lr"]),
    case("sweep", "{typo_grid}", "--runs-dir", "{new}", words=["lion"]),
    case("sweep", "{dir}", "--runs-dir", "{new}", words=["folder"]),
    case("sweep", "{typo_grid}", "--workers", "0", "--runs-dir", "{new}", words=["--workers"]),
]


def tree(*folders: Path) -> dict[str, str]:
    """Every path under the folders, with a hash of each file's bytes (folders marked as such)."""
    listing = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            listing[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"
    return listing


def crafted_safetensors(source: Path, out: Path, key: str, change) -> Path:
    """A copy of `source` with its JSON metadata under `key` replaced by change(metadata) (a string)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    with safe_open(str(source), "pt") as f:
        meta = json.loads(f.metadata()[key])
    save_file(load_file(str(source)), str(out), {key: change(meta)})
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory, ticket_path):
    """The files the table's cases name: the fixture's ticket and finished run, exports, crafted files."""
    from ticketlab.cli import main
    from ticketlab.mask import Mask
    from ticketlab.models import create_model
    root = tmp_path_factory.mktemp("world")
    files = {"ticket": ticket_path, "finished": ticket_path.parents[3], "run": ticket_path.parents[2]}
    for fmt, name in (("compact", "e.compact"), ("dense", "e.dense"), ("torchscript", "e.pt")):
        assert main(["export", str(ticket_path), "--format", fmt, "--out", str(root / name)]) == 0
    files["compact"], files["torchscript"] = root / "e.compact", root / "e.pt"

    def without(key):
        return lambda meta: json.dumps({k: v for k, v in meta.items() if k != key})
    files["compact_list"] = crafted_safetensors(root / "e.compact", root / "list.compact", "ticketlab-compact",
                                                lambda meta: "[1, 2]")
    files["compact_shapes"] = crafted_safetensors(root / "e.compact", root / "shapes.compact", "ticketlab-compact",
                                                  lambda meta: json.dumps({**meta, "mask_shapes": {"a": "b"}}))
    files["compact_no_checksum"] = crafted_safetensors(root / "e.compact", root / "sum.compact", "ticketlab-compact",
                                                       without("checksum"))
    files["dense_not_json"] = crafted_safetensors(root / "e.dense", root / "text.dense", "ticketlab-export",
                                                  lambda meta: "{architecture: mlp")
    files["dense_list"] = crafted_safetensors(root / "e.dense", root / "list.dense", "ticketlab-export", lambda meta: "[]")
    files["dense_no_architecture"] = crafted_safetensors(root / "e.dense", root / "arch.dense", "ticketlab-export",
                                                         lambda meta: json.dumps({**meta, "architecture": "mlp"}))
    assert main(["keygen", "--out", str(root / "owner.key")]) == 0
    files["key"] = root / "owner.key"
    claim = {"format": "ticketlab-ownership-claim", "version": 1, "ticket_id": "ab" * 32, "timestamp": "2024-01-01",
             "commitment": "00", "bits": 64, "triggers": 10, "significance": 1e-6,
             "architecture": {"name": "mlp_32_16", "input_shape": [20], "num_classes": 10},
             "carriers": [{"layer": "hidden.0.weight", "kind": "linear", "positions": [0, 1], "alive_units": 3,
                           "alive_weights": 9}], "reference": {"data": "", "sha256": ""}}
    files["claim"] = root / "claim.json"
    files["claim"].write_text(json.dumps(claim))
    for field, value in [("architecture", "mlp_32_16"), ("carriers", [{"layer": 3}]), ("ticket_id", "../../x"),
                         ("triggers", 10 ** 12), ("bits", "all")]:
        files[f"claim_{field}"] = root / f"claim-{field}.json"
        files[f"claim_{field}"].write_text(json.dumps({**claim, field: value}))
    files["dir"] = root / "a-folder"
    files["dir"].mkdir()
    files["file"] = root / "a-file"
    files["file"].write_text("not a folder")
    files["empty"] = root / "empty.safetensors"
    files["empty"].write_bytes(b"")
    files["not_utf8"] = root / "latin1.toml"
    files["not_utf8"].write_bytes('command = "train"\n# caf\xe9\n'.encode("latin-1"))
    files["huge_grid"] = root / "huge.toml"
    files["huge_grid"].write_text('command = "train"\n[grid]\n' + "".join(f"o{i} = {list(range(100))}\n" for i in range(8)))
    files["table_grid"] = root / "table.toml"
    files["table_grid"].write_text('command = "train"\n[grid]\nlr = [{ value = 0.1 }]\n')
    files["typo_grid"] = root / "typo.toml"  # the second point's optimizer does not exist
    files["typo_grid"].write_text('command = "train"\n[fixed]\ndataset = "synthetic"\ntrain_subset = 600\n'
                                  'model = "mlp_32_16"\nsteps = "20it"\n[grid]\noptimizer = ["sgd", "lion"]\n')
    files["bad_run"] = root / "run-damaged"
    files["bad_run"].mkdir()
    (files["bad_run"] / "config.json").write_bytes(b"\x00{not json")
    (files["bad_run"] / "summary.json").write_bytes(b"\x00{not json")
    model = create_model("conv2", (3, 8, 8), 10, seed=0)
    provenance = load_ticket(ticket_path).provenance.replace(data_config=DataConfig(dataset="synthetic-images"),
                                                             dataset="synthetic-images")
    files["image_ticket"] = root / "conv2.safetensors"
    Ticket(model.architecture, Mask.ones(model), model.state_dict(), None, provenance).save(files["image_ticket"])
    return root, files


@pytest.mark.parametrize("args, words", TABLE)
def test_bad_input_table(cli, tmp_path, world, args, words):
    root, files = world
    names = {**{k: str(v) for k, v in files.items()}, "tmp": str(tmp_path), "new": str(tmp_path / "runs")}
    args = [a.format(**names) for a in args]
    before = tree(root, files["finished"], tmp_path)
    res = cli(*args)
    assert_clean_error(res, *words)
    assert tree(root, files["finished"], tmp_path) == before
    assert not (tmp_path / "runs").exists()


# ---- what the table cannot show: OS-level failures, output formats, warnings --------------------

def test_disk_full_is_one_line_naming_the_file(cli, tmp_path, monkeypatch):
    import errno
    import os

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full)
    res = cli("train", *TRAIN[:-1], tmp_path / "runs")
    # The disk fills once the work has started, after the command announced its recipe.
    res.err = "".join(line for line in res.err.splitlines(keepends=True) if not line.startswith("recipe: "))
    assert_clean_error(res, str(tmp_path / "runs"), "No space left", "disk is full")
    written = [p for p in (tmp_path / "runs").rglob("*") if p.is_file() and p.name != ".lock"]
    assert not written  # no file, not even a temp file (the run's lock file aside)


def test_a_runs_directory_that_cannot_be_written_is_refused_up_front(cli, tmp_path):
    import os
    runs = tmp_path / "read-only"
    runs.mkdir()
    runs.chmod(0o555)
    if os.access(runs, os.W_OK):  # root writes anywhere: use a read-only file system instead
        runs = Path("/proc/sys/ticketlab-runs")
        if os.access(runs.parent, os.W_OK):
            pytest.skip("no read-only folder available to this user")
    res = cli("train", *TRAIN[:-1], runs / "runs")
    assert_clean_error(res, "not writable")


def test_a_closed_pipe_ends_quietly(ticket_path):
    """`ticketlab show --json | head -c 10`: the reader goes away; no traceback, exit 1 as Python advises."""
    import os
    import subprocess
    import sys
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    done = subprocess.run([sys.executable, "-m", "ticketlab", "show", str(ticket_path), "--json"], stdout=write,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert done.returncode == 1 and done.stderr == "", done.stderr


def test_json_output_is_strict_json(cli, tmp_path):
    """A diverged training has NaN losses; --json prints null for them (bare NaN is not JSON)."""
    res = cli("train", *TRAIN[:-1], tmp_path / "runs", "--lr", "1e30", "--steps", "20it", "--json")
    assert res.code == 0, res.err

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    result = json.loads(res.out, parse_constant=refuse)
    assert result["summary"]["final_train_loss"] is None


def test_keys_are_private_and_a_readable_key_gets_a_warning(cli, tmp_path, capsys):
    import os
    from ticketlab.ownership.keys import read_key
    assert cli("keygen", "--out", tmp_path / "owner.key").code == 0
    assert (tmp_path / "owner.key").stat().st_mode & 0o777 == 0o600
    key = read_key(tmp_path / "owner.key")
    assert capsys.readouterr().err == ""
    os.chmod(tmp_path / "owner.key", 0o644)
    assert read_key(tmp_path / "owner.key") == key  # used, with one line saying so
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "warning" in warning[0] and "chmod 600" in warning[0]


def test_torchscript_loads_only_when_asked(cli, world):
    _, files = world
    res = cli("infer", files["torchscript"], "--dataset", "synthetic", "--json")
    assert_clean_error(res, "--torchscript")
    res = cli("infer", files["torchscript"], "--dataset", "synthetic", "--torchscript", "--json")
    assert res.code == 0 and res.json()["kind"] == "torchscript"
    assert "runs code" in cli("infer", "--help").out


def test_a_finished_run_is_left_exactly_as_it_was(cli, world):
    """The same command as the finished fixture run prints its result; with a mistake it changes nothing."""
    _, files = world
    command = ["imp", *(a.format(finished=files["finished"]) for a in ON_FINISHED)]
    before = tree(files["finished"])
    assert cli(*command, "--json").code == 0  # finished: printed from disk (nothing recomputed)
    for mistake in (["--workers", "0"], ["--seeds", ""], ["--momentum", "nan"], ["--rewind-step", "1000it"]):
        assert_clean_error(cli(*command, *mistake))
    assert tree(files["finished"]) == before
