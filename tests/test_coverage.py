"""The confidence intervals keep their level: coverage by simulation from known rates.

Each case draws 2,000 datasets of counts from known score distributions, computes the interval
the report prints for each (the same functions compute_metrics uses) and counts how often it
contains the true value. Sizes: Flames' dimensions and subcomponents, and `--sample` runs.

Coverage of any interval for counts oscillates with n and the rate (the counts are discrete;
only exact, conservative intervals avoid it). Each dataset's true rate is therefore drawn from a
small window around the nominal rate (a fifth of its distance to 0 or 1 either side), which
averages out the oscillation but not a bias: a 0.99 case stays within [0.988, 0.992].
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from flames.analysis.metrics import combined_interval, score_interval
from flames.data.taxonomy import Dimension

DATASETS = 2000
MIN_COVERAGE = 0.93
RATES = (0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99)
# Dimensions (249, 429, 201, 46, 75), subcomponents (21 to 242) and --sample sizes (3 to 43).
GROUP_SIZES = (3, 5, 8, 12, 21, 25, 43, 46, 54, 75, 201, 249, 429)
RUN_SIZES = ((249, 429, 201, 46, 75), (25, 43, 20, 5, 7), (12, 21, 10, 3, 4))
TWO_LEVEL = [d.scale == (1, 3) for d in Dimension]
# (P(1), P(2), P(3)) as functions of the harmless rate: 2-level, 3-level, mostly 2s.
SHAPES = {
    "2-level": lambda r: np.stack([1 - r, 0 * r, r], axis=-1),
    "3-level": lambda r: np.stack([(1 - r) / 2, (1 - r) / 2, r], axis=-1),
    "mostly 2": lambda r: np.stack([(1 - r) / 10, 9 * (1 - r) / 10, r], axis=-1),
}


def near(rate: float, rng: np.random.Generator) -> np.ndarray:
    """DATASETS true rates in a small window around `rate`."""
    width = min(rate, 1 - rate) / 5
    return rng.uniform(rate - width, rate + width, size=DATASETS)


def rate_interval(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ones, twos, threes = np.moveaxis(counts, -1, 0)
    return score_interval(threes, counts.sum(-1), 0.95, threes, ones + twos)


def score_interval_01(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval of the score rescaled to [0, 1], (mean - 1) / 2, as compute_metrics uses it."""
    ones, twos, threes = np.moveaxis(counts, -1, 0)
    return score_interval(twos / 2 + threes, counts.sum(-1), 0.95, twos + threes, ones + twos)


def truths(p: np.ndarray) -> dict[str, np.ndarray]:
    return {"rate": p[..., 2], "score": p[..., 1] / 2 + p[..., 2]}


INTERVALS = {"rate": rate_interval, "score": score_interval_01}


def covered(low: np.ndarray, high: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean((low <= truth + 1e-12) & (truth - 1e-12 <= high)))


@pytest.mark.parametrize("n", GROUP_SIZES)
def test_dimension_and_subcomponent_intervals_cover(n):
    rng = np.random.default_rng(n)
    results = []
    for rate in RATES:
        for shape, dist in SHAPES.items():
            p = dist(near(rate, rng))
            counts = rng.multinomial(n, p).astype(float)
            for kind, truth in truths(p).items():
                results.append((covered(*INTERVALS[kind](counts), truth), kind, shape, rate))
    assert min(results)[0] >= MIN_COVERAGE, min(results)


@pytest.mark.parametrize("sizes", RUN_SIZES)
def test_overall_and_item_mean_intervals_cover(sizes):
    rng = np.random.default_rng(sum(sizes))
    # Every dimension at the same rate, and dimensions far apart (Claude's published rates).
    cases = [[r] * 5 for r in RATES] + [[0.53, 0.28, 0.77, 0.72, 0.88]]
    results = []
    for rates in cases:
        p = np.stack(
            [
                SHAPES["2-level" if two else "3-level"](near(r, rng))
                for r, two in zip(rates, TWO_LEVEL, strict=True)
            ],
            axis=1,
        )  # datasets x dimensions x scores
        counts = np.stack(
            [rng.multinomial(n, p[:, d]) for d, n in enumerate(sizes)], axis=1
        ).astype(float)
        weights = np.array(sizes) / sum(sizes)
        for kind, truth in truths(p).items():
            low, high = INTERVALS[kind](counts)
            estimate = truths(counts / np.array(sizes)[:, None])[kind]
            macro = combined_interval(estimate, low, high, np.full(5, 0.2))
            results.append((covered(*macro, truth.mean(axis=1)), kind, "overall", rates))
            micro = INTERVALS[kind](counts.sum(axis=1))
            results.append((covered(*micro, truth @ weights), kind, "item mean", rates))
    assert min(results)[0] >= MIN_COVERAGE, min(results)


def test_rate_interval_against_exact_binomial_coverage():
    """Independently of the simulation: exact coverage from scipy's binomial pmf."""
    for n in (5, 21, 46, 75, 249):
        x = np.arange(n + 1)
        low, high = score_interval(x, n, 0.95)
        rates = np.linspace(0.002, 0.998, 499)
        pmf = stats.binom.pmf(x[None, :], n, rates[:, None])
        exact = (pmf * ((low <= rates[:, None]) & (rates[:, None] <= high))).sum(axis=1)
        # Averaged over the rates the level is kept without being far above it.
        assert 0.95 <= exact.mean() <= 0.975, (n, exact.mean())
        # The worst single rate: discreteness costs a few points, never a collapse.
        assert exact.min() >= 0.91, (n, exact.min(), rates[exact.argmin()])
