"""Paired statistics and three-valued verdicts (stats.py): exact known values, each rule's branch."""

import itertools
import math

import pytest

from ticketlab import stats
from ticketlab.errors import TicketlabError


def test_t_quantiles_match_closed_forms():
    # df = 1 is Cauchy: t = tan(π(p − ½)); df = 2: P(|T| ≤ t) = t / √(2 + t²).
    assert stats.t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-12)
    assert stats.t_quantile(0.975, 2) == pytest.approx(math.sqrt(2 * 0.95 ** 2 / (1 - 0.95 ** 2)), rel=1e-12)
    # Tabulated values (any t table) for larger df, and the normal limit.
    assert stats.t_quantile(0.975, 4) == pytest.approx(2.776445, abs=1e-6)
    assert stats.t_quantile(0.975, 30) == pytest.approx(2.042272, abs=1e-6)
    assert stats.t_quantile(0.975, 2000) == pytest.approx(1.961151, abs=1e-5)


def test_t_interval_by_hand():
    # Differences 1, 2, 3: mean 2, sample std 1, standard error 1/√3, df 2.
    comparison = stats.paired({0: 11.0, 1: 12.0, 2: 13.0}, {0: 10.0, 1: 10.0, 2: 10.0})
    half = math.sqrt(2 * 0.95 ** 2 / (1 - 0.95 ** 2)) / math.sqrt(3)
    assert comparison.n == 3 and comparison.differences == (1.0, 2.0, 3.0)
    assert comparison.mean_difference == 2.0 and comparison.std_difference == 1.0
    assert comparison.ci == pytest.approx((2 - half, 2 + half), rel=1e-12)
    # t = 2√3 with df 2: p = 1 − t/√(2 + t²) = 1 − √(12/14).
    assert comparison.t_statistic == pytest.approx(2 * math.sqrt(3))
    assert comparison.p_value == pytest.approx(1 - math.sqrt(12 / 14), rel=1e-10)


def test_pairs_by_seed_not_by_position():
    comparison = stats.paired({"2": 0.5, "0": 0.9, "7": 0.1}, {0: 0.8, 2: 0.3, 5: 0.4})
    assert comparison.seeds == (0, 2) and comparison.unpaired_seeds == (5, 7)
    assert comparison.differences == pytest.approx((0.1, 0.2))


def test_sign_test_exact():
    assert stats.sign_test_p([0.1, 0.2, 0.3]) == 0.25  # 2 · (½)³
    assert stats.sign_test_p([1] * 6) == 2 / 64
    assert stats.sign_test_p([1, -1, 0, 2]) == 1.0  # the zero dropped: 2 of 3 positive
    assert stats.sign_test_p([0, 0]) == 1.0


def brute_force_wilcoxon(differences):
    nonzero = [d for d in differences if d != 0]
    magnitudes = sorted(abs(d) for d in nonzero)
    rank = {m: (magnitudes.index(m) + 1 + len(magnitudes) - magnitudes[::-1].index(m)) / 2 for m in magnitudes}
    ranks = [rank[abs(d)] for d in nonzero]
    observed = sum(r for r, d in zip(ranks, nonzero) if d > 0)
    sums = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product((0, 1), repeat=len(ranks))]
    tail = min(sum(s <= observed for s in sums), sum(s >= observed for s in sums))
    return min(1.0, 2 * tail / len(sums))


@pytest.mark.parametrize("differences", [[0.3, 0.1, 0.2, 0.5, 0.4], [1, -1, 2], [0.5, -0.2, 0.5, 0, 1.5, -0.7, 0.2],
                                         [-3, -1, -2, 4]])
def test_wilcoxon_exact_against_enumeration(differences):
    assert stats.wilcoxon_p(differences) == pytest.approx(brute_force_wilcoxon(differences), abs=1e-15)


def test_wilcoxon_known_value():
    assert stats.wilcoxon_p([1, 2, 3, 4, 5]) == 2 / 32  # all positive: only one of 32 sign choices as extreme


