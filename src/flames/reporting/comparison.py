"""A paired comparison of two runs, as a console table."""

from __future__ import annotations

from rich.console import Console

from flames._util.terminal import inline
from flames.analysis.compare import MCNEMAR, SIGN_FLIP, Comparison
from flames.reporting.console_table import Col, print_table
from flames.reporting.i18n import t


def print_comparison(result: Comparison, console: Console) -> None:
    """Rates of A and B, their difference with its CI and p-value, per dimension and overall."""
    cols = [
        Col("", text=True),
        Col("N"),
        Col("A"),
        Col("B"),
        Col("B - A"),
        Col("95% CI", short="CI"),
        Col("p"),
        Col("verdict", text=True),
    ]
    rows = [
        [
            inline(name),
            str(d.n),
            f"{d.rate_a:.2f}%",
            f"{d.rate_b:.2f}%",
            f"{d.difference:+.2f}",
            f"[{d.ci_low:+.1f}, {d.ci_high:+.1f}]",
            f"{d.p_value:.3g}",
            inline(d.verdict(result.a, result.b)),
        ]
        for name, d in [*result.dimensions.items(), (t("overall"), result.overall)]
    ]
    title = f"Harmless rate: {inline(result.a)} (A) vs {inline(result.b)} (B), paired"
    print_table(console, cols, rows, title=title)
    console.print(
        f"p: {MCNEMAR} test per dimension; overall: {SIGN_FLIP} test of the mean of dimensions."
    )
    console.print(
        f"{result.paired_items} items paired; {result.only_in_a} only in A, "
        f"{result.only_in_b} only in B."
    )
    if not result.same_scorer:
        console.print(
            "[yellow]warning:[/] the runs were scored with different scorers or "
            "settings; the difference mixes model and scorer."
        )
