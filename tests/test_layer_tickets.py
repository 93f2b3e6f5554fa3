"""Layer tickets, filter tickets and robustness: exact rebuilding, documented scores, clear refusals."""

import pytest
import torch

from ticketlab.errors import TicketlabError
from ticketlab.layers.filter_tickets import (choose_filters, conv_filters, filter_scores, narrow, removals_to_match,
                                             structure_cost)
from ticketlab.layers.layer_tickets import block_scores, choose_removed, remove_blocks, removable_blocks, weight_importance
from ticketlab.models import create_model
from ticketlab.layers.robustness import blur, contrast, corrupted_sets, gaussian_noise, shifted
from ticketlab.ticket import load_ticket

NAME = "resnet_blocks_3_2_2_w4"
TINY = ["--dataset", "synthetic-images", "--train-subset", "300", "--model", NAME, "--steps", "10it",
        "--batch-size", "32", "--eval-every", "10it", "--quiet"]


@pytest.fixture
def model():
    return create_model(NAME, (3, 8, 8), 10, seed=1)


@pytest.fixture(scope="module")
def images():
    from ticketlab.data import load_dataset
    return load_dataset("synthetic-images", train_subset=300)


def test_removable_blocks_are_the_identity_shortcut_ones(model):
    assert removable_blocks(model) == [(0, 0), (0, 1), (0, 2), (1, 1), (2, 1)]


def test_the_rebuilt_network_keeps_theta0_for_every_remaining_layer(model):
    small = remove_blocks(model, [(0, 1), (2, 1)])
    assert small.architecture["name"] == "resnet_blocks_2_2_1_w4"
    old, new = model.state_dict(), small.state_dict()
    assert torch.equal(new["stem_conv.weight"], old["stem_conv.weight"])
    assert torch.equal(new["classifier.weight"], old["classifier.weight"])
    assert torch.equal(new["stages.0.0.conv1.weight"], old["stages.0.0.conv1.weight"])
    assert torch.equal(new["stages.0.1.conv2.weight"], old["stages.0.2.conv2.weight"])  # block 2 moved up to 1
    assert torch.equal(new["stages.2.0.shortcut.0.weight"], old["stages.2.0.shortcut.0.weight"])
    assert len(new) < len(old)


def test_removing_no_block_gives_the_same_function(model):
    model.eval()
    same = remove_blocks(model, []).eval()
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(same(x), model(x))


def test_block_scores_aggregate_as_documented(model, images, one_thread):
    importance = weight_importance(model, images, "snip", seed=0, score_batches=1, batch_size=64)
    sums = {b: float(sum(v.sum() for n, v in importance.items() if n.startswith(f"stages.{b[0]}.{b[1]}.")))
            for b in removable_blocks(model)}
    sizes = {b: sum(v.numel() for n, v in importance.items() if n.startswith(f"stages.{b[0]}.{b[1]}."))
             for b in removable_blocks(model)}
    got = block_scores(model, images, "snip", "sum", seed=0, batch_size=64)
    assert got == pytest.approx(sums)
    assert block_scores(model, images, "snip", "mean", seed=0, batch_size=64) == pytest.approx(
        {b: sums[b] / sizes[b] for b in sums})
    normalized = block_scores(model, images, "snip", "stage-normalized", seed=0, batch_size=64)
    stage0 = [b for b in sums if b[0] == 0]
    scale = sum(abs(sums[b]) for b in stage0) / len(stage0)
    assert normalized[(0, 1)] == pytest.approx(sums[(0, 1)] / scale)
    # GraSP keeps its smallest S, so a block's importance is the sum of −S.
    grasp = weight_importance(model, images, "grasp", seed=0, score_batches=1, batch_size=64)
    from ticketlab.pai import find_mask
    raw = find_mask("grasp", model, images, 1.0, seed=0, batch_size=64).scores
    assert all(torch.equal(grasp[n], -raw[n]) for n in raw)
    random_scores = block_scores(model, None, "random", seed=3)
    assert random_scores == block_scores(model, None, "random", seed=3) != block_scores(model, None, "random", seed=4)


