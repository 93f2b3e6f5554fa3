"""Concrete Ticket Search: GradBalance and the Lagrange balance, the relaxed mask and its gradient,
objectives, exact extraction, isolation of the caller's model and RNG, determinism, log and info."""

import math

import pytest
import torch
import torch.nn.functional as F

from ticketlab.cts import (ConcreteSearch, CtsConfig, DualAscent, GradBalance, extract_mask, gradbalance_target,
                           search_mask, smoothed)
from ticketlab.cts.concrete import RELAXATIONS, RelaxedWeights, expected_density, keep_probability, logit
from ticketlab.cts.objectives import feature_mse, forward_kl, reverse_kl
from ticketlab.data import load_dataset
from ticketlab.errors import TicketlabError
from ticketlab.models import create_model

TINY = dict(batch_size=32, lr=0.03)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images():
    return load_dataset("synthetic-images")


def tiny_mlp(data):
    return create_model("mlp_32_16", data.input_shape, data.num_classes, seed=0)


def tiny_resnet(data):
    return create_model("resnet8_w4", data.input_shape, data.num_classes, seed=0)


# --- GradBalance and the Lagrange balance on hand-made gradients -----------------------------------

def test_gradbalance_target_is_zero_at_or_below_budget():
    objective_grad, sparsity_grad = torch.tensor([3.0, 4.0]), torch.tensor([1.0, 0.0])
    assert gradbalance_target(objective_grad, sparsity_grad, expected_kept=5.0, budget=5.0) == 0.0
    assert gradbalance_target(objective_grad, sparsity_grad, expected_kept=4.0, budget=5.0) == 0.0
    assert gradbalance_target(objective_grad, sparsity_grad, expected_kept=5.5, budget=5.0) > 0.0


def test_gradbalance_target_equalizes_the_norms_above_budget():
    objective_grad, sparsity_grad = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.1, 0.2, 0.2])
    target = gradbalance_target(objective_grad, sparsity_grad, expected_kept=2.0, budget=1.0)
    assert target * float(sparsity_grad.norm()) == pytest.approx(float(objective_grad.norm()), rel=1e-6)
    assert target == pytest.approx(5.0 / 0.3, rel=1e-6)


def test_smoothing_takes_the_first_target_then_averages():
    assert smoothed(None, 7.0, 0.01) == 7.0
    assert smoothed(7.0, 0.0, 0.01) == pytest.approx(6.93)
    assert smoothed(2.0, 12.0, 0.5) == pytest.approx(7.0)


def test_gradbalance_step_combines_gradients_and_smooths():
    logits = torch.tensor([2.0, 0.0, -1.0, 3.0], dtype=torch.float64)  # Σσ(a) ≈ 2.59
    kept = torch.sigmoid(logits)
    sparsity_grad = kept * (1 - kept)
    objective_grad = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64)
    balance = GradBalance(budget=1.0, smoothing=0.01)

    first = balance.step(logits, objective_grad.clone())  # above budget, first step: λ = λ*
    first_target = float(objective_grad.norm() / sparsity_grad.norm())
    assert first.multiplier == pytest.approx(first_target)
    assert first.expected_kept == pytest.approx(float(kept.sum()))
    assert torch.allclose(first.gradient, objective_grad + first_target * sparsity_grad)

    balance.budget = 3.0  # now below budget: λ* = 0, λ decays
    second = balance.step(logits, objective_grad.clone())
    assert second.multiplier == pytest.approx(0.99 * first_target)
    assert torch.allclose(second.gradient, objective_grad + 0.99 * first_target * sparsity_grad)

    balance.budget = 1.0
    doubled = 2 * objective_grad
    third = balance.step(logits, doubled.clone())
    assert third.multiplier == pytest.approx(0.99 * 0.99 * first_target + 0.01 * 2 * first_target)


def test_gradbalance_pushes_saturated_logits():
    # σ(a) rounds to 1 in float32 for a > 17; the sparsity gradient must not vanish there.
    logits = torch.full((4,), 20.0)
    step = GradBalance(budget=1.0, smoothing=0.01).step(logits, torch.tensor([1e-3, 0.0, 0.0, 0.0]))
    assert step.multiplier > 0
    assert bool((step.gradient[1:] > 0).all())


