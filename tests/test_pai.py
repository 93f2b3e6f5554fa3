"""Pruning at initialization: exact counts, score correctness against finite differences, score
conventions (GraSP), iterative behaviour (iter-SNIP nested, FORCE revives, SynFlow conserves flow),
isolation (model, mode, buffers, RNG untouched), layer-wise ratios, and the sanity-check ablations."""

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings, strategies as st
from torch import nn

from ticketlab.data import Dataset, load_dataset
from ticketlab.errors import TicketlabError
from ticketlab.mask import Mask
from ticketlab.models import create_model
from ticketlab.pai import (PAI_METHODS, find_mask, invert_by_scores, method_names, random_global,
                           shuffle_layerwise)
from ticketlab.pai.find import build_request
from ticketlab.pai.grasp import hessian_gradient_product
from ticketlab.pai.iterative import gradient_rounds
from ticketlab.pai.layerwise import allocate_counts
from ticketlab.pai.masked_net import copy_weights, working_copy
from ticketlab.pai.scoring_data import class_balanced_batches, scoring_batches
from ticketlab.pai.selection import schedule_counts
from ticketlab.pai.synflow import synflow_rounds
from ticketlab.pruning import keep_top_k

ALL_METHODS = ["random", "erk", "smart-ratio", "magnitude", "snip", "iter-snip", "force", "grasp",
               "grasp-abs", "synflow"]
SCORING_METHODS = [m for m in ALL_METHODS if PAI_METHODS[m].score_order is not None]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", train_subset=300)


@pytest.fixture(scope="module")
def mlp(data):
    return create_model("mlp_16_8", data.input_shape, data.num_classes, seed=0)


@pytest.fixture(scope="module")
def image_data():
    return load_dataset("synthetic-images", train_subset=64)


def make_dataset(x, y, num_classes):
    empty_x, empty_y = x[:0], y[:0]
    return Dataset("handmade", x, y, empty_x, empty_y, empty_x, empty_y, num_classes, "none")


def tiny_float64_problem(seed=0, num_examples=24, num_inputs=3, num_classes=3):
    """A float64 MLP with biases and a handmade dataset: small enough for per-weight finite differences."""
    model = create_model("mlp_5_4", (num_inputs,), num_classes, seed=seed).double()
    with torch.no_grad():  # non-zero biases so the test covers them
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.3, generator=torch.Generator().manual_seed(seed + 1))
    g = torch.Generator().manual_seed(seed + 2)
    x = torch.randn(num_examples, num_inputs, generator=g, dtype=torch.float64)
    y = torch.arange(num_examples) % num_classes
    return model, make_dataset(x, y, num_classes)


def flat(tensors, names=None):
    names = names or list(tensors)
    return torch.cat([tensors[n].reshape(-1) for n in names])


def kept_and_dropped(scores, mask):
    return flat({n: scores[n][mask[n]] for n in mask.names()}), flat({n: scores[n][~mask[n]] for n in mask.names()})


# ---- Registry and inputs -----------------------------------------------------------------------

def test_registry_lists_every_method_with_its_facts():
    assert method_names() == ALL_METHODS
    for name, info in PAI_METHODS.items():
        assert info.description and "\n" not in info.description
        assert info.bn_mode in ("train", "eval", None)
    assert PAI_METHODS["snip"].uses_data and PAI_METHODS["grasp"].uses_data
    assert not PAI_METHODS["synflow"].uses_data and PAI_METHODS["synflow"].bn_mode == "eval"
    assert PAI_METHODS["grasp"].score_order == "smallest" and PAI_METHODS["grasp-abs"].score_order == "largest"


@pytest.mark.parametrize("density", [0, 0.0, 1.5, -0.1, float("nan"), "0.5", True])
def test_bad_density_is_a_user_error(mlp, data, density):
    with pytest.raises(TicketlabError, match=r"density must be in \(0, 1\]"):
        find_mask("magnitude", mlp, data, density)


