"""The paired tests keep their level, reach a paired t-test's power, and the tables that make
many of them adjust for it: simulation against scipy and statsmodels.

Runs are simulated per prompt: each prompt has its own chance of a harmless answer (drawn from a
beta distribution, so answers to the same prompt are correlated), and each run gives it three
answers (or one). Rejection rates over R simulated comparisons have a Monte-Carlo standard
error of sqrt(p (1 - p) / R): 0.007 at p = 0.05 and R = 1,000.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from flames.analysis.compare import (
    mcnemar_exact,
    paired_test,
    shifted_values,
    sign_flip_test,
)
from flames.analysis.intervals import weighted_interval
from flames.analysis.multiplicity import adjust

FLAMES_SIZES = (249, 429, 201, 46, 75)


def prompts(rng, n, mean, icc=0.3):
    """Each prompt's chance of a harmless answer: beta with this mean and intra-prompt
    correlation."""
    a, b = mean * (1 - icc) / icc, (1 - mean) * (1 - icc) / icc
    return rng.beta(a, b, size=n)


def shares(rng, chance, answers=3):
    return rng.binomial(answers, chance) / answers


def pair(rng, n, rate_a=0.8, rate_b=0.8, answers=3):
    """Per-prompt shares of runs A and B; B's chance is A's moved to mean rate_b."""
    chance = prompts(rng, n, rate_a)
    moved = 1 - (1 - chance) * (1 - rate_b) / (1 - rate_a)
    return shares(rng, chance, answers), shares(rng, moved, answers)


@pytest.mark.parametrize("n", [46, 249])
def test_the_test_on_shares_keeps_its_level_and_beats_the_majority_rule(n):
    rng = np.random.default_rng(n)
    reps = 800
    null = [paired_test(b - a, rng, 500)[0] for a, b in (pair(rng, n) for _ in range(reps))]
    level = np.mean(np.array(null) < 0.05)
    assert level <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / reps), level

    ours, t_test, majority = [], [], []
    for _ in range(reps):
        a, b = pair(rng, n, 0.80, 0.85)
        ours.append(paired_test(b - a, rng, 500)[0] < 0.05)
        t_test.append(stats.ttest_rel(b, a).pvalue < 0.05 if np.any(a != b) else False)
        # The old rule: a prompt is harmless when at least half its answers are.
        only_a = int(np.sum((a >= 0.5) & (b < 0.5)))
        only_b = int(np.sum((b >= 0.5) & (a < 0.5)))
        majority.append(mcnemar_exact(only_a, only_b) < 0.05)
    power, t_power, old = np.mean(ours), np.mean(t_test), np.mean(majority)
    # At least a paired t-test's power (within two standard errors of their difference).
    difference = np.array(ours, float) - np.array(t_test, float)
    assert power >= t_power - 2 * difference.std() / np.sqrt(reps) - 0.005, (power, t_power)
    assert power > old + 0.1, (power, old)


def test_the_stratified_overall_test_keeps_its_level_with_several_answers():
    rng = np.random.default_rng(7)
    reps = 500
    rejected = 0
    for _ in range(reps):
        strata = []
        for n, rate in zip(FLAMES_SIZES, (0.5, 0.6, 0.7, 0.3, 0.9), strict=True):
            a, b = pair(rng, n, rate, rate)
            strata.append(b - a)
        rejected += sign_flip_test(strata, rng, 400) < 0.05
    assert rejected / reps <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / reps)


def test_holm_keeps_compare_from_naming_winners_by_chance():
    """Two runs with the same true rates, one answer per prompt: how often does some dimension
    row name a winner? Unadjusted, 15-20% of comparisons do; after Holm at most 5%."""
    rng = np.random.default_rng(11)
    reps = 1000
    raw_any = holm_any = 0
    for rep in range(reps):
        p = []
        for n in FLAMES_SIZES:
            a, b = pair(rng, n, 0.6, 0.6, answers=1)
            p.append(paired_test(b - a, rng, 100)[0])
        raw_any += min(p) < 0.05
        holm = adjust(p, "holm")
        if rep < 20:  # statsmodels' Holm runs the garbage collector on each call: slow
            assert holm == pytest.approx(multipletests(p, method="holm")[1])
        holm_any += min(holm) < 0.05
    se = np.sqrt(0.05 * 0.95 / reps)
    assert raw_any / reps > 0.1
    assert holm_any / reps <= 0.05 + 2 * se


def test_benjamini_hochberg_keeps_the_heatmap_from_starring_chance():
    """Eight transforms that change nothing, five dimensions each: unadjusted, most runs star
    some cell; adjusted for the false discovery rate (here the chance of any star) at most 5%."""
    rng = np.random.default_rng(13)
    reps = 300
    raw_any = bh_any = 0
    sizes = (60, 100, 50, 12, 18)  # a 240-prompt augmented sample
    for rep in range(reps):
        p = []
        for _transform in range(8):
            for n in sizes:
                a, b = pair(rng, n, 0.7, 0.7, answers=1)
                p.append(paired_test(b - a, rng, 100)[0])
        raw_any += min(p) < 0.05
        bh = adjust(p, "bh")
        if rep < 20:
            assert bh == pytest.approx(multipletests(p, method="fdr_bh")[1])
        bh_any += min(bh) < 0.05
    assert raw_any / reps > 0.4
    assert bh_any / reps <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / reps)


def test_the_sign_flip_p_value_matches_scipys_exact_permutation_test():
    rng = np.random.default_rng(3)
    a, b = pair(rng, 14, 0.6, 0.75)
    d = b - a
    exact = stats.permutation_test(
        (b, a),
        lambda x, y: np.mean(x - y),
        permutation_type="samples",
        n_resamples=np.inf,
        alternative="two-sided",
    ).pvalue
    p, name = paired_test(d, rng, 40_000)
    assert name == "sign-flip permutation, mid-p"
    # scipy counts the ties in full; the mid-p counts them half: the two bracket each other.
    ties = stats.permutation_test(
        (b, a),
        lambda x, y: np.mean(x - y),
        permutation_type="samples",
        n_resamples=np.inf,
        alternative="two-sided",
    )
    null = np.abs(ties.null_distribution)
    observed = abs(d.mean())
    mid = np.mean(null > observed + 1e-12) + np.mean(np.abs(null - observed) <= 1e-12) / 2
    assert exact == pytest.approx(np.mean(null >= observed - 1e-12))
    assert p == pytest.approx(mid, abs=3 * np.sqrt(mid * (1 - mid) / 40_000) + 1e-4)


def test_the_overall_interval_agrees_with_the_overall_test():
    """The overall interval excludes 0 essentially only when the stratified test rejects."""
    rng = np.random.default_rng(17)
    disagree = rejected = 0
    reps = 200
    for _ in range(reps):
        strata, values = [], []
        for n in FLAMES_SIZES:
            a, b = pair(rng, n, 0.9, 0.915, answers=1)
            strata.append(b - a)
            values.append(shifted_values(b - a))
        low, high = weighted_interval(values, [0.2] * 5, 0.95)  # as compare computes it
        excludes = low > 0.5 or high < 0.5
        rejects = sign_flip_test(strata, rng, 2000) < 0.05
        rejected += rejects
        disagree += excludes and not rejects
    assert 0.1 < rejected / reps < 0.9  # a case where both outcomes happen
    assert disagree / reps <= 0.02