def test_dual_ascent_uses_current_multiplier_then_ascends():
    logits = torch.zeros(4, dtype=torch.float64)  # Σσ = 2, g_S = 0.25 each
    objective_grad = torch.tensor([1.0, 0.0, -1.0, 0.5], dtype=torch.float64)
    balance = DualAscent(budget=1.0, total=4, dual_lr=8.0)
    first = balance.step(logits, objective_grad.clone())
    assert first.multiplier == 0.0 and torch.equal(first.gradient, objective_grad)
    assert balance.multiplier == pytest.approx(8.0 * (2 - 1) / 4)
    second = balance.step(logits, objective_grad.clone())
    assert torch.allclose(second.gradient, objective_grad + (2.0 / 4) * 0.25)
    assert balance.multiplier == pytest.approx(4.0)
    balance.budget = 5.0  # 4 + 8 * (2 − 5)/4 = −2: projected to 0
    balance.step(logits, objective_grad.clone())
    assert balance.multiplier == 0.0


# --- The balance in a search --------------------------------------------------------------------

def test_gradbalance_brings_expected_density_from_099_to_target(tiny_data):
    config = CtsConfig(lr=0.02, batch_size=32, init_density=0.99)
    result = search_mask(tiny_mlp(tiny_data), tiny_data, 0.1, 800, config, log_every=100)
    assert result.log[0]["expected_density"] > 0.8 and result.log[0]["lambda"] > 0
    assert abs(result.info["final_expected_density"] - 0.1) <= 0.1 * 0.1


def test_lagrange_lands_near_the_budget(tiny_data):
    # Looser than GradBalance: the multiplier oscillates around the budget (within ~5% here), 15% allowed.
    config = CtsConfig(balance="lagrange", **TINY)
    result = search_mask(tiny_mlp(tiny_data), tiny_data, 0.1, 400, config, log_every=25)
    assert max(entry["lambda"] for entry in result.log) > 0  # the constraint became active
    budget_density = config.budget_factor * 0.1
    assert abs(result.info["final_expected_density"] - budget_density) <= 0.15 * budget_density
    assert result.info["density"] == pytest.approx(0.1, abs=1e-3)


# --- Relaxed mask -------------------------------------------------------------------------------

RELAXATION_FORMULAS = {"scaled-sum": lambda a, noise, tau: torch.sigmoid((a + noise) / tau),
                       "scaled-noise": lambda a, noise, tau: torch.sigmoid(a + noise / tau)}


@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_relaxed_weights_match_autograd_of_the_formula(relaxation):
    theta = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    logits = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    relaxed = RelaxedWeights(theta, [3, 4], [torch.Size([3]), torch.Size([2, 2])], 2 / 3,
                             torch.Generator().manual_seed(3), relaxation)
    noise = relaxed.draw_noise().clone()
    weights = relaxed(logits, noise)
    upstream = [torch.randn(w.shape, dtype=torch.float64) for w in weights]
    (grad,) = torch.autograd.grad(sum((w * u).sum() for w, u in zip(weights, upstream)), [logits])

    reference_weights = theta * RELAXATION_FORMULAS[relaxation](logits, noise, 2 / 3)
    assert torch.allclose(torch.cat([w.reshape(-1) for w in weights]), reference_weights)
    (reference_grad,) = torch.autograd.grad((reference_weights * torch.cat([u.reshape(-1) for u in upstream])).sum(),
                                            [logits])
    assert torch.allclose(grad, reference_grad)


