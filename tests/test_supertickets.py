"""SuperTickets: the supernet, function-preserving shrinking, optimizer remapping, reactivation, the
progressive schedule, and the supertickets / transfer / frontier commands."""

import pytest
import torch

from ticketlab.config import TrainConfig
from ticketlab.data import load_dataset
from ticketlab.errors import TicketlabError
from ticketlab.models import create_model, model_from_architecture
from ticketlab.models.supernet import mixed_blocks, path_widths
from ticketlab.pai.selection import target_count
from ticketlab.supertickets.config import SuperConfig
from ticketlab.supertickets.progressive import SparseState, progressive_density, ticket_names
from ticketlab.supertickets.search import two_in_one
from ticketlab.supertickets.shrink import architecture_scales, proximal_l1_, remap_optimizer, shrink_
from ticketlab.ticket import load_ticket

NAME = "supernet_w4_c2_e2"
TINY = ["--dataset", "synthetic-images", "--train-subset", "300", "--model", NAME, "--steps", "4ep",
        "--batch-size", "50", "--eval-every", "2ep", "--prune-interval", "1ep", "--shrink-interval", "2ep",
        "--rho", "0.5", "--rho-warmup", "1ep", "--quiet"]


@pytest.fixture
def net():
    model = create_model(NAME, (3, 12, 12), 10, seed=3)
    with torch.no_grad():  # statistics and affine values away from their initial 0/1, as after training
        for _ in range(3):
            model(torch.randn(16, 3, 12, 12))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return model


def zero_some_gammas(model, generator):
    """γ = 0 for a random third of the channels and for every channel of one path (so it is deleted)."""
    blocks = list(mixed_blocks(model).values())
    with torch.no_grad():
        for block in blocks:
            for path in block.paths.values():
                gamma = path.depthwise_bn.weight
                gamma[torch.rand(gamma.shape, generator=generator) < 1 / 3] = 0
        blocks[0].paths["k5"].depthwise_bn.weight.zero_()


def test_supernet_is_registered_sized_for_a_cpu_and_takes_any_image_size():
    model = create_model("supernet", (1, 28, 28), 10, seed=0)
    assert 100_000 < sum(p.numel() for p in model.parameters()) < 300_000
    assert model.output_name == "classifier.weight"
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(TicketlabError, match="at least 4x4"):
        create_model("supernet", (1, 3, 3), 10)


def test_shrinking_keeps_the_function_when_the_removed_scales_are_zero(net):
    zero_some_gammas(net, torch.Generator().manual_seed(0))
    x = torch.randn(8, 3, 12, 12)
    net.eval()
    before = net(x)
    changes = shrink_(net, threshold=1e-3)
    after = net(x)
    assert changes.removed_channels > 0 and "cells.0.high.paths.k5" in changes.deleted_paths
    assert "k5" not in net.cells[0].high.paths
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
    # The shrunk network is rebuilt from its architecture record alone and loads its own weights.
    rebuilt = model_from_architecture({**net.architecture, "paths": path_widths(net)})
    rebuilt.load_state_dict(net.state_dict())
    torch.testing.assert_close(rebuilt.eval()(x), before, rtol=1e-4, atol=1e-5)


def test_a_block_keeps_its_strongest_channel_when_every_scale_is_below_the_threshold(net):
    block = net.cells[1].low
    with torch.no_grad():
        for path in block.paths.values():
            path.depthwise_bn.weight.fill_(1e-4)
        block.paths["k7"].depthwise_bn.weight[2] = 5e-4
    shrink_(net, threshold=1e-3)
    assert path_widths(net)["cells.1.low"] == {"3": 0, "5": 0, "7": 1}


@pytest.mark.parametrize("optimizer_name", ["sgd", "adam"])
def test_the_optimizer_state_follows_the_kept_channels(net, optimizer_name, one_thread):
    cfg = TrainConfig(optimizer=optimizer_name, lr=0.01, momentum=0.9)
    from ticketlab.trainer import build_optimizer
    optimizer = build_optimizer(net, cfg)
    net.train()
    net(torch.randn(8, 3, 12, 12)).sum().backward()
    optimizer.step()
    name = "cells.0.low.paths.k3.expand.weight"
    params = dict(net.named_parameters())
    old_state = {k: v.clone() for k, v in optimizer.state[params[name]].items() if torch.is_tensor(v)}
    gamma = net.cells[0].low.paths["k3"].depthwise_bn.weight
    with torch.no_grad():
        gamma[::2] = 0
    kept = torch.arange(1, gamma.numel(), 2)
    before = dict(net.named_parameters())
    changes = shrink_(net)
    remap_optimizer(optimizer, net, before, changes)
    new = dict(net.named_parameters())[name]
    for key, value in old_state.items():
        expected = value.index_select(0, kept) if value.dim() else value
        torch.testing.assert_close(optimizer.state[new][key], expected)
    assert [id(p) for p in optimizer.param_groups[0]["params"]] == [id(p) for p in net.parameters()]
    net(torch.randn(8, 3, 12, 12)).sum().backward()
    optimizer.step()  # the remapped state fits the smaller parameters


