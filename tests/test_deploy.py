"""Deployment: compact files, exports equivalent to the masked ticket, CSR inference, FLOPs and profiles."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from ticketlab.config import DataConfig, TrainConfig
from ticketlab.data import Dataset, load_dataset
from ticketlab.data.idx_sets import load_fashion_mnist
from ticketlab.data.roots import resolve_data_root
from ticketlab.deploy.compact import load_compact
from ticketlab.deploy.export import export_ticket, load_exported, ticket_model
from ticketlab.deploy.flops import count
from ticketlab.deploy.infer import run_inference
from ticketlab.deploy.sparse import CsrLinear, sparsify
from ticketlab.mask import Mask
from ticketlab.models import create_model
from ticketlab.provenance import Provenance
from ticketlab.pruning import magnitude_prune
from ticketlab.runtime import load_data_config
from ticketlab.ticket import Ticket, load_ticket
from ticketlab.trainer import train


def random_ticket(path: Path, name: str, input_shape, density: float, seed: int = 0, dataset: str = "synthetic") -> Path:
    """A ticket with random trained weights, a random mask, non-trivial BatchNorm statistics and biases."""
    generator = torch.Generator().manual_seed(seed)
    model = create_model(name, input_shape, 10, seed=seed)
    mask = Mask({n: torch.rand(p.shape, generator=generator) < density for n, p in model.named_parameters()
                 if n in model.prunable_names})
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n not in model.prunable_names:  # biases and BatchNorm affine terms away from 0 and 1
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5 + (1.0 if n.endswith("weight") else 0.0))
        for n, b in model.named_buffers():
            if n.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=generator) * 0.1)
            elif n.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=generator) + 0.5)
    mask.apply_(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    provenance = Provenance(method="test", dataset=dataset, data_config=DataConfig(dataset=dataset, train_subset=600))
    Ticket(model.architecture, mask, state, {k: v.clone() for k, v in state.items()}, provenance).save(path)
    return path


@pytest.fixture
def mlp_ticket(tmp_path):
    return random_ticket(tmp_path / "mlp.safetensors", "mlp_64_32", (20,), 0.1)


def outputs(run, x):
    with torch.no_grad():
        return run(x)


def test_compact_round_trip_is_lossless_and_small(mlp_ticket, tmp_path, one_thread):
    ticket = load_ticket(mlp_ticket)
    out = tmp_path / "t.compact"
    export_ticket(mlp_ticket, "compact", out)
    model, mask, meta = load_compact(out)
    assert mask.equals(ticket.mask)
    for k, v in ticket.trained_state.items():
        assert torch.equal(model.state_dict()[k], v), k
    assert out.stat().st_size < 0.25 * mlp_ticket.stat().st_size
    half = tmp_path / "t-half.compact"
    export_ticket(mlp_ticket, "compact", half, half=True)
    model16, _, _ = load_compact(half)
    assert half.stat().st_size < out.stat().st_size
    for k in mask.names():  # float16 rounding of the live values only
        assert torch.allclose(model16.state_dict()[k], ticket.trained_state[k], rtol=1e-3, atol=1e-4)


def test_a_damaged_compact_file_is_refused_naming_it(mlp_ticket, tmp_path, cli):
    out = tmp_path / "t.compact"
    export_ticket(mlp_ticket, "compact", out)
    data = bytearray(out.read_bytes())
    data[-5] ^= 0xFF
    out.write_bytes(bytes(data))
    res = cli("infer", out)
    assert res.code == 2 and str(out) in res.err and "damaged" in res.err


@pytest.mark.parametrize("name,shape", [("mlp_64_32", (20,)), ("conv2", (3, 8, 8)), ("resnet8", (3, 8, 8))])
@pytest.mark.parametrize("fmt", ["dense", "torchscript", "onnx"])
def test_every_export_computes_the_masked_ticket(tmp_path, one_thread, name, shape, fmt):
    dataset = "synthetic" if len(shape) == 1 else "synthetic-images"
    ticket_path = random_ticket(tmp_path / "t.safetensors", name, shape, 0.05, seed=3, dataset=dataset)
    reference = ticket_model(load_ticket(ticket_path))
    out = tmp_path / f"export.{fmt}"
    written = export_ticket(ticket_path, fmt, out)
    loaded = load_exported(out, torchscript=fmt == "torchscript")
    # The export takes raw inputs and standardizes them with its training data's statistics itself.
    mean, std = load_dataset("synthetic" if len(shape) == 1 else "synthetic-images", train_subset=600).normalization
    assert written["inputs"] == "raw" and loaded.meta["info"]["dataset"] == dataset
    assert torch.equal(loaded.normalization[0], mean) and torch.equal(loaded.normalization[1], std)
    x = torch.randn(7, *shape)
    expected = outputs(reference, x)
    got = outputs(loaded.run, x * std + mean)
    assert torch.allclose(got, expected, atol=1e-4 * (1 + expected.abs().max())), (got - expected).abs().max()
    dense_params = sum(p.numel() for p in reference.parameters())
    assert written["parameters"] < dense_params  # the shrunk network really is smaller


def test_export_rejects_bad_requests_without_writing(mlp_ticket, tmp_path, cli):
    bad = cli("export", mlp_ticket, "--format", "dense", "--half", "--out", tmp_path / "x")
    assert bad.code == 2 and "--half applies to the compact format" in bad.err and not (tmp_path / "x").exists()
    bad = cli("export", tmp_path / "missing.safetensors", "--format", "compact", "--out", tmp_path / "y")
    assert bad.code == 2 and "does not exist" in bad.err and not (tmp_path / "y").exists()
    bad = cli("export", mlp_ticket, "--format", "zip", "--out", tmp_path / "z")
    assert bad.code == 2 and "invalid choice" in bad.err
    untrained = tmp_path / "untrained.safetensors"
    ticket = load_ticket(mlp_ticket)
    Ticket(ticket.architecture, ticket.mask, ticket.init_state, None, ticket.provenance).save(untrained)
    bad = cli("export", untrained, "--format", "compact", "--weights", "trained", "--out", tmp_path / "w")
    assert bad.code == 2 and "no trained weights" in bad.err and not (tmp_path / "w").exists()


def test_csr_linear_computes_the_dense_layer(one_thread):
    layer = nn.Linear(50, 30)
    with torch.no_grad():
        layer.weight.mul_(torch.rand(30, 50) < 0.1)
    x = torch.randn(9, 50)
    assert torch.allclose(CsrLinear(layer)(x), layer(x), atol=1e-5)
    assert torch.allclose(CsrLinear(layer)(x.t().contiguous().t()), layer(x), atol=1e-5)  # a transposed view as input
    model = nn.Sequential(nn.Linear(50, 30), nn.ReLU(), nn.Linear(30, 10))
    for forced in ("csr", "dense"):
        fast, paths = sparsify(model, batch_size=9, path=forced)
        assert all(p["path"] == forced for p in paths.values())
        assert isinstance(fast[0], CsrLinear if forced == "csr" else nn.Linear)
        assert torch.allclose(fast(x), model(x), atol=1e-5)
    _, measured = sparsify(model, batch_size=9, repeats=3)
    assert all(p["path"] in ("csr", "dense") and p["csr_us"] > 0 and p["dense_us"] > 0 for p in measured.values())


def test_flops_count_only_live_weights():
    model = create_model("conv2", (1, 8, 8), 10, seed=0)
    dense = count(model, (1, 8, 8))
    mask = Mask.ones(model)
    conv = next(n for n in mask.names() if mask[n].dim() == 4)
    mask.tensors[conv][0] = False  # kill the first output channel's kernel: 1·3·3 weights
    counted = count(model, (1, 8, 8), mask)
    # conv2's first conv keeps the 8x8 size (padding 1), so each weight works at 64 positions.
    assert dense["flops"] - counted["flops"] == 2 * mask[conv][0].numel() * 64
    assert counted["live_prunable"] == dense["live_prunable"] - mask[conv][0].numel()
    linear = nn.Sequential(nn.Linear(4, 3, bias=False))
    linear.prunable_names = ["0.weight"]
    assert count(linear, (4,))["flops"] == 2 * 12
    half = Mask({"0.weight": torch.tensor([[1, 0, 1, 0]] * 3, dtype=torch.bool)})
    assert count(linear, (4,), half)["flops"] == 2 * 6 and count(linear, (4,), half)["nonzero_parameters"] <= 6


def test_infer_runs_every_file_kind_to_the_same_accuracy(tmp_path, cli, one_thread):
    ticket = random_ticket(tmp_path / "t.safetensors", "mlp_64_32", (20,), 0.2)
    accuracies = {}
    for fmt in ("compact", "dense", "onnx"):
        export_ticket(ticket, fmt, tmp_path / f"e.{fmt}")
    for path in [ticket] + [tmp_path / f"e.{fmt}" for fmt in ("compact", "dense", "onnx")]:
        res = cli("infer", path, "--dataset", "synthetic", "--batch-size", "100", "--json")
        assert res.code == 0, res.err
        accuracies[path.name] = res.json()["test_accuracy"]
    onnx = accuracies.pop("e.onnx")
    assert len(set(accuracies.values())) == 1, accuracies
    # onnxruntime sums in another order: a random net's near-tied logits may flip an example or two.
    assert abs(onnx - accuracies[ticket.name]) <= 2 / 500
    forced = cli("infer", ticket, "--path", "csr", "--json").json()  # dataset from the ticket
    assert forced["test_accuracy"] == accuracies[ticket.name] and forced["examples"] == 500
    assert all(d["path"] == "csr" for d in forced["linear_paths"].values())
    wrong = cli("infer", ticket, "--dataset", "synthetic-images")
    assert wrong.code == 2 and "takes inputs of shape" in wrong.err


def test_profile_reports_sizes_flops_and_timings(tmp_path, cli, one_thread):
    ticket = random_ticket(tmp_path / "t.safetensors", "mlp_64_32", (20,), 0.05)
    res = cli("profile", ticket, "--batch-sizes", "1,8", "--repeats", "3", "--json")
    assert res.code == 0, res.err
    result = res.json()
    assert set(result["timings"]) == {"dense", "masked", "shrunk", "sparse"}
    for variant in result["timings"].values():
        assert set(variant) == {"1", "8"} and all(t["latency_ms"] > 0 and t["throughput_per_s"] > 0 for t in variant.values())
    counts = result["counts"]
    assert counts["masked"]["flops"] < counts["dense"]["flops"] and counts["shrunk"]["parameters"] < counts["dense"]["parameters"]
    sizes = result["file_sizes"]
    assert sizes["compact"] < sizes["dense original (safetensors)"] and sizes["compact fp16"] < sizes["compact"]
    assert all(isinstance(sizes[k], int) for k in ("dense", "torchscript", "onnx"))
    text = cli("profile", ticket, "--batch-sizes", "4", "--repeats", "2").out
    assert "sparse paths chosen" in text and "file sizes" in text
    bad = cli("profile", ticket, "--batch-sizes", "0")
    assert bad.code == 2 and "--batch-sizes" in bad.err
    assert math.isfinite(result["density"])


@pytest.mark.slow
@pytest.mark.skipif(not (Path("/usr/share/datasets/fashion-mnist") / "t10k-images-idx3-ubyte.gz").exists(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_exports_on_raw_test_images_score_the_tickets_accuracy(tmp_path, cli, one_thread):
    """A trained LeNet ticket's ONNX and TorchScript exports, fed the test images straight from the IDX
    file (pixels / 255, no standardization), score the ticket's own accuracy within 0.1 pp."""
    config = DataConfig(dataset="fashion-mnist", train_subset=3000, test_subset=2000)
    data = load_data_config(config)
    model = create_model("lenet_300_100", data.input_shape, data.num_classes, seed=0)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, data, TrainConfig(steps="150it", eval_every="150it"), out_dir=tmp_path / "run", data_seed=0, quiet=True)
    mask = magnitude_prune(Mask.ones(model), model.state_dict(), 0.8)
    mask.apply_(model)
    ticket = tmp_path / "lenet.safetensors"
    Ticket(model.architecture, mask, initial, model.state_dict(),
           Provenance(method="test", dataset="fashion-mnist", data_config=config)).save(ticket)
    ticket_accuracy = cli("infer", ticket, "--json").json()["test_accuracy"]
    assert ticket_accuracy > 0.6  # trained: a near-tie of a random network would not test much

    raw = load_fashion_mnist(resolve_data_root(None))
    images = torch.from_numpy(raw.test_x[:2000].astype("float32") / 255)
    labels = torch.from_numpy(raw.test_y[:2000].astype("int64"))
    assert torch.equal(labels, data.test_y)
    for fmt in ("onnx", "torchscript", "dense"):
        out = tmp_path / f"lenet.{fmt}"
        assert cli("export", ticket, "--format", fmt, "--out", out).code == 0
        loaded = load_exported(out, torchscript=True)
        accuracy = float((outputs(loaded.run, images).argmax(1) == labels).float().mean())
        assert abs(accuracy - ticket_accuracy) <= 0.001, (fmt, accuracy, ticket_accuracy)
        inferred = cli("infer", out, "--torchscript", "--json").json()
        assert inferred["inputs"] == "raw" and abs(inferred["test_accuracy"] - ticket_accuracy) <= 0.001
    # What the old exports did: the network alone on raw pixels scores far lower.
    bare = float((outputs(ticket_model(load_ticket(ticket)), images).argmax(1) == labels).float().mean())
    assert bare < ticket_accuracy - 0.02