@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_keep_probability_is_sigma_a_or_sigma_tau_a(relaxation):
    """A sample keeps a weight (m > ½) with probability σ(a) under scaled-sum and σ(τa) under scaled-noise:
    at κ = 0.7% and τ = 2/3 the authors' form starts about 5κ kept, while the penalty counts σ(a) = κ."""
    count, tau = 400_000, 2 / 3
    logits = torch.full((count,), logit(0.007), dtype=torch.float64)
    relaxed = RelaxedWeights(torch.ones(count, dtype=torch.float64), [count], [torch.Size([count])], tau,
                             torch.Generator().manual_seed(0), relaxation)
    (weights,) = relaxed(logits, relaxed.draw_noise())
    kept = float((weights > 0.5).double().mean())
    expected = keep_probability(logits, relaxation, tau)
    assert expected == pytest.approx(1 / (1 + math.exp(-(tau if relaxation == "scaled-noise" else 1) * logit(0.007))))
    assert kept == pytest.approx(expected, rel=0.05)
    assert expected_density(logits) == pytest.approx(0.007)
    if relaxation == "scaled-noise":
        assert 4.5 < expected / 0.007 < 5.5


def test_default_relaxation_keeps_run_names_and_the_authors_form_is_reachable(tiny_data):
    from ticketlab.config import config_hash
    assert CtsConfig().relaxation == "scaled-sum"
    assert config_hash("prune", {"cts": CtsConfig(relaxation="scaled-sum")}) == config_hash("prune", {"cts": CtsConfig()})
    assert config_hash("prune", {"cts": CtsConfig(relaxation="scaled-noise")}) != config_hash("prune", {"cts": CtsConfig()})
    common = dict(TINY)
    ours = search_mask(tiny_mlp(tiny_data), tiny_data, 0.1, 5, CtsConfig(**common))
    authors = search_mask(tiny_mlp(tiny_data), tiny_data, 0.1, 5, CtsConfig(**common, relaxation="scaled-noise"))
    assert "final_keep_probability" not in ours.info
    assert authors.info["final_keep_probability"] > authors.info["final_expected_density"]
    assert authors.info["config"]["relaxation"] == "scaled-noise"


def test_noise_is_logistic():
    relaxed = RelaxedWeights(torch.zeros(200_000), [200_000], [torch.Size([200_000])], 2 / 3,
                             torch.Generator().manual_seed(0))
    noise = relaxed.draw_noise()
    assert bool(torch.isfinite(noise).all())
    assert abs(float(noise.mean())) < 0.02
    assert float(noise.var()) == pytest.approx(math.pi ** 2 / 3, rel=0.03)  # logistic(0, 1) variance


def test_logits_start_at_logit_density_and_budget_is_11_percent_over(tiny_data):
    search = ConcreteSearch(tiny_mlp(tiny_data), tiny_data, 0.2, CtsConfig(**TINY), lr=0.03, total_steps=10)
    assert torch.allclose(search.logits.detach(), torch.full_like(search.logits, math.log(0.2 / 0.8)))
    assert logit(0.99) == pytest.approx(math.log(99))
    assert search.budget == pytest.approx(1.1 * 0.2 * search.net.total)
    assert search.count == round(0.2 * search.net.total)


# --- Objectives ---------------------------------------------------------------------------------

def test_kl_directions_match_their_definitions():
    sparse, dense = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.5]])
    p_sparse, p_dense = F.softmax(sparse, 1), F.softmax(dense, 1)
    assert float(reverse_kl(sparse, dense)) == pytest.approx(float((p_sparse * (p_sparse / p_dense).log()).sum()))
    assert float(forward_kl(sparse, dense)) == pytest.approx(float((p_dense * (p_dense / p_sparse).log()).sum()))
    assert float(reverse_kl(sparse, dense)) != pytest.approx(float(forward_kl(sparse, dense)))


def test_feature_mse_compares_standardized_features():
    dense = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
    assert float(feature_mse(3 * dense + 1, dense)) == pytest.approx(0.0, abs=1e-6)  # per-feature scale and shift
    assert float(feature_mse(-dense, dense)) == pytest.approx(4.0, rel=1e-3)  # standardized: (−z − z)² = 4z²