def test_bad_options_are_user_errors(mlp, data):
    with pytest.raises(TicketlabError, match="known methods: random, erk"):
        find_mask("snipp", mlp, data, 0.5)
    with pytest.raises(TicketlabError, match="training data"):
        find_mask("snip", mlp, None, 0.5)
    with pytest.raises(TicketlabError, match="single-shot"):
        find_mask("snip", mlp, data, 0.5, iterations=3)
    with pytest.raises(TicketlabError, match="iterations"):
        find_mask("force", mlp, data, 0.5, iterations=0)
    with pytest.raises(TicketlabError, match="no scores to invert"):
        find_mask("random", mlp, data, 0.5, invert=True)
    with pytest.raises(TicketlabError, match="min_per_layer"):
        find_mask("magnitude", mlp, data, 0.01, min_per_layer=10)  # 3 layers x 10 > 5 kept
    with pytest.raises(TicketlabError, match="keeps 0"):
        find_mask("magnitude", mlp, data, 1e-6)
    wrong_shape = create_model("mlp_16_8", (7,), 10, seed=0)
    with pytest.raises(TicketlabError, match="inputs"):
        find_mask("snip", wrong_shape, data, 0.5)


@pytest.mark.parametrize("method", ["magnitude", "snip", "synflow"])
def test_non_finite_scores_are_a_user_error_naming_the_layer(data, method):
    model = create_model("mlp_16_8", data.input_shape, data.num_classes, seed=0)
    with torch.no_grad():
        model.hidden[1].weight[0, 0] = float("nan")
    with pytest.raises(TicketlabError, match="non-finite pruning scores in layer"):
        find_mask(method, model, data, 0.5)


# ---- Exact counts, determinism, isolation ------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(method=st.sampled_from(ALL_METHODS), density=st.floats(0.01, 1.0), seed=st.integers(0, 50),
       min_per_layer=st.sampled_from([0, 0, 1, 3]), invert=st.booleans())
def test_every_method_keeps_exactly_round_density_times_d(mlp, data, method, density, seed, min_per_layer,
                                                           invert):
    invert = invert and PAI_METHODS[method].score_order is not None
    total = sum(p.numel() for n, p in mlp.named_parameters() if n in mlp.prunable_names)
    count = round(density * total)
    iterations = 4 if PAI_METHODS[method].iterative else None
    assume(3 * min_per_layer <= count)  # the floors must fit in the budget (3 layers)
    result = find_mask(method, mlp, data, density, seed=seed, iterations=iterations, batch_size=64,
                       min_per_layer=min_per_layer, invert=invert)
    assert result.mask.num_kept() == count == result.info["kept"]
    assert result.info["density"] == count / total
    assert all(int(keep.sum()) >= min(min_per_layer, keep.numel()) for keep in result.mask.tensors.values())
    assert result.collapsed_layers == [n for n in result.mask.names() if not result.mask[n].any()]


@pytest.mark.parametrize("method", ALL_METHODS)
def test_conv_net_with_batchnorm_exact_counts(image_data, method):
    model = create_model("resnet8_w4", image_data.input_shape, image_data.num_classes, seed=0)
    total = sum(p.numel() for n, p in model.named_parameters() if n in model.prunable_names)
    for density in (0.3, 0.05):
        iterations = 3 if PAI_METHODS[method].iterative else None
        result = find_mask(method, model, image_data, density, batch_size=32, iterations=iterations)
        assert result.mask.num_kept() == round(density * total)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_same_seed_same_mask_bit_for_bit_whatever_the_global_rng(mlp, data, method):
    iterations = 3 if PAI_METHODS[method].iterative else None
    torch.manual_seed(1)
    first = find_mask(method, mlp, data, 0.2, seed=7, iterations=iterations)
    torch.manual_seed(2)
    second = find_mask(method, mlp, data, 0.2, seed=7, iterations=iterations)
    assert first.mask.equals(second.mask)
    if first.scores is not None:
        assert all(torch.equal(first.scores[n], second.scores[n]) for n in first.scores)
        assert all(s.dtype == torch.float64 and s.device.type == "cpu" for s in first.scores.values())


