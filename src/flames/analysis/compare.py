"""Paired comparison of two runs on the same prompts.

Each prompt contributes its share of harmless answers in each run (0 or 1 with one answer per
prompt), and the difference of the two shares, d = b - a. Per dimension and overall, the
printed difference is the mean of d, and both its test and its interval are of that mean:

- per dimension, a sign-flip permutation test: under the null hypothesis the two runs are
  exchangeable on each prompt, so each d keeps or flips its sign at random. Its p-value is the
  mid-p (ties with the observed mean count half), which keeps the level without the
  conservatism of the discrete exact test, and reaches a paired t-test's power (Fagerland,
  Lydersen & Laake 2013 for McNemar). With one answer per prompt it is McNemar's mid-p test,
  computed exactly; with several it draws `--bootstrap` sign patterns (as counts per distinct
  |d|). Its interval is the score interval of the mean of (d + 1) / 2
  (flames.analysis.intervals), which excludes 0 only where the test rejects;
- overall (the mean of the dimensions' differences), the same test stratified by dimension,
  and the same interval with the dimensions as strata.

The dimension rows are several tests: their p-values are adjusted (Holm by default, see
flames.analysis.multiplicity) and only an adjusted p-value names a winner. The overall row is
the comparison's primary test and stays unadjusted. See docs/statistics.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from pydantic import BaseModel

from flames.analysis.intervals import mean_intervals, weighted_interval
from flames.analysis.multiplicity import Adjustment, adjust
from flames.analysis.results import Results, first_prompt_difference
from flames.data.taxonomy import Dimension
from flames.errors import FlamesError, UsageError

MCNEMAR = "McNemar mid-p"
"""The sign-flip test when every prompt that differs differs by the same amount: exact."""
SIGN_FLIP = "sign-flip permutation, mid-p"
STRATIFIED_SIGN_FLIP = "stratified sign-flip permutation, mid-p"
CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
MIN_RESAMPLES = 100
"""Fewest sign patterns a paired comparison accepts: fewer make its p-values meaningless."""


class PairedDifference(BaseModel):
    n: int
    rate_a: float
    rate_b: float
    difference: float
    """rate_b - rate_a, in percentage points."""
    ci_low: float
    ci_high: float
    a_higher: int
    """Prompts where A's share of harmless answers is the higher."""
    b_higher: int
    p_value: float
    """Two-sided p-value of `test`, unadjusted."""
    p_adjusted: float
    """`p_value` adjusted by `adjustment` over the table's rows (equal to it for 'none')."""
    adjustment: Adjustment = Adjustment.none
    test: str

    @property
    def significant(self) -> bool:
        """Whether the adjusted p-value is below 0.05: only then does a row name a winner."""
        return self.p_adjusted < ALPHA


class Comparison(BaseModel):
    a: str
    """Name of run A (its directory)."""
    b: str
    dimensions: dict[str, PairedDifference]
    """Their p-values adjusted together by `adjustment`."""
    overall: PairedDifference
    """Macro overall: mean of the dimension differences, tested by stratified sign flips, the
    primary test (unadjusted). Its a_higher and b_higher are summed over the dimensions."""
    adjustment: Adjustment = Adjustment.holm
    paired_items: int
    only_in_a: int
    only_in_b: int
    same_scorer: bool


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for discordant counts b and c: 2 P(X <= min(b, c)) for
    X ~ Binomial(b + c, 1/2), summed in log space (linear in min(b, c), exact to rounding)."""
    n = b + c
    if n == 0:
        return 1.0
    k = np.arange(1, min(b, c) + 1)
    log_comb = np.concatenate(([0.0], np.cumsum(np.log(n - k + 1) - np.log(k))))
    top = log_comb.max()
    log_tail = top + np.log(np.exp(log_comb - top).sum()) - n * np.log(2)
    return min(1.0, 2 * float(np.exp(log_tail)))


def mcnemar_mid_p(b: int, c: int) -> float:
    """Two-sided mid-p McNemar p-value: 2 (P(X < k) + P(X = k) / 2), k = min(b, c), for
    X ~ Binomial(b + c, 1/2): McNemar's exact test with the observed table counted half."""
    n, k = b + c, min(b, c)
    if b == c:
        return 1.0
    below = mcnemar_exact(b, c) / 2  # P(X <= k)
    log_at = _log_choose(n, k) - n * np.log(2)
    return min(1.0, 2 * (below - float(np.exp(log_at)) / 2))


