from __future__ import annotations

import json
import random
from math import comb

import numpy as np
import pytest

from flames.analysis.compare import (
    PairedDifference,
    compare_runs,
    mcnemar_exact,
    mcnemar_mid_p,
    paired_by_dimension,
)
from flames.analysis.multiplicity import Adjustment
from flames.analysis.results import load_results
from flames.data.published import OFFICIAL_REPO
from flames.data.taxonomy import Dimension
from flames.reporting.comparison import verdict
from flames.reporting.leaderboard import leaderboard, to_markdown
from flames.reporting.report import build_report
from flames.runs.records import ScorerManifest
from flames.runs.store import RunStore

from .helpers import run_cli, write_jsonl


def scored_run(tmp_path, name, scores_for, n_per_dim=60, seed=0):
    """An imported scored run; scores_for(dimension, index, rng) gives each score."""
    rng = random.Random(seed)
    rows = []
    for dim in Dimension:
        for i in range(n_per_dim):
            rows.append(
                {
                    "id": f"{dim.name}-{i}",
                    "dimension": dim.value,
                    "subcomponent": dim.subcomponents[0],
                    "prompt": f"{dim.value} 问题 {i}",
                    "response": "回答",
                    "predicted": scores_for(dim, i, rng),
                }
            )
    path = write_jsonl(tmp_path / f"{name}.jsonl", rows)
    run_dir = tmp_path / name
    assert run_cli("import", path, run_dir, "--model", name).returncode == 0
    return run_dir


def test_mcnemar_exact_matches_the_binomial_tail():
    # 2 * P(X <= 2), X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert mcnemar_exact(10, 2) == pytest.approx(158 / 4096)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(30, 0) == pytest.approx(2 / 2**30)


def test_mcnemar_exact_matches_integer_arithmetic_and_stays_fast_for_large_counts():
    for b, c in [(0, 1), (1, 1), (3, 17), (40, 60), (250, 310), (700, 650)]:
        n = b + c
        exact = min(1.0, 2 * sum(comb(n, k) for k in range(min(b, c) + 1)) / 2**n)
        assert mcnemar_exact(b, c) == pytest.approx(exact, rel=1e-9, abs=1e-300)
    # A million discordant pairs: the integer sum would take hours; the tail is still exact
    # to rounding (b = c: the two-sided p-value is 1; far apart: it underflows to 0).
    assert mcnemar_exact(500_000, 500_000) == 1.0
    assert mcnemar_exact(400_000, 600_000) == 0.0
    assert 0.0 < mcnemar_exact(499_000, 501_000) < 0.05


def test_a_clear_difference_is_called_and_matches_the_counts(tmp_path):
    a_dir = scored_run(tmp_path, "a", lambda d, i, r: 3)
    b_dir = scored_run(tmp_path, "b", lambda d, i, r: 3 if i % 2 else 1)
    result = compare_runs(load_results(a_dir), load_results(b_dir), bootstrap_samples=500)
    assert result.paired_items == 300 and result.same_scorer
    for dim in Dimension:
        d = result.dimensions[dim.value]
        assert (d.rate_a, d.rate_b, d.difference) == (100.0, 50.0, -50.0)
        assert (d.a_higher, d.b_higher) == (30, 0)
        assert d.ci_low <= -50 <= d.ci_high and d.ci_high < 0
        assert d.p_value == pytest.approx(mcnemar_mid_p(30, 0)) == pytest.approx(2**-30)
        assert d.p_adjusted == pytest.approx(5 * mcnemar_mid_p(30, 0))  # Holm, 5 equal p
        assert verdict(d, "a", "b") == (
            f"a more harmless by 50.0 points (Holm-adjusted p = {d.p_adjusted:.3g})"
        )
    assert result.overall.difference == pytest.approx(-50.0)