def test_show_states_what_inputs_a_ticket_and_its_exports_take(mlp_ticket, cli):
    text = cli("show", mlp_ticket).out
    line = next(line for line in text.splitlines() if line.strip().startswith("inputs"))
    assert "(20,) standardized" in line and "raw inputs" in line


def test_an_export_whose_training_data_is_missing_says_where_to_point(mlp_ticket, tmp_path, cli):
    ticket = load_ticket(mlp_ticket)
    elsewhere = tmp_path / "elsewhere.safetensors"
    # Data held in memory by a process that has ended: nothing to read the statistics from.
    provenance = ticket.provenance.replace(data_config=DataConfig(dataset="memory-0123456789abcdef"))
    Ticket(ticket.architecture, ticket.mask, ticket.init_state, ticket.trained_state, provenance).save(elsewhere)
    res = cli("export", elsewhere, "--format", "dense", "--out", tmp_path / "d.safetensors")
    assert res.code == 2 and res.err.count("\n") == 1 and "--data-root" in res.err and "data=" in res.err
    assert not (tmp_path / "d.safetensors").exists()


def test_data_ticketlab_never_standardized_goes_into_an_export_as_it_is(mlp_ticket, tmp_path, one_thread):
    """A Dataset made directly (no normalization recorded): the export takes the inputs as the ticket does."""
    x, y = torch.randn(40, 20), torch.randint(0, 10, (40,))
    data = Dataset(name="given", train_x=x, train_y=y, val_x=x, val_y=y, test_x=x, test_y=y, num_classes=10,
                   augment="none")
    out = tmp_path / "given.dense.safetensors"
    export_ticket(mlp_ticket, "dense", out, data=data)
    loaded = load_exported(out)
    expected = outputs(ticket_model(load_ticket(mlp_ticket)), x)
    assert torch.allclose(outputs(loaded.run, x), expected, atol=1e-5)
    assert run_inference(str(out), data=data)["test_accuracy"] == run_inference(str(mlp_ticket), data=data)["test_accuracy"]
