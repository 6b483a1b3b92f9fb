"""The score intervals of flames.analysis.intervals against independent references.

- For 0/1 values the interval is Laud's skewness-corrected asymptotic score (SCAS) interval for
  a proportion with continuity correction gamma; `laud_scas` is its closed form, the root of a
  quadratic (Laud 2017, Pharmaceutical Statistics 16:334, doi:10.1002/pst.1813; the same
  coefficients as ratesci's non-iterative scasci.nonit, read in its stored copy), a different
  computation from flames' search along the profile likelihood.
- For values on several levels and several strata, the most likely distribution under each
  hypothesised mean is checked against scipy's constrained optimiser, and the limit against the
  score equation it must solve.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from scipy import optimize

from flames.analysis.intervals import (
    _tilted,
    lattice_step,
    mean_intervals,
    score_interval,
    weighted_interval,
    z_value,
)


def laud_scas(
    x: np.ndarray, n: int, confidence: float = 0.95, gamma: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Laud's SCAS interval for x of n with continuity correction gamma, in closed form."""
    z = z_value(confidence)
    e = 1 - (z**2 - 1) / (3 * n)
    a = z**2 / n + e**2
    limits = []
    for sign in (-1, 1):
        d = (z**2 - 1) / (6 * n) - (x + sign * gamma) / n
        b = 2 * e * d - z**2 / n
        limits.append((-b + sign * np.sqrt(np.maximum(b**2 - 4 * a * d**2, 0))) / (2 * a))
    low, high = limits
    return np.where(x == 0, 0.0, low), np.where(x == n, 1.0, high)


