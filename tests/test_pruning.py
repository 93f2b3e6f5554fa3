"""Masks and exact-count selection: counts, ties, determinism, packed storage."""

import math

import torch
from hypothesis import given, settings, strategies as st

from ticketlab.mask import Mask
from ticketlab.pruning import keep_top_k, magnitude_prune, prune_count


def random_weights(seed, shapes):
    g = torch.Generator().manual_seed(seed)
    return {f"l{i}.weight": torch.randn(*s, generator=g) for i, s in enumerate(shapes)}


shapes_strategy = st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12)), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None)
@given(shapes=shapes_strategy, seed=st.integers(0, 10_000), fraction=st.floats(0.05, 0.95),
       strategy=st.sampled_from(["global", "layerwise"]))
def test_magnitude_prune_removes_exact_count_and_only_survivors(shapes, seed, fraction, strategy):
    weights = random_weights(seed, shapes)
    mask = Mask({n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()})
    for _ in range(3):
        new = magnitude_prune(mask, weights, fraction, strategy)
        if strategy == "global":
            assert new.num_kept() == mask.num_kept() - prune_count(mask.num_kept(), fraction)
        else:
            for n in mask.names():
                alive = int(mask[n].sum())
                assert int(new[n].sum()) == alive - prune_count(alive, fraction)
        for n in mask.names():  # a pruned weight never comes back
            assert not (new[n] & ~mask[n]).any()
        mask = new


def test_global_prune_keeps_the_largest_magnitudes():
    weights = random_weights(0, [(20, 30), (10, 5)])
    mask = Mask({n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()})
    new = magnitude_prune(mask, weights, 0.5)
    kept = torch.cat([weights[n].abs()[new[n]] for n in new.names()])
    dropped = torch.cat([weights[n].abs()[~new[n]] for n in new.names()])
    assert kept.min() >= dropped.max()


def test_separate_output_rate():
    weights = random_weights(1, [(50, 40), (10, 50)])
    mask = Mask({n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()})
    new = magnitude_prune(mask, weights, 0.2, "layerwise", output_name="l1.weight", output_fraction=0.1)
    assert int(new["l0.weight"].sum()) == 2000 - 400
    assert int(new["l1.weight"].sum()) == 500 - 50


def test_ties_still_give_exact_counts_and_the_same_mask_every_time():
    scores = {"a": torch.zeros(7, 9), "b": torch.ones(4, 4)}
    alive = Mask({n: torch.ones_like(s, dtype=torch.bool) for n, s in scores.items()})
    first = keep_top_k(scores, alive, 30)
    assert first.num_kept() == 30
    assert int(first["b"].sum()) == 16  # all of the higher scores are kept before any tie-break
    assert keep_top_k(scores, alive, 30).equals(first)


@settings(max_examples=30, deadline=None)
@given(shapes=st.lists(st.lists(st.integers(1, 7), min_size=1, max_size=4), min_size=1, max_size=3),
       seed=st.integers(0, 1000))
def test_packed_mask_round_trips_bit_for_bit(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    mask = Mask({f"t{i}": torch.rand(*s, generator=g) < 0.5 for i, s in enumerate(shapes)})
    packed = mask.packed()
    for name, shape in mask.shapes().items():
        assert packed[name].numel() == math.ceil(math.prod(shape) / 8)
    assert Mask.from_packed(packed, mask.shapes()).equals(mask)
