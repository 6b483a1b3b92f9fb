"""The measured coverage, level and power quoted in docs/statistics.md, with more replications
than the test suite affords: the same simulations (tests/test_coverage.py,
tests/test_significance.py), larger.

    python bench/interval_coverage.py            # everything (about nine minutes on 2 cores)
    python bench/interval_coverage.py --quick    # fewer replications

Exact coverage (every table of counts summed with its probability) needs no replications; the
Monte-Carlo parts print their replication count and standard error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flames.analysis.compare import mcnemar_exact, paired_test, shifted_values, sign_flip_test
from flames.analysis.intervals import score_interval, weighted_interval
from flames.analysis.multiplicity import adjust
from flames.data.taxonomy import Dimension
from tests.test_coverage import (
    FLAMES_SIZES,
    RATES,
    SAMPLE_50,
    SIMPLEX,
    exact,
    rate_limits,
    share_tables,
    simulate_overall,
    t_limits,
    tables,
    three_level,
    three_level_limits,
    two_level,
)
from tests.test_significance import FLAMES_SIZES as SIZES, pair

LEVELS = np.array([0.0, 0.5, 1.0])


def rate(quick: bool) -> None:
    print("## Harmless rate, one answer per prompt: exact coverage over 1,999 true rates")
    print("n | worst coverage (at rate) | mean coverage | worst tail")
    sizes = [*range(1, 51), 75, 201, 249, 429] if not quick else [1, 2, 4, 7, 12, 46, 249]
    for n in sizes:
        x = np.arange(n + 1)
        low, high = rate_limits(x, n)
        pmf = stats.binom.pmf(x[None, :], n, RATES[:, None])
        r = RATES[:, None]
        coverage = (pmf * ((low <= r + 1e-12) & (r <= high + 1e-12))).sum(-1)
        tail = max((pmf * (low > r)).sum(-1).max(), (pmf * (high < r)).sum(-1).max())
        worst = coverage.argmin()
        print(
            f"{n} | {coverage[worst]:.4f} ({RATES[worst]:.4f}) | {coverage.mean():.4f} | {tail:.4f}"
        )


def score(quick: bool) -> None:
    print("\n## Harmless score (and a paired difference): exact coverage over the simplex grid")
    print("n | worst coverage | worst tail | paired: worst coverage | width / t: median, 90%, max")
    sizes = (1, 2, 3, 5, 8, 12, 21, 46, 75, 120, 201, 249, 429)
    for n in sizes[:8] if quick else sizes:
        counts = tables(n)
        low, high = three_level_limits(counts, 0.5)
        found = exact(counts, low, high, SIMPLEX, LEVELS)
        tail = max(found["below"].max(), found["above"].max())
        ratio = ""
        if n >= 46:
            t_low, t_high = t_limits(counts, n)
            t_found = exact(counts, t_low, t_high, SIMPLEX, LEVELS)
            valid = (t_found["coverage"] >= 0.93) & (n * SIMPLEX >= 5).all(-1)
            r = found["width"][valid] / t_found["width"][valid]
            ratio = f"{np.median(r):.3f}, {np.quantile(r, 0.9):.3f}, {r.max():.3f}"
        print(f"{n} | {found['coverage'].min():.4f} | {tail:.4f} | (same) | {ratio}")


def overall(quick: bool) -> None:
    runs = 4000 if quick else 20_000
    print(
        f"\n## Overall: Monte Carlo, {runs} runs per case "
        f"(s.e. of a 2.5% tail {100 * np.sqrt(0.025 * 0.975 / runs):.2f} points)"
    )
    print("sizes | worst lower-tail miss | worst upper-tail miss | worst coverage")
    kinds = [three_level if d.scale == (1, 2, 3) else two_level for d in Dimension]
    for sizes in (FLAMES_SIZES, SAMPLE_50, (5,) * 5, (12,) * 5, (20,) * 5, (46,) * 5):
        rng = np.random.default_rng(1)
        shapes = [
            ("rate", [two_level(r)] * 5) for r in (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.3, 0.5)
        ]
        shapes += [("score", [k(r) for k in kinds]) for r in (0.02, 0.5, 0.98)]
        found = simulate_overall(sizes, shapes, rng, runs)
        # By symmetry a rate r's lower tail is 1 - r's upper tail: report both together.
        worst = max(max(b, a) for b, a, _ in found)
        below = max(b for b, _, _ in found)
        above = max(a for _, a, _ in found)
        coverage = min(1 - b - a for b, a, _ in found)
        print(f"{sizes} | {below:.4f} | {above:.4f} | {coverage:.4f} (worst tail {worst:.4f})")


def tests(quick: bool) -> None:
    reps = 500 if quick else 2000
    se = np.sqrt(0.05 * 0.95 / reps)
    print(f"\n## Tests, {reps} simulated comparisons each (s.e. at 5%: {se:.4f})")
    print("three answers per prompt, intra-prompt correlation 0.3; power at 0.80 -> 0.85")
    print("n | level | power | paired t power | old majority-rule McNemar power")
    for n in (46, 75, 201, 249, 429):
        rng = np.random.default_rng(n)
        level = np.mean(
            [
                paired_test(b - a, rng, 1000)[0] < 0.05
                for a, b in (pair(rng, n) for _ in range(reps))
            ]
        )
        ours, t_test, old = [], [], []
        for _ in range(reps):
            a, b = pair(rng, n, 0.80, 0.85)
            ours.append(paired_test(b - a, rng, 1000)[0] < 0.05)
            t_test.append(stats.ttest_rel(b, a).pvalue < 0.05)
            only_a = int(np.sum((a >= 0.5) & (b < 0.5)))
            only_b = int(np.sum((b >= 0.5) & (a < 0.5)))
            old.append(mcnemar_exact(only_a, only_b) < 0.05)
        print(
            f"{n} | {level:.4f} | {np.mean(ours):.4f} | {np.mean(t_test):.4f} | {np.mean(old):.4f}"
        )
    rng = np.random.default_rng(3)
    raw = holm = 0
    for _ in range(reps):
        p = [
            paired_test(b - a, rng, 200)[0]
            for a, b in (pair(rng, n, 0.6, 0.6, 1) for n in FLAMES_SIZES)
        ]
        raw += min(p) < 0.05
        holm += min(adjust(p, "holm")) < 0.05
    print(
        "compare, same true rates, some dimension row significant: "
        f"unadjusted {raw / reps:.4f}, Holm {holm / reps:.4f}"
    )
    raw = bh = 0
    for _ in range(reps // 4):
        p = [
            paired_test(b - a, rng, 200)[0]
            for _ in range(8)
            for a, b in (pair(rng, n, 0.7, 0.7, 1) for n in (60, 100, 50, 12, 18))
        ]
        raw += min(p) < 0.05
        bh += min(adjust(p, "bh")) < 0.05
    share = reps // 4
    print(
        "robustness, 8 transforms x 5 dimensions changing nothing, any star: "
        f"unadjusted {raw / share:.4f}, BH {bh / share:.4f}"
    )
    level = 0
    for _ in range(reps // 2):
        strata = [
            b - a
            for a, b in (
                pair(rng, n, r, r)
                for n, r in zip(FLAMES_SIZES, (0.5, 0.6, 0.7, 0.3, 0.9), strict=True)
            )
        ]
        level += sign_flip_test(strata, rng, 1000) < 0.05
    print(f"overall stratified test, three answers per prompt: level {level / (reps // 2):.4f}")


def shares(quick: bool) -> None:
    print("\n## Harmless rate, three answers per prompt: exact coverage")
    print("shares of three answers correlated within the prompt (beta-binomial: rates 0.01-0.99,")
    print("intra-prompt correlation 0.05, 0.3, 0.8)")
    print("n | worst coverage | worst tail")
    values = np.array([0.0, 1 / 3, 2 / 3, 1.0])
    for n in (1, 2, 3, 5, 8, 13) if quick else (1, 2, 3, 5, 8, 13, 21):
        counts = share_tables(n)
        inner = (counts[:, 1] > 0) | (counts[:, 2] > 0)
        steps = 0.5 * np.where(inner, 1 / 3, 1.0)[:, None]
        low, high = score_interval(values, counts[:, None, :], 0.95, steps)
        points = []
        for r in (0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99):
            for icc in (0.05, 0.3, 0.8):
                a, b = r * (1 - icc) / icc, (1 - r) * (1 - icc) / icc
                points.append(stats.betabinom.pmf(np.arange(4), 3, a, b))
        found = exact(counts, low, high, np.array(points), values)
        tail = max(found["below"].max(), found["above"].max())
        print(f"{n} | {found['coverage'].min():.4f} | {tail:.4f}")


def paired(quick: bool) -> None:
    runs = 2500 if quick else 10_000
    print(f"\n## Overall paired difference: Monte Carlo, {runs} runs per case")
    print("(P(only A harmless), P(same), P(only B harmless)) per dimension")
    print("sizes | worst coverage (case)")
    cases = [
        [(0.01, 0.98, 0.01)] * 5,
        [(0.03, 0.96, 0.01)] * 5,
        [(0.1, 0.75, 0.15)] * 5,
        [(0.3, 0.4, 0.3)] * 5,
        [(0.02, 0.9, 0.08), (0.2, 0.7, 0.1), (0.0, 1.0, 0.0), (0.05, 0.9, 0.05), (0.1, 0.8, 0.1)],
    ]
    for sizes in (FLAMES_SIZES, SAMPLE_50):
        rng = np.random.default_rng(sum(sizes))
        found = []
        for k, probabilities in enumerate(cases):
            drawn = zip(sizes, probabilities, strict=True)
            counts = np.stack([rng.multinomial(n, p, size=runs) for n, p in drawn], axis=1)
            counts = counts.astype(float)
            unique, where = np.unique(counts.reshape(runs, -1), axis=0, return_inverse=True)
            unique = unique.reshape(len(unique), *counts.shape[1:])
            steps = 0.5 * np.where(unique[..., 1] > 0, 0.5, 1.0)
            low, high = score_interval([0.0, 0.5, 1.0], unique, 0.95, steps)
            low, high = low[where.ravel()], high[where.ravel()]
            truth = np.mean([p[1] / 2 + p[2] for p in probabilities])
            found.append((np.mean((low <= truth + 1e-12) & (truth - 1e-12 <= high)), k))
        coverage, k = min(found)
        print(f"{sizes} | {coverage:.4f} (case {k + 1} of {len(cases)})")
    reps = 300 if quick else 1000
    print(f"\n## Overall interval against the overall test: {reps} comparisons, 0.90 -> 0.915")
    print("answers per prompt | test rejects | CI excludes 0 | CI excludes 0, test does not")
    for answers in (1, 3):
        rng = np.random.default_rng(17)
        rejected = excluded = disagree = 0
        for _ in range(reps):
            strata, values = [], []
            for n in SIZES:
                a, b = pair(rng, n, 0.9, 0.915, answers=answers)
                strata.append(b - a)
                values.append(shifted_values(b - a))
            low, high = weighted_interval(values, [0.2] * 5, 0.95)
            excludes = low > 0.5 or high < 0.5
            rejects = sign_flip_test(strata, rng, 2000) < 0.05
            rejected += rejects
            excluded += excludes
            disagree += excludes and not rejects
        print(f"{answers} | {rejected / reps:.4f} | {excluded / reps:.4f} | {disagree / reps:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and replications")
    parser.add_argument("--parts", default="rate,score,shares,overall,paired,tests")
    args = parser.parse_args()
    for part in args.parts.split(","):
        parts = {"rate": rate, "score": score, "shares": shares, "overall": overall}
        parts |= {"paired": paired, "tests": tests}
        parts[part](args.quick)


if __name__ == "__main__":
    main()