@pytest.mark.parametrize("method", ["random", "erk", "smart-ratio", "snip", "grasp"])
def test_seed_matters_for_random_choices_and_scoring_batches(mlp, data, method):
    a = find_mask(method, mlp, data, 0.3, seed=0, batch_size=32)
    b = find_mask(method, mlp, data, 0.3, seed=1, batch_size=32)
    assert not a.mask.equals(b.mask)


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("train_mode", [True, False])
def test_model_weights_buffers_mode_and_global_rng_are_untouched(image_data, method, train_mode):
    model = create_model("resnet8_w4", image_data.input_shape, image_data.num_classes, seed=0)
    with torch.no_grad():  # non-trivial running stats, as at a rewind point θ_k
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    model.train(train_mode)
    before = copy.deepcopy(model.state_dict())
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    iterations = 2 if PAI_METHODS[method].iterative else None
    find_mask(method, model, image_data, 0.1, batch_size=16, iterations=iterations)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow"])
def test_batchnorm_running_stats_do_not_enter_the_scores(image_data, method):
    """SNIP/GraSP use batch statistics (train mode); SynFlow resets the stats to 0/1 on its copy."""
    model = create_model("resnet8_w4", image_data.input_shape, image_data.num_classes, seed=0)
    drifted = copy.deepcopy(model)
    with torch.no_grad():
        for module in drifted.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    drifted.eval()
    iterations = 2 if PAI_METHODS[method].iterative else None
    a = find_mask(method, model, image_data, 0.2, batch_size=32, iterations=iterations)
    b = find_mask(method, drifted, image_data, 0.2, batch_size=32, iterations=iterations)
    assert a.mask.equals(b.mask)
    assert torch.allclose(flat(a.scores), flat(b.scores), rtol=1e-5, atol=1e-7 * flat(a.scores).abs().max())


def test_info_reports_what_was_done(mlp, data):
    snip = find_mask("snip", mlp, data, 0.1, score_batches=2, batch_size=50)
    assert snip.info["examples_used"] == 100 and snip.info["rounds"] == 1 and snip.info["bn_mode"] == "train"
    assert snip.info["wall_time_seconds"] >= 0 and snip.info["method"] == "snip"
    force = find_mask("force", mlp, data, 0.1, batch_size=50, iterations=4)
    assert force.info["examples_used"] == 200 and force.info["rounds"] == force.info["iterations"] == 4
    grasp = find_mask("grasp", mlp, data, 0.1, batch_size=40)
    assert grasp.info["examples_used"] == 80  # two passes (g, then Hg) over 40 examples
    synflow = find_mask("synflow", mlp, None, 0.1)
    assert synflow.info["examples_used"] == 0 and synflow.info["rounds"] == 100 and synflow.info["bn_mode"] == "eval"


# ---- Selection ---------------------------------------------------------------------------------

def stable_sort_top_k(keys, alive, k):
    """Reference: a full stable descending sort over the alive keys, first k kept."""
    names = list(keys)
    flat = torch.cat([keys[n].reshape(-1).double() for n in names])
    alive_flat = torch.cat([alive[n].reshape(-1) for n in names])
    flat = torch.where(alive_flat, flat, torch.full_like(flat, float("-inf")))
    keep = torch.zeros_like(alive_flat)
    keep[torch.argsort(flat, descending=True, stable=True)[:k]] = True
    out, offset = {}, 0
    for n in names:
        out[n] = keep[offset:offset + keys[n].numel()].reshape(keys[n].shape)
        offset += keys[n].numel()
    return Mask(out)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=4), levels=st.integers(1, 5),
       seed=st.integers(0, 1000), fraction=st.floats(0, 1), dead=st.floats(0, 0.5))
