"""Confidence intervals for the mean of values in [0, 1], alone or as a weighted sum of strata.

Every interval flames prints comes from `score_interval`: a harmless rate (answers 0 or 1), a
harmless score ((s - 1) / 2, so 0, 1/2 or 1), either of them with several answers per prompt
(each prompt's share), a paired difference of two runs ((d + 1) / 2) and the overall of the
dimensions (a weighted sum of their means). See docs/statistics.md.

The method is the skewness-corrected asymptotic score interval (SCAS, Laud 2017) with a
continuity correction, taken from binomial counts to any values in [0, 1]. For a hypothesised
value theta of the (weighted) mean:

- the most likely distribution of each stratum given theta (its profile likelihood over the
  values observed, plus the ends 0 and 1 of the range, which may take mass nobody observed)
  gives the variance V and the third central moment M3 of the estimate under theta;
- theta is inside the interval when
  |estimate - theta| - cc - skew <= z sqrt(V),  skew = (z^2 - 1) M3 / (6 V) signed by the side,
  where cc is the continuity correction (`correction`).

For 0/1 values in one stratum this is Laud's SCAS interval for a proportion (the tests check it
against his closed form); without the skewness term and with cc = 1/2 it is Wilson's interval
with continuity correction. The profile is found through its Lagrange multiplier, one
number for all strata: every limit costs a few dozen passes over the counts, whatever their size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from math import lcm
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

_LOG_RANGE = (-28.0, 35.0)
"""Search range of log |multiplier|: from no tilt at all to every stratum at an end."""
_BISECTIONS = 14
_FLAT_BISECTIONS = 44
"""Where every stratum has one value the accepted region is narrow: bisect it to the end."""
_SECANTS = 10
_NEWTON = 10
_STEP = 1e-3


def z_value(confidence: float) -> float:
    """The standard normal quantile of a two-sided `confidence` interval (1.96 at 0.95)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def lattice_step(values: Iterable[Fraction]) -> Fraction:
    """The step of the lattice that 0, 1 and `values` lie on: 1 / lcm of their denominators.

    A total of n such values moves in these steps; the continuity correction is a share of one.
    """
    return Fraction(1, lcm(1, *(Fraction(v).denominator for v in values)))


