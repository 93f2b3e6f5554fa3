"""Networks of one's own through the library: IMP, SNIP, SynFlow and CTS-KL at exact densities, training
above chance, export and a ticket round trip, on a CNN with BatchNorm, a hand-written ResNet and a
Transformer encoder over Fashion-MNIST patches."""

import pytest
import torch

import ticketlab as tl
from own_models import BatchNormCNN, PatchTransformer, TinyResNet
from ticketlab.deploy.export import load_exported
from ticketlab.pai.selection import target_count
from ticketlab.pruning import prune_count

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fashion():
    return tl.load_dataset("fashion-mnist", train_subset=2000, val_size=500, test_subset=500)


@pytest.fixture(scope="module")
def recipe():
    return tl.preset("lth-lenet", steps="120it", eval_every="60it", batch_size=50)


@pytest.mark.parametrize("network", [BatchNormCNN, TinyResNet, PatchTransformer])
def test_a_network_of_ones_own_goes_through_imp_pai_cts_and_export(network, fashion, recipe, tmp_path, one_thread):
    model = tl.create_model(network, fashion, seed=0)
    total = sum(model.state_dict()[n].numel() for n in model.prunable_names)
    if network is PatchTransformer:  # attention projections are found and pruned too
        assert "encoder.layers.0.self_attn.in_proj_weight" in model.prunable_names
        assert "encoder.layers.0.self_attn.out_proj.weight" in model.prunable_names
    assert not any(n.endswith("bias") or ".bn" in n or "norm" in n for n in model.prunable_names)

    run = tl.imp(model, fashion, recipe, levels=2, prune_fraction=0.5, seeds=[0], runs_dir=tmp_path)
    kept = total
    for level in run.levels[1:]:
        kept -= prune_count(kept, 0.5)
        assert level.ticket.mask.num_kept() == kept
    assert run.levels[0].test_accuracy > 0.3 and run.levels[2].test_accuracy > 0.3  # chance is 0.1

    for method, density, options in (("snip", 0.1, {}), ("synflow", 0.1, {}),
                                     ("cts", 0.1, {"cts": tl.CtsConfig(objective="kl", search_steps="30it")})):
        ticket = tl.prune(model, fashion, method=method, density=density, recipe=recipe, runs_dir=tmp_path, **options)
        assert ticket.mask.num_kept() == target_count(density, total), method
        if method == "snip":
            snip = ticket

    trained = tl.train(snip, fashion, recipe, runs_dir=tmp_path)
    assert trained.test_accuracy > 0.2
    onnx = tmp_path / "model.onnx"
    tl.export(trained.ticket, onnx)
    again = tl.load_ticket(trained.ticket.path)
    assert again.mask.equals(trained.ticket.mask) and again.architecture["name"].endswith(network.__name__)
    x = fashion.test_x[:8]
    rebuilt = load_exported(trained.ticket.path)
    with torch.no_grad():
        expected = rebuilt.run(x)
    exported = load_exported(onnx)
    mean, std = exported.normalization  # the export takes raw inputs and standardizes them itself
    assert torch.allclose(torch.as_tensor(exported.run(x * std + mean)), expected, atol=1e-4)