def test_keep_top_k_matches_the_stable_sort_reference_even_with_ties(sizes, levels, seed, fraction, dead):
    g = torch.Generator().manual_seed(seed)
    keys = {f"l{i}": torch.randint(0, levels, (s,), generator=g).double() for i, s in enumerate(sizes)}
    alive = Mask({n: torch.rand(k.shape, generator=g) >= dead for n, k in keys.items()})
    k = int(fraction * alive.num_kept())
    assert keep_top_k(keys, alive, k).equals(stable_sort_top_k(keys, alive, k))


def test_schedule_counts_decrease_and_land_on_the_target():
    counts = schedule_counts(0.013, 10_000, 100)
    assert counts[-1] == 130 and counts[0] == round(10_000 * 0.013 ** 0.01)
    assert all(a >= b for a, b in zip(counts, counts[1:]))


def test_min_per_layer_prevents_collapse_and_reserves_each_layers_best():
    model = create_model("mlp_256_256_256", (4,), 10, seed=0)
    plain = find_mask("magnitude", model, None, 0.002)
    assert plain.collapsed_layers == ["hidden.1.weight", "hidden.2.weight", "classifier.weight"]
    floored = find_mask("magnitude", model, None, 0.002, min_per_layer=5)
    assert floored.collapsed_layers == [] and floored.mask.num_kept() == plain.mask.num_kept()
    weights = dict(model.named_parameters())
    for name in floored.mask.names():
        layer = weights[name].detach().abs().reshape(-1)
        assert int(floored.mask[name].sum()) >= 5
        assert floored.mask[name].reshape(-1)[layer.topk(5).indices].all()  # its own top 5 are kept


# ---- Layer-wise random methods -----------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 500), min_size=1, max_size=6), data=st.data())
def test_allocate_counts_is_exact_and_within_bounds(sizes, data):
    names = [f"l{i}" for i in range(len(sizes))]
    shares = {n: data.draw(st.floats(0.01, 100)) for n in names}
    floors = {n: min(data.draw(st.integers(0, 5)), s) for n, s in zip(names, sizes)}
    size = dict(zip(names, sizes))
    total = data.draw(st.integers(sum(floors.values()), sum(sizes)))
    counts = allocate_counts(total, shares, size, floors)
    assert sum(counts.values()) == total
    assert all(floors[n] <= counts[n] <= size[n] for n in names)


def test_random_keeps_every_layer_at_the_target_density(data):
    model = create_model("mlp_64_32", data.input_shape, data.num_classes, seed=0)
    result = find_mask("random", model, None, 0.37, seed=3)
    for name, keep in result.mask.tensors.items():
        assert abs(int(keep.sum()) - 0.37 * keep.numel()) < 1


def test_erk_densities_follow_sum_over_product_of_dims_and_clip_at_one(data):
    model = create_model("mlp_64_32", data.input_shape, data.num_classes, seed=0)
    result = find_mask("erk", model, None, 0.5)
    densities = result.mask.layer_densities()
    # shapes (64, 20), (32, 64), (10, 32): the classifier would exceed 1, so it is dense.
    assert densities["classifier.weight"] == 1.0
    erk = {"hidden.0.weight": (64 + 20) / (64 * 20), "hidden.1.weight": (32 + 64) / (32 * 64)}
    scale0, scale1 = (densities[n] / erk[n] for n in erk)
    assert scale0 == pytest.approx(scale1, rel=0.01)
    assert result.mask.num_kept() == round(0.5 * (1280 + 2048 + 320))