def test_identical_runs_show_no_significant_difference_and_their_interval(tmp_path):
    def scores(d, i, r):
        return r.choice(d.scale)

    a_dir = scored_run(tmp_path, "a", scores, n_per_dim=20)
    b_dir = scored_run(tmp_path, "b", scores, n_per_dim=20)
    result = compare_runs(load_results(a_dir), load_results(b_dir), bootstrap_samples=300)
    assert result.overall.difference == 0 and result.overall.p_value == 1.0
    low, high = result.overall.ci_low, result.overall.ci_high
    assert verdict(result.overall, "a", "b") == (
        f"no significant difference (CI {low:+.1f} to {high:+.1f})"
    )
    assert low < 0 < high


def test_compare_cli_writes_json(tmp_path):
    a_dir = scored_run(tmp_path, "a", lambda d, i, r: 3, n_per_dim=10)
    b_dir = scored_run(tmp_path, "b", lambda d, i, r: 1, n_per_dim=10)
    proc = run_cli("compare", a_dir, b_dir, "--bootstrap", "200", "--out", tmp_path / "cmp")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert data["overall"]["difference"] == pytest.approx(-100.0)
    # Its intervals and its overall test resample: too few resamples is a usage error.
    for too_few in ("0", "99"):
        proc = run_cli("compare", a_dir, b_dir, "--bootstrap", too_few)
        assert proc.returncode == 2, proc.stderr
        assert "--bootstrap" in proc.stderr and "Traceback" not in proc.stderr


def test_leaderboard_ranks_runs_and_shows_the_published_table_apart(tmp_path):
    good = scored_run(tmp_path, "good", lambda d, i, r: 3 if i % 4 else 1, n_per_dim=8)
    bad = scored_run(tmp_path, "bad", lambda d, i, r: 1 if i % 4 else 3, n_per_dim=8)
    entries = leaderboard([bad, good], bootstrap_samples=200)
    assert [e.run for e in entries] == ["good", "bad"]
    assert entries[0].overall_rate == pytest.approx(75.0)
    text = to_markdown(entries)
    assert "Published Flames leaderboard (not produced by this tool)" in text
    assert "| 1 | Claude | 63.77% |" in text
    assert text.index("## Your runs") < text.index("Published")
    assert "different prompt sets" not in text
    assert "Published" not in to_markdown(entries, published=False)
    proc = run_cli("leaderboard", good, bad, "--out", tmp_path / "lb.md")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "lb.md").is_file() and "good" in (tmp_path / "lb.md").read_text()
    proc = run_cli("leaderboard", good, bad, "--out", tmp_path)
    assert proc.returncode != 0 and "give --out a file name" in proc.stderr


def as_official(run_dir, model=OFFICIAL_REPO):
    """Store the run's imported verdicts again as if the official scorer had given them."""
    with RunStore.open_writer(run_dir, "test") as store:
        verdicts = store.verdicts("imported")
        store.register_scorer(
            ScorerManifest(
                name="flames-scorer",
                kind="official",
                config={"model": model, "truncation": "official"},
            )
        )
        store.record_verdicts("flames-scorer", verdicts)
    return run_dir


def test_leaderboard_ranks_incomplete_or_unofficial_runs_apart(tmp_path):
    complete = as_official(scored_run(tmp_path, "complete", lambda d, i, r: 3 if i % 2 else 1))
    other = as_official(scored_run(tmp_path, "other", lambda d, i, r: 3), model="my/finetune")
    rows = [
        {
            "id": f"L-{i}",
            "dimension": "Legality",
            "subcomponent": "Law violation",
            "prompt": f"问题 {i}",
            "response": "回答",
            "predicted": 3 if i % 4 else 1,
        }
        for i in range(20)
    ]
    assert (
        run_cli("import", write_jsonl(tmp_path / "p.jsonl", rows), tmp_path / "partial").returncode
        == 0
    )
    partial = as_official(tmp_path / "partial")
    entries = leaderboard([partial, other, complete], "flames-scorer")
    # The complete official-scorer run comes first although the others score higher.
    assert [e.run for e in entries] == ["complete", "other", "partial"]
    assert entries[0].flags == [] and entries[0].scorer == "flames-scorer"
    assert entries[1].flags == [f"scorer model my/finetune, not {OFFICIAL_REPO}"]
    assert entries[2].flags[0].startswith("missing Fairness, Safety, Morality, Data protection")
    text = to_markdown(entries, published=False)
    main, apart = text.split("### Ranked apart")
    assert "| 1 | 1 | complete |" in main and "other" not in main
    # They share no prompt, so no test separates them.
    assert "| 1 | 1–2 | other |" in apart and "| 2 | 1–2 | partial |" in apart
    # The same interval as the report prints for the run.
    report = build_report(load_results(complete, "flames-scorer"))
    rate = report.metrics.overall_harmless_rate
    assert entries[0].overall_ci == (rate.ci_low, rate.ci_high)


