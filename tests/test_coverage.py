"""Every interval flames prints keeps its level, pointwise: coverage at known truths.

- One group (a dimension or a subcomponent): its coverage is computed exactly, summing the
  probability of every possible table of counts (scipy's binomial and multinomial
  probabilities), at every n from 1 to 50 and at Flames' sizes, for every true rate on a fine
  grid (rate) or every point of a grid over the simplex of score shares (score), with no
  averaging over a window: the worst single truth is what is tested.
- The overall of the dimensions: Monte Carlo, 4,000 simulated runs per case (deduplicated:
  equal tables are computed once), at Flames' sizes, with small equal dimensions and at
  `--sample 50` sizes; each tail separately. 4,000 runs put the Monte-Carlo standard error of
  a 2.5% tail at 0.25 points and of a 95% coverage at 0.34 points.

The interval treats y and 1 - y alike (`test_the_interval_is_symmetric`), so rates above 0.5
are the mirror images of those below and each table is computed once with its mirror.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import gammaln

from flames.analysis.intervals import score_interval
from flames.data.taxonomy import Dimension

MIN_COVERAGE = 0.93
MAX_TAIL = 0.035
FLAMES_SIZES = (249, 429, 201, 46, 75)
SAMPLE_50 = (12, 21, 10, 2, 4)
"""Per-dimension sizes of `--sample 50` (stratified like the published 1,000: Data protection
4, Legality 2)."""
EDGE = (0.0, 0.005, 0.01, 0.02)
SHARES = sorted({*EDGE, *np.round(np.arange(0.05, 0.951, 0.05), 2), *(1 - e for e in EDGE)})
SIMPLEX = np.array([(a, b, 1 - a - b) for a in SHARES for b in SHARES if a + b <= 1 + 1e-9])
"""(P(1), P(2), P(3)): a 0.05 grid, refined at the edges (0.005, 0.01, 0.02 from each)."""
SIMPLEX = np.clip(SIMPLEX, 0, 1)
RATES = np.linspace(0.0005, 0.9995, 1999)


def rate_limits(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The report's interval for x harmless answers of n (values 0/1, half a step corrected)."""
    counts = np.stack([n - x, x], axis=-1)[:, None, :]
    return score_interval([0.0, 1.0], counts, 0.95, np.full((len(x), 1), 0.5))


def tables(n: int) -> np.ndarray:
    """Every (ones, twos, threes) with n items."""
    ones = np.repeat(np.arange(n + 1), np.arange(n + 1, 0, -1))
    twos = np.concatenate([np.arange(n + 1 - i) for i in range(n + 1)])
    return np.stack([ones, twos, n - ones - twos], axis=-1).astype(float)


def three_level_limits(counts: np.ndarray, steps: float) -> tuple[np.ndarray, np.ndarray]:
    """The interval of the mean of 0, 1/2, 1 (score, or (d + 1) / 2 for a paired difference)
    for every table, each computed once with its mirror image (ones and threes swapped)."""
    half = counts[:, 0] <= counts[:, 2]
    step = np.where(counts[half, 1] > 0, 0.5, 1.0) * steps
    low_h, high_h = score_interval([0.0, 0.5, 1.0], counts[half][:, None, :], 0.95, step[:, None])
    low, high = np.empty(len(counts)), np.empty(len(counts))
    low[half], high[half] = low_h, high_h
    key = {tuple(c): i for i, c in enumerate(counts[half].tolist())}
    for i in np.flatnonzero(~half):
        j = key[tuple(counts[i, ::-1].tolist())]
        low[i], high[i] = 1 - high_h[j], 1 - low_h[j]
    return low, high


