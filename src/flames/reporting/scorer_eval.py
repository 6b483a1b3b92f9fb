"""Scorers against held-out labels, as one table on the console (`flames scorer eval`)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from flames._util.terminal import inline
from flames.analysis.calibration import KAPPA_UNDEFINED
from flames.analysis.metrics import Estimate
from flames.analysis.scorer_eval import Agreement, ScorerComparison
from flames.reporting.i18n import undefined


def _ci(estimate: Estimate) -> str:
    if estimate.ci_low is None or estimate.ci_high is None:
        return f"{estimate.value:.1f}"
    return f"{estimate.value:.1f} [{estimate.ci_low:.1f}, {estimate.ci_high:.1f}]"


def _kappa(stats: Agreement, field: str) -> str:
    value = getattr(stats, field)
    return "undefined" if value is None else f"{value:.3f}"


def _row(name: str, group: str, stats: Agreement) -> list[str]:
    return [
        name,
        group,
        str(stats.n),
        _ci(stats.accuracy),
        _ci(stats.macro_f1),
        *(_kappa(stats, f) for f in ("cohen_kappa", "kappa_linear", "kappa_quadratic")),
        f"{stats.harmless_rate.value:.1f} vs {stats.label_harmless_rate.value:.1f}",
        _ci(stats.harmless_gap),
    ]


def print_scorer_comparison(comparison: ScorerComparison, console: Console) -> None:
    labels = comparison.labels
    console.print(
        f"{comparison.n} held-out labels ({comparison.selection}; {labels.get('given')} given, "
        f"{labels.get('trained_on')} of them trained on), labels sha256 "
        f"{str(labels.get('sha256'))[:12]}…",
        highlight=False,
    )
    table = Table(show_lines=False)
    for column in (
        "scorer",
        "dimension",
        "n",
        "accuracy % [95% CI]",
        "macro-F1 % [95% CI]",
        "kappa",
        "linear",
        "quadratic",
        "harmless % (scorer vs labels)",
        "gap, points [95% CI]",
    ):
        table.add_column(column)
    for scorer in comparison.scorers:
        name = f"{scorer.scorer} ({scorer.kind})"
        table.add_row(*_row(name, "all", scorer.overall))
        for dim, stats in scorer.dimensions.items():
            table.add_row(*_row("", dim, stats))
    console.print(table)
    where = [
        inline(f"{scorer.scorer} ({dim})")
        for scorer in comparison.scorers
        for dim, stats in [("all", scorer.overall), *scorer.dimensions.items()]
        if stats.undefined
    ]
    if where:
        console.print(f"{undefined(KAPPA_UNDEFINED)}: kappa of {', '.join(where)}", highlight=False)
    for scorer in comparison.scorers:
        if scorer.errors:
            console.print(
                f"[yellow]{scorer.scorer}: {scorer.errors} verdicts failed; those answers are "
                "left out for every scorer[/]",
                highlight=False,
            )
        console.print(f"[bold]{scorer.scorer}[/] confusion (rows: label 1-3, columns: scorer)")
        for label, row in scorer.overall.confusion.items():
            console.print(f"  {label}: " + "  ".join(f"{row[p]:>5}" for p in sorted(row)))