@pytest.mark.parametrize("n", [*range(1, 41), 46, 75, 249, 429, 1001, 250_000])
def test_for_zero_one_values_it_is_laud_scas_interval(n):
    x = np.arange(n + 1) if n < 2000 else np.array([0, 1, 2, 3, 7, 1000, n // 2, n - 3, n])
    counts = np.stack([n - x, x], axis=-1)[:, None, :]
    low, high = score_interval([0.0, 1.0], counts, 0.95, np.full((len(x), 1), 0.5))
    ref_low, ref_high = laud_scas(x, n)
    assert np.allclose(low, ref_low, atol=1e-9) and np.allclose(high, ref_high, atol=1e-9)
    ref_low, ref_high = laud_scas(x, n, confidence=0.9)
    low, high = score_interval([0.0, 1.0], counts, 0.9, np.full((len(x), 1), 0.5))
    assert np.allclose(low, ref_low, atol=1e-9) and np.allclose(high, ref_high, atol=1e-9)


def most_likely(values, counts, weights, theta):
    """scipy's answer: the distributions (one per stratum) of highest likelihood whose
    weighted mean is theta, over the given values plus the ends 0 and 1: SLSQP on softmax
    parameters, from a few starts. Returns their means, variances and third moments."""
    support = np.union1d(values, [0.0, 1.0])
    index = {v: i for i, v in enumerate(values)}
    full = np.array([[c[index[v]] if v in index else 0 for v in support] for c in counts], float)
    strata, m = full.shape

    def probs(x):
        x = x.reshape(strata, m)
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def loss(x):
        return -np.sum(full * np.log(np.maximum(probs(x), 1e-300)))

    mean_is_theta = {"type": "eq", "fun": lambda x: weights @ (probs(x) @ support) - theta}
    start = np.log((full + 0.5) / (full + 0.5).sum(1, keepdims=True)).ravel()
    best = None
    for seed in range(4):
        jitter = np.random.default_rng(seed).normal(0, 0.3, start.shape)
        found = optimize.minimize(
            loss,
            start + jitter,
            method="SLSQP",
            constraints=[mean_is_theta],
            options={"ftol": 1e-15, "maxiter": 2000},
        )
        best = found if best is None or found.fun < best.fun else best
    p = probs(best.x)
    mean = p @ support
    dev = support - mean[:, None]
    return mean, (p * dev**2).sum(1), (p * dev**3).sum(1)


@pytest.mark.parametrize(
    ("values", "counts", "weights"),
    [
        ([0.0, 0.5, 1.0], [[3, 10, 7]], [1.0]),
        ([0.5, 1.0], [[12, 8]], [1.0]),  # no 1s observed: the end 0 may take mass
        ([0.0, 0.5, 1.0], [[0, 20, 0]], [1.0]),
        ([0.0, 0.5, 1.0], [[2, 5, 13], [0, 0, 9], [4, 4, 1]], [0.2, 0.5, 0.3]),
        ([0.0, 1 / 3, 2 / 3, 1.0], [[1, 4, 6, 2], [0, 3, 3, 0]], [0.5, 0.5]),
    ],
)
def test_the_profile_is_scipys_constrained_maximum_likelihood(values, counts, weights):
    w = np.array(weights)
    c = np.array(counts, float)
    for multiplier in (-40.0, -3.0, 0.7, 5.0, 60.0):
        mean, var, third = _tilted(np.array(values), c, w, np.array(multiplier))
        ref_mean, ref_var, ref_third = most_likely(values, counts, w, float(w @ mean))
        assert mean == pytest.approx(ref_mean, abs=2e-4), multiplier
        assert var == pytest.approx(ref_var, abs=2e-4), multiplier
        assert third == pytest.approx(ref_third, abs=2e-4), multiplier


@pytest.mark.parametrize(
    ("values", "counts", "weights", "gamma"),
    [
        ([0.0, 0.5, 1.0], [[3, 10, 7]], [1.0], 0.25),
        ([0.0, 0.5, 1.0], [[2, 5, 13], [1, 0, 9], [4, 4, 1]], [1 / 3] * 3, 0.25),
        ([0.0, 1.0], [[40, 9], [30, 30], [2, 44]], [0.2, 0.5, 0.3], 0.5),
    ],
)
def test_each_limit_solves_the_skewness_corrected_score_equation(values, counts, weights, gamma):
    c = np.array(counts, float)
    w = np.array(weights)
    n = c.sum(-1)
    correction = np.full(len(n), gamma)
    low, high = score_interval(values, c, 0.95, correction, w)
    estimate = float(w @ ((c @ np.array(values)) / n))
    cc = float((w**2 * gamma / n).sum())
    z = z_value(0.95)
    for limit, side in ((float(low), 1), (float(high), -1)):
        _, var, third = most_likely(values, counts, w, limit)
        v = float((w**2 * var / n).sum())
        skew = (z * z - 1) / 6 * float((w**3 * third / n**2).sum()) / v
        excess = side * (estimate - limit) - cc - side * skew - z * np.sqrt(v)
        assert excess == pytest.approx(0, abs=2e-4), side


def test_lattice_steps():
    assert lattice_step([Fraction(0), Fraction(1)]) == 1
    assert lattice_step([Fraction(1, 2), Fraction(1)]) == Fraction(1, 2)
    assert lattice_step([Fraction(1, 3), Fraction(1, 2)]) == Fraction(1, 6)
    assert lattice_step([]) == 1


def test_degenerate_groups_get_intervals_that_contain_the_estimate():
    groups = [
        {Fraction(1): 5},
        {Fraction(0): 7},
        {Fraction(1, 2): 20},
        {Fraction(1, 3): 4},
        {Fraction(2, 3): 1},
    ]
    low, high = mean_intervals(groups, 0.95)
    estimates = np.array([1, 0, 0.5, 1 / 3, 2 / 3])
    assert np.all(low <= estimates) and np.all(estimates <= high)
    assert np.all(high - low > 0.05)
    assert high[0] == 1 and low[1] == 0
    # All 5 harmless: Laud's lower limit for 5 of 5.
    assert low[0] == pytest.approx(laud_scas(np.array([5]), 5)[0][0])


def test_a_weighted_sum_of_one_stratum_is_that_stratums_interval():
    group = {Fraction(0): 12, Fraction(1, 2): 30, Fraction(1): 41}
    alone = mean_intervals([group], 0.95)
    assert weighted_interval([group], [1.0], 0.95) == pytest.approx(
        (float(alone[0][0]), float(alone[1][0]))
    )


def test_intervals_narrow_with_more_items_and_widen_with_confidence():
    group = {Fraction(0): 1, Fraction(1, 2): 2, Fraction(1): 3}
    low, high = mean_intervals([group, {k: 10 * v for k, v in group.items()}], 0.95)
    assert high[0] - low[0] > high[1] - low[1]
    low90, high90 = mean_intervals([group], 0.9)
    assert high90[0] - low90[0] < high[0] - low[0]
