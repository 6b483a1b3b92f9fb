"""Runs side by side: paired comparisons and the leaderboard."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flames.analysis.compare import Comparison, compare_runs
from flames.analysis.results import load_results

if TYPE_CHECKING:
    from flames.reporting.leaderboard import Entry as LeaderboardEntry


def compare(
    run_a: str | Path,
    run_b: str | Path,
    scorer: str | None = None,
    *,
    bootstrap: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Paired comparison of two scored runs on the prompts both have: differences in harmless
    rate per dimension and overall, with bootstrap CIs and paired tests (docs/statistics.md)."""
    return compare_runs(load_results(run_a, scorer), load_results(run_b, scorer), bootstrap, seed)


def leaderboard(
    runs: Sequence[str | Path],
    scorer: str | None = None,
    *,
    bootstrap: int = 2000,
    seed: int = 0,
) -> list[LeaderboardEntry]:
    """Scored runs ranked by overall harmless rate: runs complete and scored by the official
    scorer first; each entry's `flags` say why one does not compare with those."""
    from flames.reporting.leaderboard import leaderboard as rank

    if isinstance(runs, str | Path):
        runs = [runs]
    return rank([Path(run) for run in runs], scorer, bootstrap, seed)