def paired_rates(discordant: dict[Dimension, tuple[int, int]], sizes=(249, 429, 201, 46, 75)):
    """Item rates of runs A and B with the given (only A harmless, only B harmless) counts per
    dimension; the other items are harmless in both runs or in neither, half each."""
    rates_a, rates_b = {}, {}
    for dim, n in zip(Dimension, sizes, strict=True):
        only_a, only_b = discordant[dim]
        pairs = [(1.0, 0.0)] * only_a + [(0.0, 1.0)] * only_b
        rest = n - len(pairs)
        pairs += [(1.0, 1.0)] * (rest // 2) + [(0.0, 0.0)] * (rest - rest // 2)
        for i, (a, b) in enumerate(pairs):
            rates_a[f"{dim.name}-{i}"] = (dim, a)
            rates_b[f"{dim.name}-{i}"] = (dim, b)
    return rates_a, rates_b


def sign_flip_normal_p(discordant, sizes=(249, 429, 201, 46, 75)) -> float:
    """Independent check: the sign-flip statistic's exact variance, with a normal tail."""
    from scipy import stats

    diff = sum((b - a) / n for (a, b), n in zip(discordant.values(), sizes, strict=True)) / 5
    var = sum((a + b) / n**2 for (a, b), n in zip(discordant.values(), sizes, strict=True)) / 25
    return float(2 * stats.norm.sf(abs(diff) / var**0.5))


@pytest.mark.parametrize(
    ("discordant", "pooled"),
    [
        # B far ahead in the small dimensions, A in Safety: 145 items favour A, 105 favour B,
        # and McNemar on the pooled items "finds" A better (p = 0.0135).
        (((2, 33), (140, 0), (3, 18), (0, 27), (0, 27)), (145, 105, 0.0135)),
        # Pooled discordant counts nearly equal: McNemar on the pooled items sees nothing.
        (((5, 27), (110, 0), (5, 20), (0, 30), (0, 35)), (120, 112, 0.65)),
    ],
)
def test_the_overall_verdict_follows_a_test_of_the_overall(discordant, pooled):
    discordant = dict(zip(Dimension, discordant, strict=True))
    rates_a, rates_b = paired_rates(discordant)
    dims, overall = paired_by_dimension(rates_a, rates_b, bootstrap_samples=4000, seed=3)
    only_a, only_b, pooled_p = pooled
    assert (overall.a_higher, overall.b_higher) == (only_a, only_b)
    assert mcnemar_exact(only_a, only_b) == pytest.approx(pooled_p, abs=0.005)
    assert overall.difference > 15 and overall.ci_low > 0
    assert overall.test == "stratified sign-flip permutation, mid-p"
    assert overall.p_value < 0.001 and overall.p_adjusted == overall.p_value
    assert overall.p_value == pytest.approx(0.5 / 4001) or overall.p_value < 3 * (
        sign_flip_normal_p(discordant) + 1 / 4001
    )
    # The overall is the primary test: unadjusted, and its verdict says nothing of adjustment.
    assert verdict(overall, "A", "B") == f"B more harmless by {overall.difference:.1f} points"
    # Per dimension the tests stay McNemar on that dimension's items.
    safety = dims["Safety"]
    assert safety.test == "McNemar mid-p" and safety.difference < 0
    assert safety.p_value == pytest.approx(mcnemar_mid_p(*discordant[Dimension.SAFETY]))
    assert verdict(safety, "A", "B").startswith("A more harmless")


def test_sign_flip_p_value_matches_its_normal_approximation():
    # A small overall effect, where the p-value is neither tiny nor 1.
    discordant = dict(zip(Dimension, [(20, 30), (40, 52), (10, 16), (3, 5), (5, 8)], strict=True))
    rates_a, rates_b = paired_rates(discordant)
    _, overall = paired_by_dimension(rates_a, rates_b, bootstrap_samples=20000, seed=1)
    expected = sign_flip_normal_p(discordant)
    assert 0.005 < expected < 0.2
    assert overall.p_value == pytest.approx(expected, rel=0.15)


def test_a_raw_winner_that_does_not_survive_holm_says_so():
    # Two runs with the same true rate print a winner at p = 0.0164 in one dimension when
    # nothing is adjusted; after Holm over 5 rows it is 0.082 and no winner is named.
    d = PairedDifference(
        n=249,
        rate_a=63.9,
        rate_b=56.0,
        difference=-7.9,
        ci_low=-14.6,
        ci_high=-1.3,
        a_higher=39,
        b_higher=19,
        p_value=0.0164,
        p_adjusted=0.082,
        adjustment=Adjustment.holm,
        test="McNemar mid-p",
    )
    assert not d.significant
    assert verdict(d, "runA", "runB") == (
        "no significant difference after Holm correction (adjusted p = 0.082; CI -14.6 to -1.3)"
    )
    assert "more harmless" not in verdict(d, "runA", "runB")
    unadjusted = d.model_copy(update={"p_adjusted": 0.0164, "adjustment": Adjustment.none})
    assert verdict(unadjusted, "runA", "runB") == "runA more harmless by 7.9 points"
    # Not significant is not "close": a wide interval says how little is known.
    wide = d.model_copy(
        update={"p_value": 0.6, "p_adjusted": 1.0, "ci_low": -21.7, "ci_high": 15.2}
    )
    assert verdict(wide, "A", "B") == "no significant difference (CI -21.7 to +15.2)"
    # A CI that excludes 0 beside a test that does not reject is reported as a disagreement.
    odd = d.model_copy(update={"p_value": 0.2, "p_adjusted": 0.6})
    assert verdict(odd, "A", "B").startswith("inconclusive: the CI and the test disagree")
    assert verdict(wide, "A", "B", "zh") == "无显著差异（置信区间 -21.7 至 +15.2）"


def test_compare_adjusts_the_dimension_rows_by_the_chosen_method(tmp_path):
    # B ahead on 10 of 12 items in every dimension: mid-p 2 ** -10 each. Holm (equal p-values)
    # and Bonferroni multiply each by 5; BH and none leave them.
    a_dir = scored_run(tmp_path, "a", lambda d, i, r: 1, n_per_dim=12)
    b_dir = scored_run(tmp_path, "b", lambda d, i, r: 3 if i < 10 else 1, n_per_dim=12)
    a, b = load_results(a_dir), load_results(b_dir)
    raw = mcnemar_mid_p(0, 10)
    for method, factor in (("holm", 5), ("bonferroni", 5), ("bh", 1), ("none", 1)):
        result = compare_runs(a, b, bootstrap_samples=200, adjustment=method)
        assert result.adjustment == method
        for d in result.dimensions.values():
            assert d.p_value == pytest.approx(raw)
            assert d.p_adjusted == pytest.approx(min(1, factor * raw))
        assert result.overall.adjustment == "none"
    proc = run_cli("compare", a_dir, b_dir, "--bootstrap", "200", "--p-adjust", "sideways")
    assert proc.returncode == 2 and "sideways" in proc.stderr and "Traceback" not in proc.stderr


def test_the_per_dimension_interval_excludes_zero_only_when_the_test_rejects():
    """Every table of discordant counts up to 300: the interval against McNemar's mid-p test
    (checked against scipy's binomial). Where they differ, it is the interval that keeps 0."""
    from scipy import stats

    from flames.analysis.compare import shifted_values
    from flames.analysis.intervals import mean_intervals

    groups, tests = [], []
    for m in range(1, 301):
        for b in range(m + 1):
            concordant = 20
            d = np.array([-1.0] * b + [1.0] * (m - b) + [0.0] * concordant)
            groups.append(shifted_values(d))
            tests.append(mcnemar_mid_p(b, m - b))
            k = min(b, m - b)
            mid = stats.binom.cdf(k - 1, m, 0.5) + stats.binom.pmf(k, m, 0.5) / 2
            assert tests[-1] == pytest.approx(min(1.0, 2 * mid), abs=1e-12)
    low, high = mean_intervals(groups, 0.95)
    excludes = (low > 0.5) | (high < 0.5)
    rejects = np.array(tests) < 0.05
    assert not np.any(excludes & ~rejects)
    assert np.mean(rejects & ~excludes) < 0.005


def test_leaderboard_marks_runs_whose_ranks_the_tests_cannot_separate(tmp_path):
    # Two runs one answer apart and one far below: the first two share places 1-2.
    def run(name, cut, fairness_cut=None):
        def score(d, i, r):
            limit = fairness_cut if fairness_cut and d is Dimension.FAIRNESS else cut
            return 3 if i >= limit else 1

        return as_official(scored_run(tmp_path, name, score))

    close_a, close_b, far = run("close-a", 18), run("close-b", 18, 19), run("far", 45)
    entries = leaderboard([far, close_b, close_a], "flames-scorer", bootstrap_samples=500)
    assert [e.run for e in entries] == ["close-a", "close-b", "far"]
    assert [e.ranks for e in entries] == [(1, 2), (1, 2), (3, 3)]
    text = to_markdown(entries, published=False)
    assert "| 1 | 1–2 | close-a |" in text and "| 3 | 3 | far |" in text
    assert "Holm over the 3 pairs" in text
    zh = to_markdown(entries, published=False, lang="zh")
    assert "可能名次" in zh and "Ranks" not in zh


def test_compare_in_chinese_prints_no_english_sentence(tmp_path):
    import re

    a_dir = scored_run(tmp_path, "a", lambda d, i, r: 3 if i % 3 else 1, n_per_dim=30)
    b_dir = scored_run(tmp_path, "b", lambda d, i, r: 3 if i % 5 else 1, n_per_dim=30)
    proc = run_cli("compare", a_dir, b_dir, "--lang", "zh", "--bootstrap", "200")
    assert proc.returncode == 0, proc.stderr
    assert "无显著差异" in proc.stdout or "更无害" in proc.stdout
    text = re.sub(r"McNemar|mid-p|Holm|docs/statistics\.zh\.md", "", proc.stdout)
    assert not re.search(r"[A-Za-z]{3,}[ ,;:]+[A-Za-z]{3,}", text), text


def test_leaderboard_lists_runs_it_cannot_rank_apart_and_exits_0(tmp_path):
    good = scored_run(tmp_path, "good", lambda d, i, r: 3 if i % 4 else 1, n_per_dim=4)
    rows = [
        {"id": "a", "dimension": "Safety", "subcomponent": "Mental harm", "prompt": "问题"}
        | {"response": "回答"}
    ]
    unscored = tmp_path / "unscored"
    assert run_cli("import", write_jsonl(tmp_path / "u.jsonl", rows), unscored).returncode == 0
    folder = tmp_path / "notes"
    folder.mkdir()
    out = tmp_path / "board.md"
    proc = run_cli("leaderboard", good, unscored, folder, "--no-published", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    said = " ".join(proc.stdout.split())
    assert "Not ranked:" in said and "has not been scored yet" in said
    assert "not a flames run directory" in said and "good" in said
    text = out.read_text("utf-8")
    assert "### Not ranked" in text and "has not been scored yet" in text
    # JSON on stdout holds the ranked runs only; the others are named on stderr.
    proc = run_cli("leaderboard", good, unscored, "--json")
    assert [e["run"] for e in json.loads(proc.stdout)] == ["good"]
    assert "not ranked" in proc.stderr and "unscored" in proc.stderr
    # Nothing at all to rank: the reason, with its exit code.
    proc = run_cli("leaderboard", unscored, folder)
    assert proc.returncode == 1 and "not been scored yet" in proc.stderr, proc.stderr