def test_smart_ratio_fixes_the_classifier_at_0_3_and_decays_quadratically(data):
    model = create_model("mlp_64_32", data.input_shape, data.num_classes, seed=0)
    result = find_mask("smart-ratio", model, None, 0.3)
    densities = result.mask.layer_densities()
    assert densities["classifier.weight"] == 0.3
    # L = 3: layer 1 ∝ 3² + 3 = 12, layer 2 ∝ 2² + 2 = 6.
    assert densities["hidden.0.weight"] / densities["hidden.1.weight"] == pytest.approx(2.0, rel=0.01)
    # At 0.8 (2918 of 3648 kept), layer 1 would exceed 1: it is dense and layer 2 takes the rest.
    clipped = find_mask("smart-ratio", model, None, 0.8).mask.layer_densities()
    assert clipped["hidden.0.weight"] == 1.0 and clipped["classifier.weight"] == 0.3
    assert clipped["hidden.1.weight"] == (2918 - 1280 - 96) / 2048
    # At 0.95 (3466 kept) the hidden layers hold only 3328: the classifier takes the nearest feasible count.
    crowded = find_mask("smart-ratio", model, None, 0.95).mask.layer_densities()
    assert crowded == {"hidden.0.weight": 1.0, "hidden.1.weight": 1.0, "classifier.weight": (3466 - 3328) / 320}


# ---- SNIP --------------------------------------------------------------------------------------

def test_snip_score_is_the_mask_derivative_by_finite_differences():
    model, dataset = tiny_float64_problem()
    result = find_mask("snip", model, dataset, 0.5, batch_size=len(dataset.train_y))
    params = dict(model.named_parameters())
    x, y = dataset.train_x, dataset.train_y
    eps = 1e-6
    for name in model.prunable_names:
        for index in range(params[name].numel()):
            losses = []
            for sign in (1, -1):
                probe = copy.deepcopy(model)
                with torch.no_grad():
                    dict(probe.named_parameters())[name].view(-1)[index] *= 1 + sign * eps  # mask entry c = 1 ± eps
                losses.append(F.cross_entropy(probe(x), y).item())
            finite_difference = abs(losses[0] - losses[1]) / (2 * eps)
            assert result.scores[name].view(-1)[index].item() == pytest.approx(finite_difference, rel=1e-5, abs=1e-10)


# ---- GraSP -------------------------------------------------------------------------------------

def tempered_gradient(model, dataset, names, shift=None):
    probe = copy.deepcopy(model)
    params = dict(probe.named_parameters())
    if shift is not None:
        with torch.no_grad():
            for name in names:
                params[name] += shift[name]
    loss = F.cross_entropy(probe(dataset.train_x) / 200.0, dataset.train_y)  # the paper's temperature
    return dict(zip(names, torch.autograd.grad(loss, [params[n] for n in names])))


def test_grasp_hessian_gradient_product_and_score_match_finite_differences():
    model, dataset = tiny_float64_problem(seed=3)
    names = model.prunable_names
    g = tempered_gradient(model, dataset, names)
    norm = flat(g).norm()
    step = 1e-4  # central differences along the unit direction g/|g|
    plus = tempered_gradient(model, dataset, names, {n: step * g[n] / norm for n in names})
    minus = tempered_gradient(model, dataset, names, {n: -step * g[n] / norm for n in names})
    expected_hg = {n: norm * (plus[n] - minus[n]) / (2 * step) for n in names}

    work = working_copy(model, "train")
    batches = class_balanced_batches(dataset, 0, len(dataset.train_y), len(dataset.train_y))
    gradient, product = hessian_gradient_product(work, copy_weights(work, names), batches)
    assert torch.allclose(flat(gradient), flat(g), rtol=1e-10, atol=1e-16)
    assert torch.allclose(flat(product), flat(expected_hg), rtol=1e-5, atol=1e-12 * flat(expected_hg).abs().max())

    result = find_mask("grasp", model, dataset, 0.5, batch_size=len(dataset.train_y))
    weights = dict(model.named_parameters())
    expected_score = {n: -weights[n].detach() * expected_hg[n] for n in names}
    assert torch.allclose(flat(result.scores), flat(expected_score), rtol=1e-5,
                          atol=1e-12 * flat(expected_score).abs().max())