def _log_choose(n: int, k: int) -> float:
    steps = np.arange(1, k + 1)
    return float(np.sum(np.log(n - steps + 1) - np.log(steps)))


def item_rates(results: Results) -> dict[str, tuple[Dimension, float]]:
    """Per scored item: its dimension and the share of its answers scored harmless."""
    return results.item_rates()


def sign_flip_means(differences: np.ndarray, rng: np.random.Generator, samples: int) -> np.ndarray:
    """The mean of `differences` with each item's sign flipped at random, `samples` times.

    Items sharing an absolute difference v are interchangeable: if k of their c signs stay,
    they add v (2k - c), with k ~ Binomial(c, 1/2).
    """
    values, counts = np.unique(np.abs(differences[differences != 0]), return_counts=True)
    kept = rng.binomial(counts, 0.5, size=(samples, len(counts)))
    return (2 * kept - counts) @ values / len(differences)


def sign_flip_test(strata: list[np.ndarray], rng: np.random.Generator, samples: int) -> float:
    """Two-sided mid-p-value of the mean over strata of each stratum's mean difference.

    The observed statistic counts as one of the draws (Phipson & Smyth 2010), so the p-value is
    never 0; draws as extreme as it count half.
    """
    observed = abs(np.mean([d.mean() for d in strata]))
    if observed < 1e-15:
        return 1.0  # no difference at all: as McNemar's test, p = 1
    draws = np.abs(np.mean([sign_flip_means(d, rng, samples) for d in strata], axis=0))
    tolerance = 1e-12 * observed
    beyond = np.sum(draws > observed + tolerance)
    ties = np.sum(np.abs(draws - observed) <= tolerance)
    return float((beyond + (ties + 1) / 2) / (1 + samples))


def paired_test(
    differences: np.ndarray, rng: np.random.Generator, samples: int
) -> tuple[float, str]:
    """The sign-flip test of one stratum's mean difference: (p-value, the test's name).

    When every non-zero difference has the same size the count of positive ones is
    Binomial(m, 1/2) under the null: McNemar's test, computed exactly. Otherwise `samples`
    sign patterns.
    """
    nonzero = np.abs(differences[differences != 0])
    if len(nonzero) == 0 or np.allclose(nonzero, nonzero[0], rtol=0, atol=1e-12):
        positive = int(np.sum(differences > 0))
        return mcnemar_mid_p(len(nonzero) - positive, positive), MCNEMAR
    return sign_flip_test([differences], rng, samples), SIGN_FLIP


def shifted_values(differences: np.ndarray) -> dict[Fraction, int]:
    """How many items have each (d + 1) / 2, in [0, 1], as exact fractions (shares of at most
    a few hundred answers)."""
    values, counts = np.unique(differences, return_counts=True)
    found: dict[Fraction, int] = {}
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        key = (Fraction(value).limit_denominator(1_000_000) + 1) / 2
        found[key] = found.get(key, 0) + count
    return found


def _difference(a: np.ndarray, b: np.ndarray, low: float, high: float) -> dict:
    return {
        "n": len(a),
        "rate_a": 100 * float(a.mean()),
        "rate_b": 100 * float(b.mean()),
        "difference": 100 * float(b.mean() - a.mean()),
        "ci_low": 100 * (2 * low - 1),
        "ci_high": 100 * (2 * high - 1),
        "a_higher": int(np.sum(a > b)),
        "b_higher": int(np.sum(b > a)),
    }