def test_verdict_supported_not_supported_inconclusive():
    consistent_loss = stats.paired({0: 0.90, 1: 0.91, 2: 0.89}, {0: 0.80, 1: 0.82, 2: 0.79})
    assert stats.verdict(consistent_loss).label == stats.SUPPORTED
    # Large and variable (68, 9, 32 pp): the interval straddles zero with 3 seeds.
    variable = stats.paired({0: 0.9, 1: 0.8, 2: 0.85}, {0: 0.22, 1: 0.71, 2: 0.53})
    result = stats.verdict(variable)
    assert result.label == stats.INCONCLUSIVE and "straddles" in result.reason
    reversed_ = stats.paired({0: 0.80, 1: 0.82, 2: 0.79}, {0: 0.90, 1: 0.91, 2: 0.89})
    assert stats.verdict(reversed_).label == stats.NOT_SUPPORTED
    # Tolerance: an interval around zero but below +1 pp rules out a 1 pp effect.
    tiny = stats.paired({0: 0.9000, 1: 0.9010, 2: 0.8995}, {0: 0.9002, 1: 0.9005, 2: 0.9000})
    assert stats.verdict(tiny).label == stats.INCONCLUSIVE
    assert stats.verdict(tiny, tolerance=0.01).label == stats.NOT_SUPPORTED
    # A margin moves the bar: +10 pp ± small is not above +20 pp.
    assert stats.verdict(consistent_loss, 0.2).label == stats.NOT_SUPPORTED


def test_verdict_inconclusive_with_one_seed_or_untrained_side():
    one = stats.paired({0: 0.9}, {0: 0.1})
    assert stats.verdict(one).label == stats.INCONCLUSIVE
    ahead_of_stuck = stats.paired({0: 0.80, 1: 0.81, 2: 0.82}, {0: 0.22, 1: 0.15, 2: 0.35})
    assert stats.verdict(ahead_of_stuck).label == stats.SUPPORTED
    stuck = stats.verdict(ahead_of_stuck, chance=0.1, must_train="b", names=("the ticket", "LTR"))
    assert stuck.label == stats.INCONCLUSIVE and "LTR did not train in seeds 0, 1" in stuck.reason
    # The side that lost may sit at chance: that is a clear loss, not an untrained baseline.
    assert stats.verdict(ahead_of_stuck, chance=0.1, must_train="a").label == stats.SUPPORTED


def test_non_finite_values_refused():
    with pytest.raises(TicketlabError):
        stats.paired({0: float("nan")}, {0: 0.5})


def test_over_range_needs_the_range_covered():
    yes, no, maybe = (stats.Verdict(label, "") for label in stats.VERDICTS)
    # "From 50% to 7%" but the measured levels stop at 17%.
    partial = stats.over_range({0.5: yes, 0.3: yes, 0.17: yes}, 0.07, 0.5)
    assert partial.label == stats.INCONCLUSIVE and "not covered" in partial.reason
    assert stats.over_range({0.5: yes, 0.2: yes, 0.07: yes, 0.01: no}, 0.07, 0.5).label == stats.SUPPORTED
    assert stats.over_range({0.5: yes, 0.2: no, 0.07: yes}, 0.07, 0.5).label == stats.NOT_SUPPORTED
    assert stats.over_range({0.5: yes, 0.2: maybe, 0.07: yes}, 0.07, 0.5).label == stats.INCONCLUSIVE
    assert stats.over_range({0.07: yes}, 0.07, 0.5).label == stats.INCONCLUSIVE
    # A level beyond the sparse end reaches it; only the levels inside are judged.
    assert stats.over_range({0.5: yes, 0.125: yes, 0.0625: no}, 0.07, 0.5).label == stats.SUPPORTED


def test_combine_and_judge():
    yes, no, maybe = (stats.Verdict(label, "") for label in stats.VERDICTS)
    assert stats.combine([yes, yes]).label == stats.SUPPORTED
    assert stats.combine([yes, maybe]).label == stats.INCONCLUSIVE
    assert stats.combine([yes, maybe, no]).label == stats.NOT_SUPPORTED
    assert stats.combine([]).label == stats.INCONCLUSIVE
    judged = stats.judge({0: 0.9, 1: 0.92}, {0: 0.8, 1: 0.85}, tolerance=0.01)
    assert judged["verdict"] in stats.VERDICTS and judged["rule"] == stats.RULE
    assert judged["n"] == 2 and judged["tolerance"] == 0.01 and set(judged["differences"]) == {"0", "1"}
