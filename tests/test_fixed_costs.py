"""Fixed costs of a run: 8-bit pixels standardized per batch, the prepared-data cache, one load per run,
optimizers that import no torch._dynamo, the thread count; and the recipe options of open_lth and the
LTH paper (--init, --bias, --output-prune-fraction 0)."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from test_data import write_mnist_set
from ticketlab import machine, optim
from ticketlab.config import PruneConfig, TrainConfig
from ticketlab.data import load_dataset
from ticketlab.data import registry as data_registry
from ticketlab.data.cache import cache_dir
from ticketlab.data.prepare import channel_statistics, split_indices, to_float_tensor
from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask
from ticketlab.models import create_model, model_from_architecture
from ticketlab.pruning import magnitude_prune
from ticketlab.trainer import train


@pytest.fixture
def mnist_root(tmp_path, monkeypatch):
    monkeypatch.setenv("TICKETLAB_CACHE_DIR", str(tmp_path / "cache"))
    arrays = write_mnist_set(tmp_path / "data" / "mnist", num_train=300, num_test=60, gzipped=False)
    return tmp_path / "data", arrays


def load(root, **options):
    return load_dataset("mnist", data_root=root, val_size=50, **options)


def test_pixels_stay_8_bit_and_read_as_the_standardized_floats(mnist_root):
    root, arrays = mnist_root
    data = load(root)
    assert data.stored("train").dtype == torch.uint8 and data.stored("test").dtype == torch.uint8
    assert data.input_shape == (1, 28, 28)
    # What the whole split standardized as floats gives, computed here from the raw arrays.
    train_idx, _ = split_indices(300, 50, 0)
    expected = to_float_tensor(arrays["train_x"][train_idx][:, None])
    mean, std = channel_statistics(expected)
    expected.sub_(mean).div_(std)
    assert data.train_x.dtype == torch.float32 and torch.equal(data.train_x, expected)
    assert torch.equal(data.standardize(data.stored("train")[10:20]), expected[10:20])
    assert data.train_x is data.train_x  # made once, then kept
    padded = load(root, pad=2)  # padding works on the floats: pixels stay 8-bit only where the recipe allows
    assert padded.input_shape == (1, 32, 32) and padded.stored("train").dtype == torch.float32


def test_training_on_8_bit_pixels_matches_training_on_floats(mnist_root, tmp_path, one_thread):
    root, _ = mnist_root
    pixels = load(root)
    floats = dataclasses.replace(pixels, train_x=pixels.train_x, val_x=pixels.val_x, test_x=pixels.test_x)
    assert floats.stored("train").dtype == torch.float32
    cfg = TrainConfig(lr=0.05, batch_size=25, steps="2ep", eval_every="5it", threads=1)
    results = []
    for name, data in (("pixels", pixels), ("floats", floats)):
        model = create_model("mlp_32_16", data.input_shape, 10, seed=0)
        summary = train(model, data, cfg, out_dir=tmp_path / name, data_seed=3, quiet=True)
        results.append((summary, model.state_dict()))
    (summary_a, weights_a), (summary_b, weights_b) = results
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert summary_a["test_loss"] == summary_b["test_loss"]
    assert summary_a["machine"]["threads"] == 1 and summary_a["machine"]["cores"] >= 1


def test_prepared_data_is_cached_reused_and_rewritten_when_damaged(mnist_root, monkeypatch):
    root, _ = mnist_root
    first = load(root)
    files = list(cache_dir().glob("mnist-*.safetensors"))
    assert len(files) == 1
    # A second load reads the cache: the raw files are not parsed again.
    entry = data_registry.DATASETS["mnist"]

    def unreadable(_root):
        raise AssertionError("the raw files were read although the cache holds the data")

    monkeypatch.setitem(data_registry.DATASETS, "mnist", dataclasses.replace(entry, loader=unreadable))
    cached = load(root)
    assert torch.equal(cached.stored("train"), first.stored("train")) and torch.equal(cached.test_y, first.test_y)
    assert torch.equal(cached.train_x, first.train_x)
    # A damaged file (one byte of the pixels changed) is ignored and written again.
    monkeypatch.setitem(data_registry.DATASETS, "mnist", entry)
    content = bytearray(files[0].read_bytes())
    content[-100] ^= 0xFF
    files[0].write_bytes(bytes(content))
    again = load(root)
    assert torch.equal(again.stored("train"), first.stored("train"))
    assert files[0].read_bytes() != bytes(content)
    # Other options, or a changed source file, are another cache entry.
    load(root, train_subset=100)
    assert len(list(cache_dir().glob("mnist-*.safetensors"))) == 2
    source = next((root / "mnist").iterdir())
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    load(root)
    assert len(list(cache_dir().glob("mnist-*.safetensors"))) == 3


def test_a_cache_write_removes_what_killed_writers_left(mnist_root):
    root, _ = mnist_root
    cache_dir().mkdir(parents=True)
    dead_writer = 2**22 + 12345  # above the largest pid Linux allows: no such process
    leftover = cache_dir() / f".mnist-0123.safetensors.{dead_writer}.x1y2.tmp"
    leftover.write_bytes(b"half a file")
    load(root)
    assert not leftover.exists() and len(list(cache_dir().glob("mnist-*.safetensors"))) == 1


def test_a_run_loads_its_data_once_until_the_files_change(mnist_root):
    root, _ = mnist_root
    first = load_dataset("mnist", data_root=root, val_size=50, reuse=True)
    assert load_dataset("mnist", data_root=root, val_size=50, reuse=True) is first
    assert load_dataset("mnist", data_root=root, val_size=50) is not first  # only asked-for reuse
    source = next((root / "mnist").iterdir())
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    assert load_dataset("mnist", data_root=root, val_size=50, reuse=True) is not first


def test_an_unwritable_cache_folder_only_means_no_cache(mnist_root, tmp_path, monkeypatch):
    root, _ = mnist_root
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TICKETLAB_CACHE_DIR", str(blocker))
    assert load(root).stored("train").shape == (250, 1, 28, 28)


# ---- optimizers -----------------------------------------------------------------------------------

def steps_of(make_optimizer, steps=15):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))
    optimizer = make_optimizer(model.parameters())
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        x, y = torch.randn(8, 6, generator=generator), torch.randint(0, 3, (8,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * 0.95
        optimizer.step()
    return model, optimizer


@pytest.mark.parametrize("kind, options", [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("Adam", {"lr": 1e-2}),
    ("Adam", {"lr": 1e-2, "weight_decay": 1e-3}),
])
def test_optimizers_compute_torch_optims_updates_bit_for_bit(kind, options):
    ours, our_optimizer = steps_of(lambda p: getattr(optim, kind)(p, **options))
    theirs, their_optimizer = steps_of(lambda p: getattr(torch.optim, kind)(p, **options))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    mine, other = our_optimizer.state_dict(), their_optimizer.state_dict()
    assert mine["param_groups"] == other["param_groups"] and mine["state"].keys() == other["state"].keys()
    for index, state in other["state"].items():
        assert all(torch.equal(state[key], mine["state"][index][key]) for key in state)


def test_a_torch_optim_state_resumes_in_ours():
    model, theirs = steps_of(lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3))
    saved = theirs.state_dict()
    # What a checkpoint keeps: state tensors copied, param groups through JSON (betas become a list).
    saved = {"state": {i: {k: v.clone() for k, v in s.items()} for i, s in saved["state"].items()},
             "param_groups": json.loads(json.dumps(saved["param_groups"]))}
    twin = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
    ours = optim.Adam(twin, lr=0.5)
    ours.load_state_dict(saved)
    assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
    generator = torch.Generator().manual_seed(5)
    for _ in range(3):
        for a, b in zip(model.parameters(), twin):
            a.grad = torch.randn(a.shape, generator=generator)
            b.grad = a.grad.clone()
        theirs.step()
        ours.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin))
    with pytest.raises(ValueError, match="different number"):
        optim.Adam(twin[:1], lr=0.1).load_state_dict(saved)


def test_a_cpu_training_imports_no_torch_dynamo(tmp_path):
    code = ("import sys; from ticketlab.cli import main; "
            f"status = main(['imp', '--dataset', 'synthetic', '--train-subset', '200', '--model', 'mlp_32_16', "
            f"'--steps', '20it', '--eval-every', '10it', '--levels', '1', '--momentum', '0.9', '--runs-dir', "
            f"{str(tmp_path)!r}, '--quiet', '--threads', '1']); "
            "print('torch._dynamo' in sys.modules); raise SystemExit(status)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


# ---- threads ------------------------------------------------------------------------------------------

def test_default_threads_share_the_cores_and_back_off_on_a_busy_machine(monkeypatch):
    monkeypatch.setattr(machine, "cores", lambda: 16)
    monkeypatch.setattr(machine, "_SHARE", {})
    monkeypatch.setattr(machine, "load_average", lambda: [0.5, 0.5, 0.5])
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert machine.default_threads() == machine.MAX_DEFAULT_THREADS
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # set by the user: respected
    assert machine.default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert machine.threads_per_worker(8) == 2 and machine.threads_per_worker(64) == 1
    monkeypatch.setattr(machine, "load_average", lambda: [16.0, 9.0, 3.0])
    assert machine.default_threads() == 1
    before = torch.get_num_threads()
    with machine.torch_threads(3):
        assert torch.get_num_threads() == 3 and machine.describe()["threads"] == 3
    assert torch.get_num_threads() == before
    with pytest.raises(TicketlabError, match="--threads"):
        TrainConfig(threads=0)


# ---- recipe options ---------------------------------------------------------------------------------

def test_glorot_weights_and_uniform_biases_are_recorded_and_rebuilt():
    default = create_model("lenet_300_100", (1, 28, 28), 10, seed=4)
    glorot = create_model("lenet_300_100", (1, 28, 28), 10, seed=4, init={"weights": "glorot"})
    uniform = create_model("lenet_300_100", (1, 28, 28), 10, seed=4, init={"bias": "uniform"})
    assert "init" not in default.architecture  # tickets of default runs stay byte for byte the same
    assert glorot.architecture["init"] == {"weights": "glorot", "bias": "zero"}
    weight = dict(glorot.named_parameters())["hidden.0.weight"].detach()
    fan_out, fan_in = weight.shape
    assert float(weight.std()) == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.02)
    for name, value in uniform.state_dict().items():
        if name.endswith("bias"):
            fan_in = dict(uniform.named_parameters())[name.replace("bias", "weight")].shape[1]
            assert value.abs().max() <= 1 / math.sqrt(fan_in) and value.abs().min() > 0
        else:  # the bias choice draws nothing: the weights are the default ones
            assert torch.equal(value, default.state_dict()[name])
    rebuilt = model_from_architecture(uniform.architecture, seed=4)
    assert all(torch.equal(v, uniform.state_dict()[k]) for k, v in rebuilt.state_dict().items())
    with pytest.raises(TicketlabError, match="init"):
        create_model("lenet_300_100", (1, 28, 28), 10, init={"weights": "xavier"})


def test_output_prune_fraction_zero_never_prunes_the_output_layer():
    assert PruneConfig(output_prune_fraction=0).output_prune_fraction == 0
    with pytest.raises(TicketlabError, match="--prune-fraction"):
        PruneConfig(prune_fraction=0)
    model = create_model("lenet_300_100", (1, 28, 28), 10, seed=0)
    weights = {n: p.detach() for n, p in model.named_parameters()}
    mask = Mask.ones(model)
    for _ in range(3):
        mask = magnitude_prune(mask, weights, 0.2, output_name=model.output_name, output_fraction=0.0)
    assert bool(mask[model.output_name].all())
    others = [n for n in mask.names() if n != model.output_name]
    total = sum(mask[n].numel() for n in others)
    alive = total
    for _ in range(3):
        alive -= round(alive * 0.2)
    assert sum(int(mask[n].sum()) for n in others) == alive


def test_a_dataset_with_an_empty_split_is_read_back_from_the_cache(mnist_root, monkeypatch):
    # --val-size 0 leaves an empty validation split: the cache must still be read, not rewritten every run.
    root, _ = mnist_root
    first = load_dataset("mnist", data_root=root, val_size=0)
    assert len(first.val_y) == 0
    entry = data_registry.DATASETS["mnist"]

    def unreadable(_root):
        raise AssertionError("the raw files were read although the cache holds the data")

    monkeypatch.setitem(data_registry.DATASETS, "mnist", dataclasses.replace(entry, loader=unreadable))
    cached = load_dataset("mnist", data_root=root, val_size=0)
    assert len(cached.val_y) == 0 and torch.equal(cached.stored("train"), first.stored("train"))