@pytest.mark.parametrize("objective", ["kl", "forward-kl", "feature"])
def test_objective_is_exactly_zero_with_a_mask_of_ones(images, objective):
    search = ConcreteSearch(tiny_resnet(images), images, 0.2, CtsConfig(objective=objective, **TINY),
                            lr=0.03, total_steps=10)
    assert search.net.work.training  # BatchNorm normalizes with batch statistics during the search
    x, y = search.batches.next()
    assert float(search.objective_value(x, y).detach()) > 0  # a real mask changes the outputs
    with torch.no_grad():
        search.logits.fill_(math.inf)  # σ(+∞ + L) = 1 exactly, whatever the noise
    assert float(search.objective_value(x, y).detach()) == 0.0


def test_objective_is_scaled(tiny_data):
    values = []
    for scale in (1.0, 100.0):
        search = ConcreteSearch(tiny_mlp(tiny_data), tiny_data, 0.2, CtsConfig(objective_scale=scale, **TINY),
                                lr=0.03, total_steps=5)
        values.append(float(search.objective_value(*search.batches.next()).detach()))
    assert values[1] == pytest.approx(100 * values[0], rel=1e-5)


# --- Extraction ---------------------------------------------------------------------------------

def test_extraction_is_exact_with_tied_logits():
    logits = {"a": torch.zeros(2, 2), "b": torch.zeros(5)}
    for invert in (False, True):
        mask = extract_mask(logits, 6, invert=invert)
        assert mask.num_kept() == 6
        assert bool(mask["a"].all()) and mask["b"].tolist() == [True, True, False, False, False]  # lower positions first


def test_extraction_keeps_the_top_and_invert_the_bottom():
    logits = {"a": torch.tensor([5.0, -1.0, 3.0]), "b": torch.tensor([[0.0, 4.0], [-2.0, 1.0]])}
    top = extract_mask(logits, 3)
    assert top["a"].tolist() == [True, False, True] and top["b"].tolist() == [[False, True], [False, False]]
    bottom = extract_mask(logits, 3, invert=True)
    assert bottom["a"].tolist() == [False, True, False] and bottom["b"].tolist() == [[True, False], [True, False]]


def test_search_keeps_round_density_times_d_and_invert_keeps_the_lowest(tiny_data):
    model = tiny_mlp(tiny_data)
    result = search_mask(model, tiny_data, 0.137, 30, CtsConfig(**TINY), invert=True)
    assert result.mask.num_kept() == round(0.137 * result.mask.num_total())
    kept = torch.cat([result.logits[n][result.mask[n]] for n in result.mask.names()])
    dropped = torch.cat([result.logits[n][~result.mask[n]] for n in result.mask.names()])
    assert float(kept.max()) <= float(dropped.min())
    assert result.mask.names() == model.prunable_names
    assert all(result.logits[n].shape == p.shape for n, p in model.named_parameters() if n in result.logits)


# --- Isolation and determinism --------------------------------------------------------------------

def test_search_leaves_model_mode_buffers_and_rng_untouched(images):
    model = tiny_resnet(images).eval()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    rng_before = torch.get_rng_state()
    search_mask(model, images, 0.2, 4, CtsConfig(**TINY), log_every=2)
    assert not model.training
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(rng_before, torch.get_rng_state())


def test_same_seed_same_mask_different_seed_different_mask(tiny_data):
    model = tiny_mlp(tiny_data)
    runs = [search_mask(model, tiny_data, 0.2, 40, CtsConfig(**TINY), seed=seed) for seed in (0, 0, 1)]
    assert runs[0].mask.equals(runs[1].mask)
    assert all(torch.equal(runs[0].logits[n], runs[1].logits[n]) for n in runs[0].logits)
    assert not runs[0].mask.equals(runs[2].mask)


def test_noise_and_batch_order_follow_the_seed(tiny_data):
    searches = [ConcreteSearch(tiny_mlp(tiny_data), tiny_data, 0.2, CtsConfig(**TINY), lr=0.03, total_steps=5, seed=seed)
                for seed in (0, 0, 1)]
    noises = [search.relaxed.draw_noise().clone() for search in searches]
    batches = [search.batches.next()[1] for search in searches]
    assert torch.equal(noises[0], noises[1]) and torch.equal(batches[0], batches[1])
    assert not torch.equal(noises[0], noises[2]) and not torch.equal(batches[0], batches[2])