def test_reactivation_revives_dormant_weights_that_rank_high(net):
    state = SparseState(net)
    assert "classifier.weight" not in state.names and state.names == ticket_names(net)
    state.prune_(net, 0.5)
    params = dict(net.named_parameters())
    dormant_values = {n: state.dormant[n].clone() for n in state.names}
    with torch.no_grad():  # the live weights shrink, as weight decay would: the dormant ones now rank high
        for n in state.names:
            params[n].mul_(0.01)
    old_mask = {n: m.clone() for n, m in state.mask.items()}
    stats = state.prune_(net, 0.5)
    assert stats["revived"] > 0 and stats["revived"] == stats["pruned"]
    for n in state.names:
        revived = state.mask[n] & ~old_mask[n]
        torch.testing.assert_close(params[n][revived], dormant_values[n][revived])  # back with their values
    assert state.kept() == target_count(0.5, state.total())

    frozen = SparseState(net)
    frozen.prune_(net, 0.5)
    with torch.no_grad():
        for n in frozen.names:
            params[n].mul_(0.01)
    assert frozen.prune_(net, 0.5, reactivation=False)["revived"] == 0


def test_proximal_l1_reaches_exact_zeros(net):
    scales = architecture_scales(net)
    costs = torch.cat([cost for _, cost in scales])
    assert costs.mean().item() == pytest.approx(1.0)
    # A 7x7 path costs more per channel than a 3x3 one of the same block.
    assert scales[2][1][0] > scales[0][1][0]
    proximal_l1_(scales, step=10.0)
    assert all(bool((bn.weight == 0).all()) for bn, _ in scales)


def test_progressive_density_follows_the_papers_rule():
    assert [round(progressive_density(k, 0.2), 10) for k in range(1, 11)] == [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.2, 0.2]


@pytest.mark.parametrize("search", [True, False])
def test_the_progressive_schedule_hits_each_density_exactly(search, one_thread):
    data = load_dataset("synthetic-images", train_subset=300)
    model = create_model(NAME, data.input_shape, data.num_classes, seed=0)
    cfg = TrainConfig(lr=0.05, momentum=0.9, batch_size=50, steps="7ep")
    scfg = SuperConfig(density=0.5, prune_interval="1ep", shrink_interval="2ep", rho=0.5, rho_warmup="1ep",
                       search=search)
    outcome = two_in_one(model, data, cfg, scfg, data_seed=1)
    prunes = [e for e in outcome.events if e["event"] == "prune"]
    assert [round(e["target"], 10) for e in prunes][:6] == [0.9, 0.8, 0.7, 0.6, 0.5, 0.5]
    assert all(e["kept"] == target_count(e["target"], e["total"]) for e in prunes)
    assert outcome.state.kept() == target_count(0.5, outcome.state.total())
    live = dict(model.named_parameters())
    assert all(bool((live[n][~outcome.state.mask[n]] == 0).all()) for n in outcome.state.names)
    assert any(e["event"] == "shrink" for e in outcome.events) == search


def test_supertickets_command_writes_a_ticket_of_the_searched_network(cli, tmp_path, one_thread):
    result = cli("supertickets", *TINY, "--density", "0.3", "--retrain", "1ep", "--runs-dir", tmp_path, "--json")
    assert result.code == 0, result.err
    out = result.json()
    assert out["method"] == "supertickets" and out["retrained_test_accuracy"] is not None
    assert out["flops"] < out["architecture_flops"] <= out["supernet_flops"]
    ticket = load_ticket(out["tickets"][0])
    assert "paths" in ticket.architecture
    model = model_from_architecture(ticket.architecture)
    model.load_state_dict(ticket.trained_state)
    names = ticket_names(model)
    kept = sum(int(ticket.mask[n].sum()) for n in names)
    assert kept == target_count(0.3, sum(ticket.mask[n].numel() for n in names))
    assert bool(ticket.mask["classifier.weight"].all())
    # θ₀ is the initial supernet cut to the searched channels: a kept expand row is unchanged.
    init = create_model(NAME, (3, 8, 8), 10, seed=ticket.provenance.init_seed).state_dict()
    key = next(k for k in ticket.init_state if k.endswith("classifier.bias"))
    torch.testing.assert_close(ticket.init_state[key], init[key])

    again = cli("supertickets", *TINY, "--density", "0.3", "--retrain", "1ep", "--runs-dir", tmp_path, "--json")
    assert again.json()["per_seed"] == out["per_seed"]  # a finished run is read back, not recomputed

    baseline = cli("supertickets", *TINY, "--density", "0.3", "--baseline", "magnitude", "--runs-dir", tmp_path, "--json")
    assert baseline.code == 0, baseline.err
    assert baseline.json()["method"] == "search+magnitude"
    other = cli("supertickets", *TINY, "--density", "0.3", "--baseline", "random", "--runs-dir", tmp_path, "--json")
    assert other.code == 0, other.err
    searches = list(tmp_path.glob("supernet-search-*/seed-0/search.json"))
    assert len(searches) == 1  # one search-only training, shared by every baseline of the seed
    assert other.json()["per_seed"]["0"]["search_examples"] == baseline.json()["per_seed"]["0"]["search_examples"]
    frontier = cli("frontier", out["run_dir"], baseline.json()["run_dir"], "--out", tmp_path / "f", "--json")
    assert frontier.code == 0, frontier.err
    assert {p["method"] for p in frontier.json()["points"]} == {"supertickets", "search+magnitude"}
    assert (tmp_path / "f" / "frontier.png").stat().st_size > 0


