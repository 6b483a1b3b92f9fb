"""Paired comparison of two runs on the same prompts.

Per dimension and overall: the difference in harmless rate (B - A) with a paired bootstrap CI
(items resampled within each dimension, both runs together), and a test of that difference:

- per dimension, McNemar's exact test on the items where one run is harmless and the other is
  not (with several answers per prompt, an item counts as harmless when at least half are);
- overall, a stratified sign-flip permutation test of the macro difference itself: under the
  null hypothesis the two runs are exchangeable on each item, so each item's difference keeps
  or flips its sign at random, within its dimension. (A McNemar test on the pooled items tests
  the per-item average, which can point the other way from the macro average.)

Both resamplings work on the counts of each distinct item difference per dimension, so their
cost does not grow with the number of items.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from flames.analysis.results import Results, first_prompt_difference
from flames.data.taxonomy import Dimension
from flames.errors import FlamesError, UsageError

MCNEMAR = "McNemar exact"
SIGN_FLIP = "stratified sign-flip permutation"
MIN_RESAMPLES = 100
"""Fewest resamples a paired comparison accepts: fewer make its CI and p-value meaningless."""


class PairedDifference(BaseModel):
    n: int
    rate_a: float
    rate_b: float
    difference: float
    """rate_b - rate_a, in percentage points."""
    ci_low: float
    ci_high: float
    only_a_harmless: int
    only_b_harmless: int
    p_value: float
    """Two-sided p-value of `test`."""
    test: str = MCNEMAR
    test_direction: int
    """Which run the test's statistic favours: 1 for B, -1 for A, 0 for neither."""

    def verdict(self, a: str, b: str) -> str:
        """Plain words: a direction only when the CI, the test and the difference all agree."""
        ci_excludes_zero = not (self.ci_low <= 0 <= self.ci_high)
        significant = self.p_value < 0.05
        direction = int(np.sign(self.difference))
        if significant and self.test_direction != direction:
            return f"inconclusive: the test points the other way from the difference (n={self.n})"
        if ci_excludes_zero and significant:
            better = b if direction > 0 else a
            return f"{better} more harmless by {abs(self.difference):.1f} points"
        if ci_excludes_zero or significant:
            return f"inconclusive: CI and test disagree (n={self.n})"
        return f"too close to tell apart at this sample size (n={self.n})"


class Comparison(BaseModel):
    a: str
    """Name of run A (its directory)."""
    b: str
    dimensions: dict[str, PairedDifference]
    overall: PairedDifference
    """Macro overall: mean of the dimension differences, tested by stratified sign flips.

    Its discordant counts are summed over the dimensions, for information only."""
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


def item_rates(results: Results) -> dict[str, tuple[Dimension, float]]:
    """Per scored item: its dimension and the share of its answers scored harmless."""
    return results.item_rates()


def _difference(a: np.ndarray, b: np.ndarray, reps: np.ndarray) -> PairedDifference:
    harmless_a, harmless_b = a >= 0.5, b >= 0.5
    only_a = int(np.sum(harmless_a & ~harmless_b))
    only_b = int(np.sum(harmless_b & ~harmless_a))
    low, high = np.percentile(reps, [2.5, 97.5])
    return PairedDifference(
        n=len(a),
        rate_a=100 * float(a.mean()),
        rate_b=100 * float(b.mean()),
        difference=100 * float(b.mean() - a.mean()),
        ci_low=float(low),
        ci_high=float(high),
        only_a_harmless=only_a,
        only_b_harmless=only_b,
        p_value=mcnemar_exact(only_a, only_b),
        test_direction=int(np.sign(only_b - only_a)),
    )


def bootstrap_means(differences: np.ndarray, rng: np.random.Generator, samples: int) -> np.ndarray:
    """Bootstrap replicates of the mean of `differences`, drawn as counts of its distinct values.

    Resampling n items with replacement gives each distinct value a multinomial count, so this
    is the ordinary bootstrap at a cost that depends on the distinct values, not on n.
    """
    values, counts = np.unique(differences, return_counts=True)
    n = len(differences)
    return rng.multinomial(n, counts / n, size=samples) @ values / n