def _tilted(
    values: np.ndarray, counts: np.ndarray, weights: np.ndarray, multiplier: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, variance and third central moment of each stratum's most likely distribution
    under the multiplier (shape (...)); counts (..., D, m)."""
    n = counts.sum(-1)
    a = multiplier[..., None] * weights
    # p_j = c_j / (g + a v_j) shifted so that no difference of large numbers is formed: with
    # base_j = a v_j - min_j(a v_j) over the range [0, 1], p_j = c_j / (u + base_j), u >= 0.
    base = np.abs(a)[..., None] * np.where(a[..., None] >= 0, values, 1 - values)
    seen = counts > 0

    def inverse(u: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.where(seen, 1 / np.where(seen, u[..., None] + base, 1), 0.0)

    with np.errstate(invalid="ignore"):
        # Mass at the end nobody observed when even u = 0 cannot make the rest sum to 1.
        at_end = (counts * inverse(np.zeros_like(a))).sum(-1) <= 1
    if values.tolist() == [0.0, 1.0]:
        # 0/1 values: sum_j c_j / (u + base_j) = 1 is a quadratic with one base 0, the other
        # |a|; its larger root, in the form that forms no difference of large numbers.
        c0 = np.where(a >= 0, counts[..., 0], counts[..., 1])
        big = np.abs(a)
        root = np.sqrt((big - n) ** 2 + 4 * c0 * big)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(big >= n, 2 * c0 * big / (root + big - n), (n - big + root) / 2)
        u = np.nan_to_num(u)
    else:
        u = 1e-12 * n
        for _ in range(_NEWTON):
            inv = inverse(u)
            total = (counts * inv).sum(-1)
            slope = (counts * inv * inv).sum(-1) / (total * total)  # d(1 / total) / du
            u = np.maximum(u - (1 / total - 1) / slope, u)  # 1 / total is concave: from the left
    u = np.where(at_end, 0.0, u)
    p = counts * inverse(u)
    end_mass = np.where(at_end, np.clip(1 - p.sum(-1), 0, 1), 0.0)
    end = np.where(a > 0, 0.0, 1.0)
    mean = (p * values).sum(-1) + end_mass * end
    dev = values - mean[..., None]
    end_dev = end - mean
    var = (p * dev**2).sum(-1) + end_mass * end_dev**2
    third = (p * dev**3).sum(-1) + end_mass * end_dev**3
    return mean, var, third


def score_interval(
    values: ArrayLike,
    counts: ArrayLike,
    confidence: float,
    correction: ArrayLike,
    weights: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Limits of sum_d w_d mean_d, from `counts` (..., D, m) of the `values` (m,) in [0, 1].

    `correction` (..., D): each stratum's continuity correction, in units of its total (half
    a lattice step, see `lattice_step`); the weighted sum's is
    sum_d w_d^2 c_d / n_d. `weights` (D,): equal by default. Every stratum needs an item.
    """
    values = np.asarray(values, dtype=float)
    counts = np.asarray(counts, dtype=float)
    strata = counts.shape[-2]
    weights = np.full(strata, 1 / strata) if weights is None else np.asarray(weights, float)
    n = counts.sum(-1)
    estimate = (weights * (counts * values).sum(-1) / n).sum(-1)
    cc = (weights**2 * np.broadcast_to(np.asarray(correction, float), n.shape) / n).sum(-1)
    z = z_value(confidence)
    # Next to an estimate with no spread at all the skewness term can reject values closer than
    # the limit; there the limit is the outer crossing, which costs twice as much to find.
    flat = ((counts > 0).sum(-1) <= 1).all(-1)
    limits = [np.empty(estimate.shape), np.empty(estimate.shape)]
    for part, is_flat in ((flat, True), (~flat, False)):
        if part.any():
            found = _limits(values, counts[part], weights, estimate[part], cc[part], z, is_flat)
            for limit, value in zip(limits, found, strict=True):
                limit[part] = value
    low, high = limits
    return np.minimum(low, estimate), np.maximum(high, estimate)


def _limits(
    values: np.ndarray,
    counts: np.ndarray,
    weights: np.ndarray,
    estimate: np.ndarray,
    cc: np.ndarray,
    z: float,
    flat: bool,
) -> list[np.ndarray]:
    """Lower and upper limits, found along log |multiplier| by bisection, then Illinois steps.
    `flat`: every stratum has one value only, so look for the outer crossing."""
    n = counts.sum(-1)
    k = (z * z - 1) / 6

    def excess(log_m: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
        """How far theta(log_m) lies beyond the limit (<= 0: inside), and theta itself.
        side 1: below the estimate (multiplier > 0), -1: above."""
        mean, var, third = _tilted(values, counts, weights, side * np.exp(log_m))
        theta = (weights * mean).sum(-1)
        v = (weights**2 * var / n).sum(-1)
        m3 = (weights**3 * third / n**2).sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            skew = np.where(v > 0, k * m3 / v, 0.0)
        return side * (estimate - theta) - cc - side * skew - z * np.sqrt(v), theta

    limits = []
    for side in (1.0, -1.0):
        lo = np.full(estimate.shape, _LOG_RANGE[0])
        hi = np.full(estimate.shape, _LOG_RANGE[1])
        whole = excess(hi, side)[0] <= 0
        for _ in range(_FLAT_BISECTIONS if flat else _BISECTIONS):
            mid = (lo + hi) / 2
            f, theta = excess(mid, side)
            keep = f <= 0
            if flat:  # also while not moved yet or still falling towards the crossing
                falling = excess(mid + _STEP, side)[0] < f - 1e-12 * np.abs(f)
                keep |= falling | (np.abs(theta - estimate) <= 1e-12)
            lo, hi = np.where(keep, mid, lo), np.where(keep, hi, mid)
        f_lo, theta_lo = excess(lo, side)
        f_hi = excess(hi, side)[0]
        inside = f_lo <= 0
        kept = np.zeros(estimate.shape)
        for _ in range(_SECANTS):  # Illinois steps within the bracket
            with np.errstate(divide="ignore", invalid="ignore"):
                x = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
            x = np.clip(np.nan_to_num(x, nan=0.0), np.minimum(lo, hi), np.maximum(lo, hi))
            x = np.where(f_hi != f_lo, x, (lo + hi) / 2)
            f_x = excess(x, side)[0]
            left = (f_x <= 0) & inside
            f_lo_next = np.where(left, f_x, np.where(kept == -1, f_lo / 2, f_lo))
            f_hi_next = np.where(left, np.where(kept == 1, f_hi / 2, f_hi), f_x)
            lo, hi = np.where(left, x, lo), np.where(left, hi, x)
            kept = np.where(left, 1, -1)
            f_lo, f_hi = f_lo_next, f_hi_next
        theta = np.where(inside, excess(lo, side)[1], theta_lo)
        limits.append(np.where(whole, 0.0 if side > 0 else 1.0, theta))
    return limits


def as_arrays(
    groups: Sequence[Mapping[Fraction, float]],
) -> tuple[np.ndarray, np.ndarray, list[Fraction]]:
    """Values (m,) and counts (len(groups), m) on the union of the groups' values, and each
    group's lattice step."""
    support = sorted(set().union(*groups))
    counts = np.array([[g.get(v, 0) for v in support] for g in groups], dtype=float)
    steps = [lattice_step(v for v, c in g.items() if c) for g in groups]
    return np.array([float(v) for v in support]), counts, steps


def mean_intervals(
    groups: Sequence[Mapping[Fraction, float]], confidence: float, steps: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """The interval of each group's mean, from how many items have each value; the continuity
    correction is `steps` lattice steps."""
    values, counts, step = as_arrays(groups)
    correction = np.array([[steps * float(s)] for s in step])
    return score_interval(values, counts[:, None, :], confidence, correction)


def weighted_interval(
    strata: Sequence[Mapping[Fraction, float]],
    weights: Sequence[float],
    confidence: float,
    steps: float = 0.5,
) -> tuple[float, float]:
    """The interval of sum_d w_d mean_d over independent strata (the overall of dimensions)."""
    values, counts, step = as_arrays(strata)
    correction = np.array([steps * float(s) for s in step])
    low, high = score_interval(values, counts, confidence, correction, np.asarray(weights))
    return float(low), float(high)


def proportion_interval(
    count: ArrayLike, n: ArrayLike, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """The interval of a proportion count / n (arrays broadcast, n >= 1): the rate interval of
    the reports, Laud's SCAS with half a step of continuity correction."""
    count, n = np.broadcast_arrays(np.asarray(count, float), np.asarray(n, float))
    counts = np.stack([n - count, count], axis=-1)[..., None, :]
    return score_interval([0.0, 1.0], counts, confidence, np.full((*count.shape, 1), 0.5))