def test_grasp_keeps_the_smallest_score_and_its_inversion_keeps_the_largest(mlp, data):
    grasp = find_mask("grasp", mlp, data, 0.3)
    kept, dropped = kept_and_dropped(grasp.scores, grasp.mask)
    assert kept.max() <= dropped.min()
    inverted = find_mask("grasp", mlp, data, 0.3, invert=True)
    kept, dropped = kept_and_dropped(inverted.scores, inverted.mask)
    assert kept.min() >= dropped.max()
    assert invert_by_scores(grasp.scores, grasp.mask.num_kept(), "grasp").equals(inverted.mask)
    absolute = find_mask("grasp-abs", mlp, data, 0.3)
    assert all(torch.equal(absolute.scores[n], grasp.scores[n].abs()) for n in grasp.scores)
    kept, dropped = kept_and_dropped(absolute.scores, absolute.mask)
    assert kept.min() >= dropped.max()


def test_grasp_samples_are_class_balanced(data):
    batches = class_balanced_batches(data, 5, 50, 20)
    labels = torch.cat([y for _, y in batches])
    assert [len(y) for _, y in batches] == [20, 20, 10]
    assert torch.bincount(labels, minlength=10).tolist() == [5] * 10
    examples = torch.cat([x for x, _ in batches])
    assert len(torch.unique(examples, dim=0)) == 50  # no example picked twice


def test_scoring_batches_are_a_seeded_sample_of_the_training_set(data):
    batches = scoring_batches(data, 0, 2, 40)
    assert [len(y) for _, y in batches] == [40, 40]
    again = scoring_batches(data, 0, 2, 40)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    other = scoring_batches(data, 1, 2, 40)
    assert not torch.equal(batches[0][0], other[0][0])


# ---- Iterative SNIP and FORCE ------------------------------------------------------------------

@pytest.mark.parametrize("invert", [False, True])
def test_iter_snip_masks_are_nested_and_follow_the_schedule(mlp, data, invert):
    request = build_request("iter-snip", mlp, data, 0.05, iterations=6, invert=invert)
    rounds = list(gradient_rounds(request, revive=False))
    total = rounds[0].mask.num_total()
    assert [r.mask.num_kept() for r in rounds] == schedule_counts(0.05, total, 6)
    for earlier, later in zip(rounds, rounds[1:]):
        for name in later.mask.names():
            assert not (later.mask[name] & ~earlier.mask[name]).any()  # a pruned weight never returns
            assert (later.scores[name][~earlier.mask[name]] == 0).all()  # and scores nothing
    assert find_mask("iter-snip", mlp, data, 0.05, iterations=6, invert=invert).info["revivals"] == 0


def test_force_can_revive_weights_pruned_in_an_earlier_round(mlp, data):
    request = build_request("force", mlp, data, 0.05, iterations=6)
    rounds = list(gradient_rounds(request, revive=True))
    ever_pruned = {n: torch.zeros_like(m) for n, m in rounds[0].mask.tensors.items()}
    revived = 0
    for r in rounds:
        revived += sum(int((r.mask[n] & ever_pruned[n]).sum()) for n in r.mask.names())
        ever_pruned = {n: ever_pruned[n] | ~r.mask[n] for n in r.mask.names()}
    assert revived > 0
    assert rounds[-1].mask.num_kept() == round(0.05 * rounds[-1].mask.num_total())
    assert find_mask("force", mlp, data, 0.05, iterations=6).info["revivals"] == revived


# ---- SynFlow -----------------------------------------------------------------------------------

def bias_free_relu_net(widths, seed=0):
    torch.manual_seed(seed)
    layers = []
    for w_in, w_out in zip(widths, widths[1:]):
        layers += [nn.Linear(w_in, w_out, bias=False), nn.ReLU()]
    net = nn.Sequential(*layers[:-1])
    net.prunable_names = [f"{2 * i}.weight" for i in range(len(widths) - 1)]
    net.output_name = net.prunable_names[-1]
    net.architecture = {"input_shape": [widths[0]]}
    return net