# --- Log, info, schedule --------------------------------------------------------------------------

def test_log_fields_schedule_and_info(tiny_data):
    config = CtsConfig(**TINY)
    seen = []
    result = search_mask(tiny_mlp(tiny_data), tiny_data, 0.1, 25, config, log_every=10,
                         progress=lambda done, total: seen.append((done, total)))
    assert [entry["step"] for entry in result.log] == [10, 20, 25]
    assert all(set(entry) == {"step", "expected_density", "objective", "lambda", "lr"} for entry in result.log)
    assert result.log[1]["lr"] == 0.03 and result.log[2]["lr"] == pytest.approx(0.003)  # dropped at 22 = 88% of 25
    assert seen[-1] == (25, 25) and len(seen) == 25
    info = result.info
    assert info["method"] == "cts-kl" and info["search_steps"] == 25
    assert info["masked_forward_examples"] == info["examples_used"] == 25 * 32 - 8  # 600 = 18 batches of 32 + 24
    assert info["dense_forward_examples"] == info["examples_used"]
    assert info["density"] == result.mask.density() and info["target_density"] == 0.1
    assert info["final_expected_density"] == pytest.approx(float(torch.sigmoid(torch.cat(
        [v.reshape(-1) for v in result.logits.values()])).mean()))
    assert info["wall_time_seconds"] > 0


def test_task_objective_skips_the_dense_pass(tiny_data):
    result = search_mask(tiny_mlp(tiny_data), tiny_data, 0.1, 5, CtsConfig(objective="task", **TINY))
    assert result.info["method"] == "cts"
    assert result.info["examples_used"] == result.info["masked_forward_examples"] == 5 * 32
    assert result.info["dense_forward_examples"] == 0


def test_learning_rate_falls_back_to_the_training_lr(tiny_data):
    result = search_mask(tiny_mlp(tiny_data), tiny_data, 0.1, 2, CtsConfig(batch_size=32), training_lr=0.05)
    assert result.info["lr"] == 0.05
    with pytest.raises(TicketlabError, match="learning rate"):
        search_mask(tiny_mlp(tiny_data), tiny_data, 0.1, 2, CtsConfig(batch_size=32))


# --- Bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("density", [0, 1, 1.5, -0.1, float("nan")])
def test_density_outside_open_unit_interval_is_refused(tiny_data, density):
    with pytest.raises(TicketlabError, match="density"):
        search_mask(tiny_mlp(tiny_data), tiny_data, density, 5, CtsConfig(**TINY))


@pytest.mark.parametrize("options, match", [
    ({"objective": "mse"}, "objective"),
    ({"balance": "penalty"}, "balance"),
    ({"relaxation": "hard-concrete"}, "relaxation"),
    ({"temperature": 0}, "temperature"),
    ({"smoothing": 0}, "smoothing"),
    ({"lr_drop_at": 1.5}, "lr_drop_at"),
    ({"init_density": 1.0}, "init_density"),
    ({"temperature": float("nan")}, "temperature"),
    ({"search_steps": "nan%"}, "search-steps"),
])
def test_bad_config_is_refused(tiny_data, options, match):
    """The config refuses bad values when it is made, and search_mask refuses one changed afterwards."""
    with pytest.raises(TicketlabError, match=match):
        CtsConfig(**TINY, **options)
    config = CtsConfig(**TINY)
    for name, value in options.items():
        setattr(config, name, value)
    with pytest.raises(TicketlabError, match=match):
        search_mask(tiny_mlp(tiny_data), tiny_data, 0.1, 5, config)


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_search_steps_below_one_are_refused(tiny_data, steps):
    with pytest.raises(TicketlabError, match="search_steps"):
        search_mask(tiny_mlp(tiny_data), tiny_data, 0.1, steps, CtsConfig(**TINY))


def test_data_for_another_model_is_refused(tiny_data, images):
    with pytest.raises(TicketlabError, match="inputs"):
        search_mask(tiny_resnet(images), tiny_data, 0.1, 5, CtsConfig(**TINY))