def test_transfer_keeps_the_mask_and_replaces_the_head(cli, tmp_path, one_thread):
    found = cli("supertickets", "--dataset", "digits", "--model", NAME, "--steps", "2ep", "--batch-size", "100",
                "--density", "0.5", "--rho", "0", "--runs-dir", tmp_path, "--quiet", "--json")
    assert found.code == 0, found.err
    source = found.json()["tickets"][0]
    moved = cli("transfer", source, "--dataset", "digits", "--resize", "12", "--steps", "1ep", "--batch-size", "100",
                "--runs-dir", tmp_path, "--quiet", "--json")
    assert moved.code == 0, moved.err
    out = moved.json()
    original, transferred = load_ticket(source), load_ticket(out["tickets"][0])
    assert transferred.architecture["input_shape"] == [1, 12, 12]
    for name in ticket_names(model_from_architecture(original.architecture)):
        assert torch.equal(original.mask[name], transferred.mask[name])
        assert bool((transferred.trained_state[name][~transferred.mask[name]] == 0).all())  # the mask stayed fixed


def test_supertickets_refuses_bad_requests_with_one_line(cli, tmp_path):
    for args, message in ((["--density", "1.5"], "--density"),
                          (["--baseline", "snip", "--no-search"], "baseline"),
                          (["--model", "mlp_32", "--dataset", "synthetic"], "no searchable blocks"),
                          (["--rho", "-1"], "--rho"),
                          (["--prune-interval", "often"], "prune-interval")):
        result = cli("supertickets", *TINY, *args, "--runs-dir", tmp_path)
        assert result.code == 2 and message in result.err and result.err.count("\n") == 1, result.err
    assert not any(tmp_path.iterdir())  # nothing half-written
    result = cli("transfer", tmp_path / "missing.safetensors", "--runs-dir", tmp_path)
    assert result.code == 2 and "does not exist" in result.err
    result = cli("frontier", tmp_path, "--out", tmp_path / "f")
    assert result.code == 2 and "summary.json" in result.err


def test_resize_resamples_image_datasets_and_refuses_others():
    data = load_dataset("digits", resize=16)
    assert data.input_shape == (1, 16, 16) and len(data.val_x) > 0
    with pytest.raises(TicketlabError, match="--resize applies to image datasets"):
        load_dataset("synthetic", resize=16)


def test_auto_prune_interval_reaches_the_target_at_four_fifths_of_training():
    from ticketlab.supertickets.search import prune_interval
    scfg = SuperConfig(density=0.1)
    every = prune_interval(scfg, total=1000, iterations_per_epoch=100)
    assert every == 800 // 9 and 9 * every <= 800 < 10 * every + every
    assert prune_interval(SuperConfig(density=0.1, prune_interval="2ep"), 1000, 100) == 200


def test_batchnorm_recalibration_changes_statistics_only(net):
    from ticketlab.batchnorm import recalibrate_batchnorm
    data = load_dataset("synthetic-images", train_subset=300)
    model = create_model(NAME, data.input_shape, data.num_classes, seed=0)
    weights = {n: p.clone() for n, p in model.named_parameters()}
    recalibrate_batchnorm(model, data, batches=3, batch_size=50, seed=0)
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())
    assert not torch.equal(model.stem_bn.running_mean, torch.zeros_like(model.stem_bn.running_mean))
    assert model.stem_bn.momentum == 0.1 and int(model.stem_bn.num_batches_tracked) == 3