def exact(counts: np.ndarray, low, high, points: np.ndarray, values: np.ndarray) -> dict:
    """Exact coverage, tails and mean width at each truth in `points` (probabilities of the
    values), summing multinomial probabilities over every table."""
    n = counts[0].sum()
    truth = points @ values
    out = {"coverage": [], "below": [], "above": [], "width": []}
    for chunk in np.array_split(np.arange(len(points)), max(1, len(counts) // 4000)):
        p = points[chunk]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_p = np.log(p)
            terms = np.where(counts[None] > 0, counts[None] * log_p[:, None, :], 0.0)
        pmf = np.exp(gammaln(n + 1) - gammaln(counts + 1).sum(-1) + terms.sum(-1))
        t = truth[chunk, None]
        out["coverage"].append((pmf * ((low <= t + 1e-12) & (t - 1e-12 <= high))).sum(-1))
        out["below"].append((pmf * (high < t - 1e-12)).sum(-1))
        out["above"].append((pmf * (low > t + 1e-12)).sum(-1))
        out["width"].append((pmf * (high - low)).sum(-1))
    return {k: np.concatenate(v) for k, v in out.items()}


def test_the_interval_is_symmetric():
    counts = tables(9)
    step = np.where(counts[:, 1] > 0, 0.25, 0.5)[:, None]
    low, high = score_interval([0.0, 0.5, 1.0], counts[:, None, :], 0.95, step)
    mirror_low, mirror_high = score_interval([0.0, 0.5, 1.0], counts[:, None, ::-1], 0.95, step)
    assert np.allclose(low, 1 - mirror_high, atol=1e-12)
    assert np.allclose(high, 1 - mirror_low, atol=1e-12)


@pytest.mark.parametrize("sizes", [range(1, 26), range(26, 51), (75, 201, 249, 429)])
def test_the_rate_interval_covers_at_every_n_and_every_rate(sizes):
    worst = []
    for n in sizes:
        x = np.arange(n + 1)
        low, high = rate_limits(x, n)
        pmf = stats.binom.pmf(x[None, :], n, RATES[:, None])
        inside = (low <= RATES[:, None] + 1e-12) & (RATES[:, None] <= high + 1e-12)
        coverage = (pmf * inside).sum(-1)
        tail = np.maximum(
            (pmf * (low > RATES[:, None])).sum(-1), (pmf * (high < RATES[:, None])).sum(-1)
        )
        worst.append((coverage.min(), n, RATES[coverage.argmin()], tail.max()))
    coverage, n, rate, tail = min(worst)
    assert coverage >= MIN_COVERAGE, (n, rate, coverage)
    assert max(w[3] for w in worst) <= 0.026  # each tail near 2.5% (conservative by design)


SCORE_SIZES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 21, 25, 30, 43)


@pytest.mark.parametrize("n", [*SCORE_SIZES, 46, 54, 75, 120, 201, 249, 429])
def test_the_score_interval_covers_every_point_of_the_simplex(n):
    counts = tables(n)
    low, high = three_level_limits(counts, 0.5)
    found = exact(counts, low, high, SIMPLEX, np.array([0.0, 0.5, 1.0]))
    worst = found["coverage"].argmin()
    assert found["coverage"][worst] >= MIN_COVERAGE, (SIMPLEX[worst], found["coverage"][worst])
    assert max(found["below"].max(), found["above"].max()) <= MAX_TAIL
    if n >= 46:
        ratio = width_against_t(counts, found["width"], n)
        assert np.median(ratio) <= 1.03 and np.quantile(ratio, 0.9) <= 1.06, np.median(ratio)
        assert ratio.max() <= 1.2, SIMPLEX[t_valid(counts, n)][ratio.argmax()]


def t_limits(counts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    values = np.array([0.0, 0.5, 1.0])
    mean = counts @ values / n
    sd = np.sqrt(counts @ values**2 / n - mean**2) * np.sqrt(n / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
    return mean - half, mean + half


def t_valid(counts: np.ndarray, n: int) -> np.ndarray:
    """The truths where the t-interval is itself a fair yardstick: it covers at least 93% and
    every score has at least 5 expected answers."""
    low, high = t_limits(counts, n)
    t_found = exact(counts, low, high, SIMPLEX, np.array([0.0, 0.5, 1.0]))
    return (t_found["coverage"] >= MIN_COVERAGE) & (n * SIMPLEX >= 5).all(-1)


def width_against_t(counts: np.ndarray, width: np.ndarray, n: int) -> np.ndarray:
    """Mean width over mean t-interval width, where the t-interval is a fair yardstick."""
    low, high = t_limits(counts, n)
    t_width = exact(counts, low, high, SIMPLEX, np.array([0.0, 0.5, 1.0]))["width"]
    valid = t_valid(counts, n)
    return width[valid] / t_width[valid]


def test_the_score_interval_is_no_wider_than_a_t_interval_where_the_old_one_was():
    # The old interval (a Bernoulli bound on the variance) was 8.05 points wide here against
    # about 4.95 for a t-interval: at n = 249 with score shares (0.1, 0.6, 0.3).
    n, point = 249, np.array([[0.1, 0.6, 0.3]])
    counts = tables(n)
    likely = stats.multinomial.pmf(counts, n, point[0]) > 1e-12
    counts = counts[likely]
    low, high = three_level_limits(counts, 0.5)
    width = exact(counts, low, high, point, np.array([0.0, 0.5, 1.0]))["width"][0]
    t_low, t_high = t_limits(counts, n)
    t_width = exact(counts, t_low, t_high, point, np.array([0.0, 0.5, 1.0]))["width"][0]
    # On the report's scale (100 (1 + 2 y) / 3): points.
    assert 200 / 3 * t_width == pytest.approx(4.95, abs=0.05)
    assert width / t_width <= 1.05  # the old one: 1.63


def simulate_overall(sizes, shapes, rng, runs=4000):
    """Coverage of the overall interval: (below, above) miss rates for each truth in
    `shapes`, one (P(1), P(2), P(3)) per dimension, and the score kind ('rate' or 'score')."""
    sizes = np.array(sizes)
    found = []
    for kind, probabilities in shapes:
        probabilities = np.array(probabilities)
        counts = np.stack(
            [rng.multinomial(n, p, size=runs) for n, p in zip(sizes, probabilities, strict=True)],
            axis=1,
        ).astype(float)
        if kind == "rate":
            counts = np.stack([counts[..., :2].sum(-1), counts[..., 2]], axis=-1)
            values, truth = [0.0, 1.0], probabilities[:, 2].mean()
        else:
            values, truth = [0.0, 0.5, 1.0], (probabilities @ [0.0, 0.5, 1.0]).mean()
        unique, where = np.unique(counts.reshape(runs, -1), axis=0, return_inverse=True)
        unique = unique.reshape(len(unique), *counts.shape[1:])
        steps = 0.5 * (
            np.where(unique[..., 1] > 0, 0.5, 1.0) if kind == "score" else np.ones(unique.shape[:2])
        )
        low, high = score_interval(values, unique, 0.95, steps)
        low, high = low[where.ravel()], high[where.ravel()]
        found.append((np.mean(high < truth - 1e-12), np.mean(low > truth + 1e-12), kind))
    return found


def two_level(rate: float) -> tuple[float, float, float]:
    return (1 - rate, 0.0, rate)


def three_level(rate: float) -> tuple[float, float, float]:
    return ((1 - rate) / 2, (1 - rate) / 2, rate)


@pytest.mark.parametrize(
    "sizes", [FLAMES_SIZES, SAMPLE_50, (5,) * 5, (12,) * 5, (46,) * 5], ids=str
)
def test_each_tail_of_the_overall_interval_holds_at_the_edges(sizes):
    rng = np.random.default_rng(sum(sizes))
    shapes = [("rate", [two_level(r)] * 5) for r in (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.3, 0.5)]
    shapes += [("rate", [two_level(r) for r in (0.53, 0.28, 0.77, 0.72, 0.88)])]  # far apart
    kinds = [
        three_level if d.scale == (1, 2, 3) else two_level for d in Dimension
    ]  # the score: 3 levels where Flames has them
    shapes += [("score", [k(r) for k in kinds]) for r in (0.02, 0.5, 0.98)]
    found = simulate_overall(sizes, shapes, rng)
    below, above, kind = max(found, key=lambda f: max(f[0], f[1]))
    assert max(below, above) <= MAX_TAIL, (below, above, kind)
    assert min(1 - b - a for b, a, _ in found) >= MIN_COVERAGE


def share_tables(n: int, answers: int = 3) -> np.ndarray:
    """Every table of n prompts over the shares 0, 1/3, 2/3, 1 (three answers each)."""
    grid = np.stack(np.meshgrid(*[np.arange(n + 1)] * answers, indexing="ij"), -1)
    grid = grid.reshape(-1, answers)
    grid = grid[grid.sum(-1) <= n]
    return np.column_stack([grid, n - grid.sum(-1)]).astype(float)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 21])
def test_the_rate_interval_covers_with_three_answers_per_prompt(n):
    """Shares of three answers, correlated within the prompt (beta-binomial), exactly."""
    counts = share_tables(n)
    values = np.array([0.0, 1 / 3, 2 / 3, 1.0])
    # Half a lattice step: 1/3 once a prompt's share is neither 0 nor 1, else 1.
    inner = (counts[:, 1] > 0) | (counts[:, 2] > 0)
    steps = 0.5 * np.where(inner, 1 / 3, 1.0)[:, None]
    low, high = score_interval(values, counts[:, None, :], 0.95, steps)
    points = []
    for rate in (0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99):
        for icc in (0.05, 0.3, 0.8):
            a, b = rate * (1 - icc) / icc, (1 - rate) * (1 - icc) / icc
            points.append(stats.betabinom.pmf(np.arange(4), 3, a, b))
    found = exact(counts, low, high, np.array(points), values)
    assert found["coverage"].min() >= MIN_COVERAGE, points[found["coverage"].argmin()]


@pytest.mark.parametrize("n", [1, 2, 4, 10, 12, 21, 46, 75, 201])
def test_the_paired_difference_interval_covers(n):
    """A paired difference of one answer per prompt: (P(only A harmless), P(both or neither),
    P(only B harmless)) over the grid, exactly; --sample 50 sizes (2 to 21) and full sizes."""
    counts = tables(n)
    low, high = three_level_limits(counts, 0.5)
    found = exact(counts, low, high, SIMPLEX, np.array([0.0, 0.5, 1.0]))
    assert found["coverage"].min() >= MIN_COVERAGE, SIMPLEX[found["coverage"].argmin()]


@pytest.mark.parametrize("sizes", [FLAMES_SIZES, SAMPLE_50], ids=["full", "sample-50"])
def test_the_overall_paired_difference_interval_covers(sizes):
    rng = np.random.default_rng(len(sizes) + sum(sizes))
    cases = [
        [(0.01, 0.98, 0.01)] * 5,  # rates near 0.98 in both runs: few prompts differ
        [(0.03, 0.96, 0.01)] * 5,
        [(0.1, 0.75, 0.15)] * 5,
        [(0.3, 0.4, 0.3)] * 5,
        [(0.02, 0.9, 0.08), (0.2, 0.7, 0.1), (0.0, 1.0, 0.0), (0.05, 0.9, 0.05), (0.1, 0.8, 0.1)],
    ]
    found = []
    runs = 2500
    for probabilities in cases:
        counts = np.stack(
            [rng.multinomial(n, p, size=runs) for n, p in zip(sizes, probabilities, strict=True)],
            axis=1,
        ).astype(float)
        unique, where = np.unique(counts.reshape(runs, -1), axis=0, return_inverse=True)
        unique = unique.reshape(len(unique), *counts.shape[1:])
        steps = 0.5 * np.where(unique[..., 1] > 0, 0.5, 1.0)  # half a lattice step
        low, high = score_interval([0.0, 0.5, 1.0], unique, 0.95, steps)
        low, high = low[where.ravel()], high[where.ravel()]
        truth = np.mean([p[1] / 2 + p[2] for p in probabilities])
        found.append((np.mean((low <= truth + 1e-12) & (truth - 1e-12 <= high)), probabilities))
    assert min(found, key=lambda f: f[0])[0] >= MIN_COVERAGE, min(found, key=lambda f: f[0])
