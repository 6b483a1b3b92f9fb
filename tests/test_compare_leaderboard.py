from __future__ import annotations

import json
import random

import pytest

from flames.compare import compare_runs, mcnemar_exact
from flames.leaderboard import leaderboard, to_markdown
from flames.results import load_results
from flames.taxonomy import Dimension

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
    proc = run_cli("leaderboard", good, bad, "--out", tmp_path / "lb")
    assert proc.returncode == 0, proc.stderr
    assert "good" in (tmp_path / "lb" / "leaderboard.md").read_text()