@pytest.mark.parametrize("iterations", [1, 5])
def test_synflow_conserves_flow_layer_by_layer(iterations):
    with torch.random.fork_rng():
        net = bias_free_relu_net([6, 12, 9, 4])
    result = find_mask("synflow", net, None, 0.3, iterations=iterations)
    assert all(s.dtype == torch.float64 for s in result.scores.values())
    sums = [result.scores[n].sum().item() for n in net.prunable_names]
    assert min(sums) > 0
    assert max(sums) - min(sums) <= 1e-9 * max(sums)


@pytest.mark.parametrize("invert", [False, True])
def test_synflow_rounds_are_nested_and_end_exactly_on_the_target(mlp, invert):
    rounds = list(synflow_rounds(build_request("synflow", mlp, None, 0.03, iterations=8, invert=invert)))
    assert [r.mask.num_kept() for r in rounds] == schedule_counts(0.03, 528, 8)
    for earlier, later in zip(rounds, rounds[1:]):
        assert all(not (later.mask[n] & ~earlier.mask[n]).any() for n in later.mask.names())


def test_synflow_avoids_the_layer_collapse_of_magnitude_pruning():
    model = create_model("mlp_256_256_256", (4,), 10, seed=0)
    magnitude = find_mask("magnitude", model, None, 0.002)
    synflow = find_mask("synflow", model, None, 0.002)
    assert len(magnitude.collapsed_layers) == 3
    assert synflow.collapsed_layers == []

    def flow(mask):  # the synaptic flow R left in the masked |θ| network: zero iff no input-output path
        net = copy.deepcopy(model).double()
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.abs_()
                if name in mask.tensors:
                    p.mul_(mask[name])
                else:
                    p.zero_()
        return net(torch.ones(1, 4, dtype=torch.float64)).sum().item()
    assert flow(magnitude.mask) == 0 and flow(synflow.mask) > 0


# ---- Inversion and ablations -------------------------------------------------------------------

def test_find_mask_invert_matches_invert_by_scores_and_keeps_the_smallest_magnitudes(mlp):
    count = round(0.2 * 528)
    inverted = find_mask("magnitude", mlp, None, 0.2, invert=True)
    weights = {n: p.detach().abs() for n, p in mlp.named_parameters() if n in mlp.prunable_names}
    kept, dropped = kept_and_dropped(weights, inverted.mask)
    assert len(kept) == count and kept.max() <= dropped.min()
    assert invert_by_scores(inverted.scores, count, "magnitude").equals(inverted.mask)


@pytest.mark.parametrize("method", SCORING_METHODS)
def test_inverting_the_complementary_count_gives_the_complement(mlp, data, method):
    best = find_mask(method, mlp, data, 0.3, iterations=1 if PAI_METHODS[method].iterative else None)
    assert len(torch.unique(flat(best.scores))) == best.mask.num_total()  # distinct scores, no ties
    worst = invert_by_scores(best.scores, best.mask.num_total() - best.mask.num_kept(), method)
    assert all(torch.equal(worst[n], ~best.mask[n]) for n in best.mask.names())


def test_invert_by_scores_rejects_methods_without_scores(mlp):
    scores = {n: torch.rand(3) for n in ("a", "b")}
    with pytest.raises(TicketlabError, match="no per-weight scores"):
        invert_by_scores(scores, 2, "erk")
    with pytest.raises(TicketlabError, match="cannot keep"):
        invert_by_scores(scores, 7, "snip")