def test_stage_minimums_are_respected_and_impossible_p_is_refused(model):
    scores = {(0, 0): 0.0, (0, 1): 1.0, (0, 2): 2.0, (1, 1): -5.0, (2, 1): 3.0}
    # Default floors: 2 blocks where the stage has 2 or more, so only stage 0 can lose one (its lowest).
    assert choose_removed(model, scores, 1) == [(0, 0)]
    with pytest.raises(TicketlabError, match="at most 1 blocks can go"):
        choose_removed(model, scores, 2)
    assert choose_removed(model, scores, 3, min_per_stage=1) == [(0, 0), (0, 1), (1, 1)]
    assert choose_removed(model, scores, 0) == []
    with pytest.raises(TicketlabError, match="at least 1"):
        choose_removed(model, scores, 1, min_per_stage=0)


def test_filter_tickets_remove_the_lowest_internal_filters_and_keep_theta0(model):
    scores = {p: torch.arange(block.conv1.out_channels, dtype=torch.float64)
              for p, block in [(f"stages.{s}.{i}", b) for s, st in enumerate(model.stages) for i, b in enumerate(st)]}
    kept = choose_filters(scores, 10)
    assert sum(scores[p].numel() - len(k) for p, k in kept.items()) == 10 and all(kept.values())
    small = narrow(model, kept)
    assert conv_filters(small) == conv_filters(model) - 10
    path = "stages.2.0"
    index = torch.tensor(kept[path])
    assert torch.equal(small.state_dict()[f"{path}.conv1.weight"], model.state_dict()[f"{path}.conv1.weight"][index])
    assert torch.equal(small.state_dict()[f"{path}.conv2.weight"], model.state_dict()[f"{path}.conv2.weight"][:, index])
    small(torch.randn(2, 3, 8, 8))  # shapes are consistent
    with pytest.raises(TicketlabError, match="cannot remove"):
        choose_filters(scores, 10_000)
    random_scores = filter_scores(model, None, "random", seed=1)
    assert set(random_scores) == set(scores)


def test_corruptions_are_batched_and_graded():
    x = torch.randn(16, 1, 12, 12)
    assert gaussian_noise(x, 3, seed=1).shape == x.shape
    assert torch.equal(gaussian_noise(x, 3, seed=1), gaussian_noise(x, 3, seed=1))
    assert (gaussian_noise(x, 5) - x).std() > (gaussian_noise(x, 1) - x).std()
    assert blur(x, 5).std() < blur(x, 1).std() < x.std()
    assert torch.allclose(blur(torch.ones(2, 3, 6, 6), 4), torch.ones(2, 3, 6, 6), atol=1e-6)  # constants stay
    assert contrast(x, 5).std() < contrast(x, 1).std()
    moved = shifted(x, 2, seed=0)
    assert moved.shape == x.shape and not torch.equal(moved, x)
    names = [(n, s) for n, s, _ in corrupted_sets(x)]
    assert len(names) == 17 and ("shift", 4) in names
    with pytest.raises(TicketlabError, match="image data"):
        list(corrupted_sets(torch.randn(4, 20)))


@pytest.mark.parametrize("match", ["flops", "params", "filters"])
def test_filter_matching_takes_the_fewest_removals_within_the_target(model, match):
    scores = filter_scores(model, None, "random", seed=3)
    shape = (3, 8, 8)
    dense = structure_cost(model, shape, match)
    target = dense - (dense - structure_cost(narrow(model, choose_filters(scores, 40)), shape, match)) // 2
    remove, cost = removals_to_match(model, scores, match, target, shape)
    assert cost == structure_cost(narrow(model, choose_filters(scores, remove)), shape, match) <= target
    assert structure_cost(narrow(model, choose_filters(scores, remove - 1)), shape, match) > target  # the fewest
    assert 0 < remove < 40
    with pytest.raises(TicketlabError, match="one filter per block"):
        removals_to_match(model, scores, match, 1, shape)


