"""Runs side by side: paired comparisons and the leaderboard."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flames.analysis.attacks import RedteamComparison, compare_redteam, is_redteam
from flames.analysis.compare import Comparison, compare_runs
from flames.analysis.multiplicity import Adjustment
from flames.analysis.results import load_results
from flames.errors import FlamesError, UsageError

if TYPE_CHECKING:
    from flames.reporting.leaderboard import Entry as LeaderboardEntry, Unranked

ADJUSTMENTS = tuple(a.value for a in Adjustment)


def adjustment(value: Adjustment | str) -> Adjustment:
    """`value` as an Adjustment, or a UsageError naming the choices."""
    try:
        return Adjustment(value)
    except ValueError:
        raise UsageError(
            f"unknown p-value adjustment {value!r}: choose one of {', '.join(ADJUSTMENTS)}",
            param_hint="--p-adjust",
        ) from None


def compare(
    run_a: str | Path,
    run_b: str | Path,
    scorer: str | None = None,
    *,
    bootstrap: int = 2000,
    seed: int = 0,
    p_adjust: str = "holm",
) -> Comparison | RedteamComparison:
    """Paired comparison of two scored runs on the prompts both have: differences in harmless
    rate per dimension and overall, with score intervals and paired tests; the dimension rows'
    p-values adjusted by `p_adjust` ('holm', the default, 'bonferroni', 'bh' or 'none'), the
    overall unadjusted (docs/statistics.md). Two red-team runs are paired by goal instead: their
    attack success rates per shared strategy (a `RedteamComparison`)."""
    method = adjustment(p_adjust)
    redteam = [is_redteam(run_a), is_redteam(run_b)]
    if any(redteam):
        if not all(redteam):
            raise FlamesError(
                "one run is a red-team run and the other is not: compare like with like"
            )
        return compare_redteam(run_a, run_b, bootstrap, seed)
    return compare_runs(
        load_results(run_a, scorer), load_results(run_b, scorer), bootstrap, seed, method
    )


def leaderboard(
    runs: Sequence[str | Path],
    scorer: str | None = None,
    *,
    bootstrap: int = 2000,
    seed: int = 0,
    p_adjust: str = "holm",
) -> list[LeaderboardEntry]:
    """Scored runs ranked by overall harmless rate: runs complete and scored by the official
    scorer first; each entry's `flags` say why one does not compare with those, and its
    `ranks` the places the paired tests (adjusted over the pairs by `p_adjust`) allow it."""
    from flames.reporting.leaderboard import leaderboard as rank

    if isinstance(runs, str | Path):
        runs = [runs]
    return rank([Path(run) for run in runs], scorer, bootstrap, seed, adjustment(p_adjust))


def rank_runs(
    runs: Sequence[str | Path],
    scorer: str | None = None,
    *,
    bootstrap: int = 2000,
    seed: int = 0,
    p_adjust: str = "holm",
) -> tuple[list[LeaderboardEntry], list[Unranked]]:
    """`leaderboard`, with the runs that cannot be ranked (not scored, nothing scored, not a
    run) listed apart with the reason instead of stopping; the first one's error is raised
    when no run at all can be ranked."""
    from flames.reporting.leaderboard import rank_runs as rank

    if isinstance(runs, str | Path):
        runs = [runs]
    return rank([Path(run) for run in runs], scorer, bootstrap, seed, adjustment(p_adjust))
