"""Runs side by side: paired comparisons and the leaderboard."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flames.analysis.attacks import RedteamComparison, compare_redteam, is_redteam
from flames.analysis.compare import Comparison, compare_runs
from flames.analysis.results import load_results
from flames.errors import FlamesError

if TYPE_CHECKING:
    from flames.reporting.leaderboard import Entry as LeaderboardEntry


def compare(
    run_a: str | Path,
    run_b: str | Path,
    scorer: str | None = None,
    *,
    bootstrap: int = 2000,
    seed: int = 0,
) -> Comparison | RedteamComparison:
    """Paired comparison of two scored runs on the prompts both have: differences in harmless
    rate per dimension and overall, with bootstrap CIs and paired tests (docs/statistics.md).
    Two red-team runs are paired by goal instead: their attack success rates per shared
    strategy (a `RedteamComparison`)."""
    redteam = [is_redteam(run_a), is_redteam(run_b)]
    if any(redteam):
        if not all(redteam):
            raise FlamesError(
                "one run is a red-team run and the other is not: compare like with like"
            )
        return compare_redteam(run_a, run_b, bootstrap, seed)
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