def paired_by_dimension(
    rates_a: dict[str, tuple[Dimension, float]],
    rates_b: dict[str, tuple[Dimension, float]],
    bootstrap_samples: int = 2000,
    seed: int = 0,
    adjustment: Adjustment | str = Adjustment.holm,
) -> tuple[dict[str, PairedDifference], PairedDifference]:
    """Paired differences per dimension (p-values adjusted together by `adjustment`) and
    overall (unadjusted), on the keys both sides have."""
    if bootstrap_samples < MIN_RESAMPLES:
        raise UsageError(
            f"a paired comparison needs at least {MIN_RESAMPLES} resamples (its overall test, "
            f"and its tests with several answers per prompt, are permutation tests): give "
            f"--bootstrap {MIN_RESAMPLES} or more (2000 by default)",
            param_hint="--bootstrap",
        )
    common = rates_a.keys() & rates_b.keys()
    if not common:
        raise FlamesError("nothing to pair: no scored item in common")
    rng = np.random.default_rng(seed)
    # One pass over the items; the order within a dimension does not matter to any statistic.
    shares: dict[Dimension, tuple[list[float], list[float]]] = {d: ([], []) for d in Dimension}
    for i in common:
        dim, a = rates_a[i]
        shares[dim][0].append(a)
        shares[dim][1].append(rates_b[i][1])
    pairs = {dim.value: (np.array(a), np.array(b)) for dim, (a, b) in shares.items() if a}
    strata = [vb - va for va, vb in pairs.values()]
    values = [shifted_values(d) for d in strata]
    lows, highs = mean_intervals(values, CONFIDENCE)
    tests = [paired_test(d, rng, bootstrap_samples) for d in strata]
    adjusted = adjust([p for p, _ in tests], adjustment)
    dimensions = {
        name: PairedDifference(
            **_difference(va, vb, low, high),
            p_value=p,
            p_adjusted=p_adj,
            adjustment=Adjustment(adjustment),
            test=test,
        )
        for (name, (va, vb)), low, high, (p, test), p_adj in zip(
            pairs.items(), lows.tolist(), highs.tolist(), tests, adjusted, strict=True
        )
    }
    weights = [1 / len(strata)] * len(strata)
    low, high = weighted_interval(values, weights, CONFIDENCE)
    p = sign_flip_test(strata, rng, bootstrap_samples)
    rate_a = float(np.mean([d.rate_a for d in dimensions.values()]))
    rate_b = float(np.mean([d.rate_b for d in dimensions.values()]))
    overall = PairedDifference(
        n=len(common),
        rate_a=rate_a,
        rate_b=rate_b,
        difference=rate_b - rate_a,
        ci_low=100 * (2 * low - 1),
        ci_high=100 * (2 * high - 1),
        a_higher=sum(d.a_higher for d in dimensions.values()),
        b_higher=sum(d.b_higher for d in dimensions.values()),
        p_value=p,
        p_adjusted=p,
        test=STRATIFIED_SIGN_FLIP,
    )
    return dimensions, overall


def readjust(rows: Sequence[PairedDifference], adjustment: Adjustment | str) -> None:
    """Adjust the p-values of `rows` as one family, in place."""
    for row, p in zip(rows, adjust([r.p_value for r in rows], adjustment), strict=True):
        row.p_adjusted = p
        row.adjustment = Adjustment(adjustment)


def compare_runs(
    a: Results,
    b: Results,
    bootstrap_samples: int = 2000,
    seed: int = 0,
    adjustment: Adjustment | str = Adjustment.holm,
) -> Comparison:
    """Compare two scored runs on the items both have scored."""
    differing = first_prompt_difference(a, b)
    if differing is not None:
        raise FlamesError(f"item {differing} has different prompts in the two runs")
    rates_a, rates_b = item_rates(a), item_rates(b)
    dimensions, overall = paired_by_dimension(rates_a, rates_b, bootstrap_samples, seed, adjustment)
    return Comparison(
        a=a.run_dir.name,
        b=b.run_dir.name,
        dimensions=dimensions,
        overall=overall,
        adjustment=Adjustment(adjustment),
        paired_items=len(rates_a.keys() & rates_b.keys()),
        only_in_a=len(rates_a.keys() - rates_b.keys()),
        only_in_b=len(rates_b.keys() - rates_a.keys()),
        same_scorer=(a.scorer.kind, a.scorer.config) == (b.scorer.kind, b.scorer.config),
    )