def test_layers_filters_and_robustness_commands(cli, tmp_path, one_thread):
    res = cli("layers", *TINY, "--remove", "2", "--min-per-stage", "1", "--seeds", "0,1", "--workers", "1",
              "--runs-dir", tmp_path, "--json")
    assert res.code == 0, res.err
    result = res.json()
    assert result["ticket_parameters"] < result["dense_parameters"] and result["flops_saved"] > 0
    assert result["training_speedup"] > 0 and result["ticket_energy_wh_estimate"] > 0
    ticket = load_ticket(result["tickets"][0])
    assert ticket.architecture["name"].startswith("resnet_blocks_") and len(ticket.provenance.extra["removed_blocks"]) == 2
    assert ticket.mask.density() == 1.0 and ticket.trained_state is not None
    again = cli("layers", *TINY, "--remove", "2", "--min-per-stage", "1", "--seeds", "0,1", "--workers", "1",
                "--runs-dir", tmp_path, "--json").json()
    assert again["test_accuracy"] == result["test_accuracy"]  # stored, not retrained

    filters = cli("filters", "--match-ticket", result["tickets"][0], "--criterion", "snip", "--seeds", "0",
                  "--match", "filters", "--runs-dir", tmp_path, "--json", "--quiet")
    assert filters.code == 0, filters.err
    assert filters.json()["ticket_conv_filters"] == result["per_seed"]["0"]["ticket_costs"]["conv_filters"]
    # Matched seed by seed: each seed's filter ticket costs at most its own seed's layer ticket.
    by_flops = cli("filters", "--match-ticket", result["tickets"][0], "--criterion", "magnitude", "--seeds", "0,1",
                   "--workers", "1", "--runs-dir", tmp_path, "--json", "--quiet")
    assert by_flops.code == 0, by_flops.err
    matched = by_flops.json()
    assert matched["match"] == "flops" and matched["run_dir"] != filters.json()["run_dir"]
    for seed in ("0", "1"):
        row, layer = matched["per_seed"][seed], result["per_seed"][seed]
        assert row["match_target"] == layer["ticket_costs"]["flops"]
        assert row["ticket_costs"]["flops"] == row["match_value"] <= row["match_target"]
        assert row["matched_layer_ticket"] == layer["ticket"]

    robust = cli("robustness", result["tickets"][0], "--json")
    assert robust.code == 0, robust.err
    rows = robust.json()["rows"]
    assert rows[0]["corruption"] == "clean" and len(rows) == 18
    assert all(0 <= r["tickets"][0] <= 1 and 0 <= r["dense"] <= 1 for r in rows)
    both = cli("robustness", result["tickets"][0], filters.json()["tickets"][0], "--json")
    assert both.code == 0, both.err  # a layer and a filter ticket of seed 0 share the dense network
    assert [r["tickets"][0] for r in both.json()["rows"]] == [r["tickets"][0] for r in rows]
    assert [r["dense"] for r in both.json()["rows"]] == [r["dense"] for r in rows]
    seeds = cli("robustness", *result["tickets"])
    assert seeds.code == 2 and "different dense networks" in seeds.err

    bad = cli("layers", *TINY, "--remove", "9", "--runs-dir", tmp_path / "bad")
    assert bad.code == 2 and "--remove 9 is impossible" in bad.err and not (tmp_path / "bad").exists()
    bad = cli("layers", *TINY[:-5], "--model", "mlp_32_16", "--dataset", "synthetic", "--runs-dir", tmp_path / "bad")
    assert bad.code == 2 and "need a ResNet" in bad.err and not (tmp_path / "bad").exists()
    bad = cli("filters", "--match-ticket", tmp_path / "none.safetensors")
    assert bad.code == 2 and "does not exist" in bad.err
    bad = cli("filters", "--match-ticket", result["tickets"][0], "--seeds", "0,5", "--runs-dir", tmp_path / "bad")
    assert bad.code == 2 and "no layer ticket of seed 5" in bad.err and not (tmp_path / "bad").exists()