def test_shuffle_layerwise_keeps_layer_counts_and_moves_weights(mlp, data):
    mask = find_mask("snip", mlp, data, 0.2).mask
    shuffled = shuffle_layerwise(mask, seed=4)
    assert {n: int(t.sum()) for n, t in shuffled.tensors.items()} == {n: int(t.sum()) for n, t in mask.tensors.items()}
    assert not torch.equal(shuffled["hidden.0.weight"], mask["hidden.0.weight"])
    assert shuffle_layerwise(mask, seed=4).equals(shuffled) and not shuffle_layerwise(mask, seed=5).equals(shuffled)


def test_random_global_keeps_the_total_and_ignores_layer_counts(mlp, data):
    mask = find_mask("magnitude", mlp, data, 0.1).mask
    randomized = random_global(mask, seed=0)
    assert randomized.num_kept() == mask.num_kept() and randomized.shapes() == mask.shapes()
    assert randomized.layer_densities() != mask.layer_densities()
    assert random_global(mask, seed=0).equals(randomized)


def test_grasp_halves_split_each_batch_as_the_reference_code_does():
    from ticketlab.pai.grasp import halves
    x = torch.arange(12.0).reshape(6, 2)
    y = torch.tensor([2, 0, 1, 2, 0, 1])  # round-robin over classes, as class_balanced_batches gives
    split = halves([(x, y), (x[:1], y[:1])])
    # Ordered by class (stable), then N // 2 first; a one-example batch has no empty half.
    assert [part[1].tolist() for part in split] == [[0, 0, 1], [1, 2, 2], [2]]
    assert [part[0][:, 0].tolist() for part in split[:2]] == [[2.0, 8.0, 4.0], [10.0, 0.0, 6.0]]


def test_grasp_batchnorm_depends_on_the_batch_and_halves_are_the_default(mlp, data, image_data):
    # Without BatchNorm, halves and the whole batch give the same scores (up to rounding).
    halved = find_mask("grasp", mlp, data, 0.2, seed=1, batch_size=60)
    whole = find_mask("grasp", mlp, data, 0.2, seed=1, batch_size=60, grasp_batches="whole")
    for name in halved.scores:
        assert torch.allclose(halved.scores[name], whole.scores[name], rtol=1e-5, atol=1e-12)
    assert halved.info["grasp_batches"] == "halves"
    # With BatchNorm, each half is normalized with its own statistics: other scores.
    net = create_model("resnet8_w4", image_data.input_shape, image_data.num_classes, seed=0)
    halved = find_mask("grasp", net, image_data, 0.2, seed=1, batch_size=32)
    whole = find_mask("grasp", net, image_data, 0.2, seed=1, batch_size=32, grasp_batches="whole")
    assert any(not torch.allclose(halved.scores[n], whole.scores[n], rtol=1e-3) for n in halved.scores)
    with pytest.raises(TicketlabError, match="grasp_batches"):
        find_mask("grasp", mlp, data, 0.2, grasp_batches="quarters")


def test_grasp_runs_are_renamed_by_the_new_default_and_other_runs_are_not():
    import hashlib
    import json
    from ticketlab.config import LayerConfig, PaiConfig, config_hash

    def old_hash(kind, values):  # the run name before GraSP's batch mode was a field
        return hashlib.sha256(json.dumps({"kind": kind, "values": values}, sort_keys=True).encode()).hexdigest()[:10]

    assert config_hash("prune", {"pai": PaiConfig(method="snip")}) == old_hash("prune", {})  # snip is the default
    assert config_hash("prune", {"pai": PaiConfig(method="grasp")}) != old_hash("prune", {"pai.method": "grasp"})
    assert config_hash("prune", {"pai": PaiConfig(method="grasp", grasp_batches="whole")}) != \
        config_hash("prune", {"pai": PaiConfig(method="grasp")})
    assert PaiConfig(method="grasp").grasp_batches == "halves" and PaiConfig(method="snip").grasp_batches is None
    assert config_hash("layers", {"layers": LayerConfig()}) != old_hash("layers", {})
    assert config_hash("layers", {"layers": LayerConfig(criterion="snip")}) == old_hash("layers", {"layers.criterion": "snip"})
