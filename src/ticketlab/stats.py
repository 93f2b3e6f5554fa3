"""Paired comparisons over seeds and the three-valued verdicts every report gives.

Seeds pair two variants: the same seed means the same θ₀, data order and scoring batches, so the
per-seed difference a[s] − b[s] removes what the seed does to both. `paired(a, b)` compares two
mappings seed → value over the seeds they share:
  - the differences d_s = a[s] − b[s], their mean d̄ and sample std s_d (n − 1 in the denominator);
  - the paired t-test: t = d̄ / (s_d / √n) with n − 1 degrees of freedom, its two-sided p-value and
    the 95% confidence interval d̄ ± t_{0.975, n−1} · s_d / √n. This is the test that decides;
  - beside it, for small n, two exact tests that assume no normality: the sign test (zero
    differences dropped; p = P(min(#+, #−) or fewer of the same sign), two-sided) and the Wilcoxon
    signed-rank test (zero differences dropped, tied |d| given their average rank; its exact null
    distribution counted). With 3 seeds neither can go below p = 0.25, which is why they are reported
    and not used to decide.
Student's t distribution is computed in closed form for integer degrees of freedom (Abramowitz &
Stegun 26.7.3–4) and its quantile by bisection: no scipy.stats import (a second at every start).

`verdict(comparison, margin, ...)` decides the claim "a exceeds b by more than `margin`"
(mean difference a − b > margin), in this order:
  1. inconclusive when fewer than two seeds pair up (no spread to judge a difference by);
  2. inconclusive when a side that must have trained did not: a seed's value at or below
     chance + 20% of the way from chance to 1 (10 classes: 28%) says the network did not train,
     and a comparison with it says nothing about the method;
  3. supported when the whole 95% CI lies above the margin;
  4. not supported when the whole CI lies below margin + tolerance: the data rule out an effect
     larger than the tolerance (tolerance 0: the CI lies below the margin);
  5. inconclusive otherwise: the CI straddles the margin (too few seeds or too much spread).
`over_range(verdicts, low, high)` decides a claim made over a range of densities: inconclusive
unless the measured densities reach both ends of the range (a level beyond an end reaches it; the
levels inside the range are judged, and a range needs two or more of them); then not supported if
any level is not supported, supported if every level is, else inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ticketlab.errors import TicketlabError

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE)
CONFIDENCE = 0.95
UNTRAINED_FRACTION = 0.2  # of the way from chance to 1: at or below it, a network did not train
RULE = ("paired by seed: differences a − b, paired t-test (two-sided) with a 95% t-interval; supported when "
        "the interval lies above the margin, not supported when it lies below the margin plus the "
        "tolerance, inconclusive otherwise or with fewer than 2 seeds or when a side that must train sits "
        "near chance; sign and Wilcoxon signed-rank tests (exact) reported beside it")


def t_cdf_two_sided(t: float, df: int) -> float:
    """P(|T| ≤ t) for Student's T with integer df ≥ 1, in closed form (Abramowitz & Stegun 26.7.3–4)."""
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df}")
    t = abs(t)
    if math.isinf(t):
        return 1.0
    theta = math.atan(t / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2 == 1:
        # (2/π)[θ + sinθ(cosθ + (2/3)cos³θ + (2·4)/(3·5)cos⁵θ + ... up to cos^(df−2)θ)]
        series, term = 0.0, math.cos(theta)
        for j in range(1, df - 1, 2):
            series += term
            term *= cos2 * (j + 1) / (j + 2)
        total = (2 / math.pi) * (theta + math.sin(theta) * series)
    else:
        # sinθ[1 + (1/2)cos²θ + (1·3)/(2·4)cos⁴θ + ... up to cos^(df−2)θ]
        series, term = 0.0, 1.0
        for j in range(0, df - 1, 2):
            series += term
            term *= cos2 * (j + 1) / (j + 2)
        total = math.sin(theta) * series
    return min(1.0, max(0.0, total))


def t_quantile(probability: float, df: int) -> float:
    """The t with P(T ≤ t) = probability (0.5 < probability < 1), by bisection on the closed-form CDF."""
    if not 0.5 < probability < 1:
        raise ValueError(f"probability must lie in (0.5, 1), got {probability}")
    target = 2 * probability - 1  # P(|T| ≤ t)
    low, high = 0.0, 1.0
    while t_cdf_two_sided(high, df) < target:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if t_cdf_two_sided(middle, df) < target:
            low = middle
        else:
            high = middle
        if high - low <= 1e-15 * high:
            break
    return (low + high) / 2


def sign_test_p(differences: Iterable[float]) -> float:
    """Exact two-sided sign test: zero differences dropped, p = min(1, 2 · P(X ≤ min(#+, #−))), X ~ Bin(n, ½)."""
    signs = [d for d in differences if d != 0]
    n = len(signs)
    if n == 0:
        return 1.0
    fewer = min(sum(d > 0 for d in signs), sum(d < 0 for d in signs))
    return min(1.0, 2 * sum(math.comb(n, j) for j in range(fewer + 1)) / 2 ** n)


def wilcoxon_p(differences: Iterable[float]) -> float:
    """Exact two-sided Wilcoxon signed-rank test: zeros dropped, ties given average ranks, the null
    distribution of W+ (sum of the positive differences' ranks) counted over all 2^n sign choices."""
    nonzero = sorted((d for d in differences if d != 0), key=abs)
    n = len(nonzero)
    if n == 0:
        return 1.0
    # Doubled average ranks, so that tied ranks (x.5) stay integers.
    doubled = [0] * n
    start = 0
    while start < n:
        end = start
        while end + 1 < n and abs(nonzero[end + 1]) == abs(nonzero[start]):
            end += 1
        for i in range(start, end + 1):
            doubled[i] = start + end + 2  # 2 · (mean of ranks start+1 .. end+1)
        start = end + 1
    w_plus = sum(r for r, d in zip(doubled, nonzero) if d > 0)
    counts = {0: 1}  # doubled W+ → number of sign choices giving it
    for rank in doubled:
        grown = dict(counts)
        for total, ways in counts.items():
            grown[total + rank] = grown.get(total + rank, 0) + ways
        counts = grown
    all_ways = 2 ** n
    at_most = sum(ways for total, ways in counts.items() if total <= w_plus)
    at_least = sum(ways for total, ways in counts.items() if total >= w_plus)
    return min(1.0, 2 * min(at_most, at_least) / all_ways)


@dataclass(frozen=True)
class PairedComparison:
    """a − b over the seeds both have. `ci`: the 95% t-interval of the mean difference (None below 2
    seeds); `p_value`: the paired t-test's, two-sided; `sign_p`, `wilcoxon_p`: the exact tests'."""
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    mean_a: float | None
    mean_b: float | None
    values_a: tuple[float, ...] = field(repr=False)
    values_b: tuple[float, ...] = field(repr=False)
    unpaired_seeds: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def mean_difference(self) -> float | None:
        return math.fsum(self.differences) / self.n if self.n else None

    @property
    def std_difference(self) -> float | None:
        if self.n < 2:
            return None
        mean = self.mean_difference
        return math.sqrt(math.fsum((d - mean) ** 2 for d in self.differences) / (self.n - 1))

    @property
    def ci(self) -> tuple[float, float] | None:
        if self.n < 2:
            return None
        half = t_quantile((1 + CONFIDENCE) / 2, self.n - 1) * self.std_difference / math.sqrt(self.n)
        return self.mean_difference - half, self.mean_difference + half

    @property
    def t_statistic(self) -> float | None:
        if self.n < 2:
            return None
        if self.std_difference == 0:
            return 0.0 if self.mean_difference == 0 else math.copysign(math.inf, self.mean_difference)
        return self.mean_difference / (self.std_difference / math.sqrt(self.n))

    @property
    def p_value(self) -> float | None:
        if self.n < 2:
            return None
        return 1.0 - t_cdf_two_sided(self.t_statistic, self.n - 1)

    @property
    def sign_p(self) -> float | None:
        return sign_test_p(self.differences) if self.n else None

    @property
    def wilcoxon_p(self) -> float | None:
        return wilcoxon_p(self.differences) if self.n else None

    def to_dict(self) -> dict:
        """Plain JSON: everything a report needs, the rule included."""
        ci = self.ci
        return {"n": self.n, "seeds": list(self.seeds), "differences": dict(zip(map(str, self.seeds), self.differences)),
                "mean_difference": self.mean_difference, "std_difference": self.std_difference,
                "ci_low": None if ci is None else ci[0], "ci_high": None if ci is None else ci[1],
                "confidence": CONFIDENCE, "t_statistic": _finite_or_none(self.t_statistic), "p_value": self.p_value,
                "sign_test_p": self.sign_p, "wilcoxon_p": self.wilcoxon_p, "unpaired_seeds": list(self.unpaired_seeds),
                "test": "paired t-test, two-sided"}


def _finite_or_none(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def paired(a: Mapping, b: Mapping) -> PairedComparison:
    """Compare two mappings seed → value (seeds as ints or their strings) over the seeds both hold."""
    a_values, b_values = _by_seed(a, "a"), _by_seed(b, "b")
    seeds = tuple(sorted(set(a_values) & set(b_values)))
    unpaired = tuple(sorted(set(a_values) ^ set(b_values)))
    values_a = tuple(a_values[s] for s in seeds)
    values_b = tuple(b_values[s] for s in seeds)
    return PairedComparison(seeds, tuple(x - y for x, y in zip(values_a, values_b)),
                            _mean(values_a), _mean(values_b), values_a, values_b, unpaired)


def _by_seed(values: Mapping, side: str) -> dict[int, float]:
    out = {}
    for seed, value in values.items():
        value = float(value)
        if not math.isfinite(value):
            raise TicketlabError(f"seed {seed} of a paired comparison has a non-finite value ({value}) on side {side}")
        out[int(seed)] = value
    return out


def _mean(values) -> float | None:
    return math.fsum(values) / len(values) if values else None


@dataclass(frozen=True)
class Verdict:
    """One of supported / not supported / inconclusive, with the reason in words."""
    label: str
    reason: str

    def to_dict(self) -> dict:
        return {"verdict": self.label, "reason": self.reason}


def trained_threshold(chance: float) -> float:
    """At or below this accuracy a network did not train: 20% of the way from chance to 1."""
    return chance + UNTRAINED_FRACTION * (1 - chance)


def verdict(comparison: PairedComparison, margin: float = 0.0, *, tolerance: float = 0.0, chance: float | None = None,
            must_train: str = "both", unit: float = 100.0, unit_name: str = "pp",
            names: tuple[str, str] = ("a", "b")) -> Verdict:
    """Decide "a exceeds b by more than `margin`" (rules in the module docstring). `chance`: the chance
    accuracy (1 / classes), to say which networks did not train; `must_train`: which side must have
    trained ("a", "b", "both", or "none"); `unit`, `unit_name`: how the reason writes differences;
    `names`: what the reason calls a and b."""
    if tolerance < 0:
        raise ValueError("tolerance must be ≥ 0")
    if must_train not in ("a", "b", "both", "none"):
        raise ValueError(f"must_train must be a, b, both or none, got {must_train!r}")
    if comparison.n < 2:
        return Verdict(INCONCLUSIVE, f"{comparison.n} paired seed{'s' if comparison.n != 1 else ''}: "
                                     "a difference needs at least 2 to be judged")
    if chance is not None and must_train != "none":
        threshold = trained_threshold(chance)
        sides = {"a": comparison.values_a, "b": comparison.values_b}
        for side in ("a", "b") if must_train == "both" else (must_train,):
            stuck = [s for s, v in zip(comparison.seeds, sides[side]) if v <= threshold]
            if stuck:
                name = names[0] if side == "a" else names[1]
                return Verdict(INCONCLUSIVE, f"{name} did not train in seed{'s' if len(stuck) > 1 else ''} "
                                             f"{', '.join(map(str, stuck))} (at or below {threshold:.2f}, "
                                             f"chance {chance:.2f})")
    low, high = comparison.ci
    interval = f"{unit * comparison.mean_difference:+.2f} {unit_name}, 95% CI [{unit * low:+.2f}, {unit * high:+.2f}]"
    if low > margin:
        return Verdict(SUPPORTED, f"{interval} lies above {unit * margin:+.2f}")
    if high < margin + tolerance:
        bound = f"{unit * (margin + tolerance):+.2f}"
        return Verdict(NOT_SUPPORTED, f"{interval} lies below {bound}")
    return Verdict(INCONCLUSIVE, f"{interval} straddles {unit * margin:+.2f}"
                                 + (f" (or reaches {unit * (margin + tolerance):+.2f})" if tolerance else "")
                                 + f" with {comparison.n} seeds")


def covers(densities: Iterable[float], low: float, high: float, rel_tol: float = 0.05) -> bool:
    """Do the measured densities reach both ends of [low, high] (each within rel_tol)?"""
    densities = list(densities)
    if not densities:
        return False
    return min(densities) <= low * (1 + rel_tol) and max(densities) >= high * (1 - rel_tol)


def over_range(verdicts: Mapping[float, Verdict], low: float, high: float, rel_tol: float = 0.05) -> Verdict:
    """A claim over densities [low, high] from the verdicts per measured density (rules in the module
    docstring); levels outside the range are ignored."""
    if low > high:
        low, high = high, low
    inside = {d: v for d, v in verdicts.items() if low * (1 - rel_tol) <= d <= high * (1 + rel_tol)}
    span = f"{100 * high:.3g}% to {100 * low:.3g}%"
    if not covers(verdicts, low, high, rel_tol):  # levels beyond an end reach it too
        reached = (f"measured {100 * max(verdicts):.3g}% to {100 * min(verdicts):.3g}%" if verdicts else
                   "no level measured")
        return Verdict(INCONCLUSIVE, f"the range {span} is not covered ({reached})")
    if len(inside) < 2 and not math.isclose(low, high, rel_tol=rel_tol):
        return Verdict(INCONCLUSIVE, f"one level in {span}: a range needs at least two")
    labels = [v.label for v in inside.values()]
    density_list = sorted(inside, reverse=True)
    if NOT_SUPPORTED in labels:
        where = [f"{100 * d:.3g}%" for d in density_list if inside[d].label == NOT_SUPPORTED]
        return Verdict(NOT_SUPPORTED, f"not supported at {', '.join(where)} of {len(inside)} levels in {span}")
    if all(label == SUPPORTED for label in labels):
        return Verdict(SUPPORTED, f"supported at all {len(inside)} levels in {span}")
    where = [f"{100 * d:.3g}%" for d in density_list if inside[d].label == INCONCLUSIVE]
    return Verdict(INCONCLUSIVE, f"inconclusive at {', '.join(where)} of {len(inside)} levels in {span}")


def combine(verdicts: Iterable[Verdict], what: str = "comparisons") -> Verdict:
    """A claim that needs every part: not supported if any part is, supported if all are, else inconclusive."""
    verdicts = list(verdicts)
    if not verdicts:
        return Verdict(INCONCLUSIVE, f"no {what}")
    counts = {label: sum(v.label == label for v in verdicts) for label in VERDICTS}
    tally = ", ".join(f"{counts[label]} {label}" for label in VERDICTS if counts[label])
    if counts[NOT_SUPPORTED]:
        return Verdict(NOT_SUPPORTED, f"{tally} of {len(verdicts)} {what}")
    if counts[SUPPORTED] == len(verdicts):
        return Verdict(SUPPORTED, f"all {len(verdicts)} {what} supported")
    return Verdict(INCONCLUSIVE, f"{tally} of {len(verdicts)} {what}")


def judge(a: Mapping, b: Mapping, margin: float = 0.0, **verdict_options) -> dict:
    """`paired(a, b)` and its `verdict` as one JSON dict: the statistics, the verdict and its reason,
    the margin and tolerance, and the rule."""
    comparison = paired(a, b)
    decided = verdict(comparison, margin, **verdict_options)
    return comparison.to_dict() | decided.to_dict() | {"margin": margin,
                                                       "tolerance": verdict_options.get("tolerance", 0.0),
                                                       "rule": RULE}