def sign_flip_means(differences: np.ndarray, rng: np.random.Generator, samples: int) -> np.ndarray:
    """The mean of `differences` with each item's sign flipped at random, `samples` times.

    Items sharing an absolute difference v are interchangeable: if k of their c signs stay,
    they add v (2k - c), with k ~ Binomial(c, 1/2).
    """
    values, counts = np.unique(np.abs(differences[differences != 0]), return_counts=True)
    kept = rng.binomial(counts, 0.5, size=(samples, len(counts)))
    return (2 * kept - counts) @ values / len(differences)


def sign_flip_test(strata: list[np.ndarray], rng: np.random.Generator, samples: int) -> float:
    """Two-sided p-value of the mean over strata of each stratum's mean difference.

    The permutation p-value counts the observed statistic as one of the draws (Phipson & Smyth
    2010), so it is never 0.
    """
    observed = np.mean([d.mean() for d in strata])
    draws = np.mean([sign_flip_means(d, rng, samples) for d in strata], axis=0)
    extreme = np.sum(np.abs(draws) >= abs(observed) - 1e-12)
    return float((1 + extreme) / (1 + samples))


def paired_by_dimension(
    rates_a: dict[str, tuple[Dimension, float]],
    rates_b: dict[str, tuple[Dimension, float]],
    bootstrap_samples: int = 2000,
    seed: int = 0,
) -> tuple[dict[str, PairedDifference], PairedDifference]:
    """Paired differences per dimension and overall, on the keys both sides have."""
    if bootstrap_samples < MIN_RESAMPLES:
        raise UsageError(
            f"a paired comparison needs at least {MIN_RESAMPLES} resamples (its CIs are "
            f"bootstrap intervals and its overall test a permutation test): give --bootstrap "
            f"{MIN_RESAMPLES} or more (2000 by default)",
            param_hint="--bootstrap",
        )
    common = sorted(rates_a.keys() & rates_b.keys())
    if not common:
        raise FlamesError("nothing to pair: no scored item in common")
    rng = np.random.default_rng(seed)
    dimensions: dict[str, PairedDifference] = {}
    dim_reps, all_a, all_b, strata = [], [], [], []
    for dim in Dimension:
        ids = [i for i in common if rates_a[i][0] is dim]
        if not ids:
            continue
        va = np.array([rates_a[i][1] for i in ids])
        vb = np.array([rates_b[i][1] for i in ids])
        reps = 100 * bootstrap_means(vb - va, rng, bootstrap_samples)
        dimensions[dim.value] = _difference(va, vb, reps)
        dim_reps.append(reps)
        all_a.append(va)
        all_b.append(vb)
        strata.append(vb - va)
    overall = _difference(np.concatenate(all_a), np.concatenate(all_b), np.mean(dim_reps, axis=0))
    overall.rate_a = float(np.mean([d.rate_a for d in dimensions.values()]))
    overall.rate_b = float(np.mean([d.rate_b for d in dimensions.values()]))
    overall.difference = overall.rate_b - overall.rate_a
    overall.test = SIGN_FLIP
    overall.p_value = sign_flip_test(strata, rng, bootstrap_samples)
    overall.test_direction = int(np.sign(np.mean([d.mean() for d in strata])))
    return dimensions, overall


def compare_runs(
    a: Results, b: Results, bootstrap_samples: int = 2000, seed: int = 0
) -> Comparison:
    """Compare two scored runs on the items both have scored."""
    differing = first_prompt_difference(a, b)
    if differing is not None:
        raise FlamesError(f"item {differing} has different prompts in the two runs")
    rates_a, rates_b = item_rates(a), item_rates(b)
    dimensions, overall = paired_by_dimension(rates_a, rates_b, bootstrap_samples, seed)
    return Comparison(
        a=a.run_dir.name,
        b=b.run_dir.name,
        dimensions=dimensions,
        overall=overall,
        paired_items=len(rates_a.keys() & rates_b.keys()),
        only_in_a=len(rates_a.keys() - rates_b.keys()),
        only_in_b=len(rates_b.keys() - rates_a.keys()),
        same_scorer=(a.scorer.kind, a.scorer.config) == (b.scorer.kind, b.scorer.config),
    )
