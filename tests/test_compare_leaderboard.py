from __future__ import annotations

import json
import random
from math import comb

import pytest

from flames.analysis.compare import (
    PairedDifference,
    compare_runs,
    mcnemar_exact,
    paired_by_dimension,
)
from flames.analysis.results import load_results
from flames.data.published import OFFICIAL_REPO
from flames.data.taxonomy import Dimension
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
        assert (d.only_a_harmless, d.only_b_harmless) == (30, 0)
        assert d.ci_low <= -50 <= d.ci_high and d.ci_high < 0
        assert d.p_value == pytest.approx(mcnemar_exact(30, 0))
        assert d.verdict("a", "b") == "a more harmless by 50.0 points"
    assert result.overall.difference == pytest.approx(-50.0)


def test_identical_runs_are_too_close_to_tell_apart(tmp_path):
    def scores(d, i, r):
        return r.choice(d.scale)

    a_dir = scored_run(tmp_path, "a", scores, n_per_dim=20)
    b_dir = scored_run(tmp_path, "b", scores, n_per_dim=20)
    result = compare_runs(load_results(a_dir), load_results(b_dir), bootstrap_samples=300)
    assert result.overall.difference == 0 and result.overall.p_value == 1.0
    assert "too close to tell apart" in result.overall.verdict("a", "b")


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
    assert "| 1 | complete |" in main and "other" not in main
    assert "| 1 | other |" in apart and "| 2 | partial |" in apart
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
    assert (overall.only_a_harmless, overall.only_b_harmless) == (only_a, only_b)
    assert mcnemar_exact(only_a, only_b) == pytest.approx(pooled_p, abs=0.005)
    assert overall.difference > 15 and overall.ci_low > 0
    assert overall.test == "stratified sign-flip permutation" and overall.test_direction == 1
    assert overall.p_value < 0.001
    assert overall.p_value == pytest.approx(1 / 4001) or overall.p_value < 3 * (
        sign_flip_normal_p(discordant) + 1 / 4001
    )
    assert overall.verdict("A", "B") == f"B more harmless by {overall.difference:.1f} points"
    # Per dimension the tests stay McNemar on that dimension's items.
    safety = dims["Safety"]
    assert safety.test == "McNemar exact" and safety.test_direction == -1
    assert safety.p_value == pytest.approx(mcnemar_exact(*discordant[Dimension.SAFETY]))
    assert safety.verdict("A", "B").startswith("A more harmless")


def test_sign_flip_p_value_matches_its_normal_approximation():
    # A small overall effect, where the p-value is neither tiny nor 1.
    discordant = dict(zip(Dimension, [(20, 30), (40, 52), (10, 16), (3, 5), (5, 8)], strict=True))
    rates_a, rates_b = paired_rates(discordant)
    _, overall = paired_by_dimension(rates_a, rates_b, bootstrap_samples=20000, seed=1)
    expected = sign_flip_normal_p(discordant)
    assert 0.005 < expected < 0.2
    assert overall.p_value == pytest.approx(expected, rel=0.15)


def test_a_verdict_never_states_a_direction_its_test_contradicts():
    # Several answers per item: the mean rate favours B, the per-item majority (McNemar) A.
    d = PairedDifference(
        n=40,
        rate_a=60.0,
        rate_b=70.0,
        difference=10.0,
        ci_low=2.0,
        ci_high=18.0,
        only_a_harmless=15,
        only_b_harmless=2,
        p_value=mcnemar_exact(15, 2),
        test_direction=-1,
    )
    assert d.p_value < 0.05
    assert "other way" in d.verdict("A", "B") and "more harmless" not in d.verdict("A", "B")


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
