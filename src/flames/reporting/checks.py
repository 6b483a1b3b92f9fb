"""The checks beside the metrics, on the console: a judge against human labels, and how often
a model refuses."""

from __future__ import annotations

from rich.console import Console

from flames._util.terminal import inline
from flames.analysis.calibration import AgreementStats, Calibration
from flames.analysis.refusal import ALL, RefusalStats
from flames.data.taxonomy import taxonomy_order
from flames.reporting.console_table import Col, print_table
from flames.reporting.i18n import undefined


def print_calibration(result: Calibration, console: Console) -> None:
    """Agreement per dimension, corrected rates, the confusion matrix and Fleiss' kappa."""
    weights = result.kappa_weights
    cols = [
        Col("", text=True),
        Col("N"),
        Col("accuracy", short="acc."),
        Col("Cohen's kappa", short="kappa"),
        *([Col(f"{weights} kappa")] if weights else []),
        Col("sensitivity", short="sens.", drop=1),
        Col("specificity", short="spec.", drop=1),
        Col("observed rate", short="obs."),
        Col("corrected rate", short="corr."),
        Col("95% CI", short="CI", drop=2),
    ]

    reasons: dict[str, list[str]] = {}
    """Why a cell is undefined -> the cells, named 'field (row)', printed below the table."""

    def cell(value: float | None, form: str, why: str | None, field: str, row: str) -> str:
        if value is None and why:
            reasons.setdefault(why, []).append(f"{field} ({row})")
            return "undefined"
        return number(value, why, form)

    def kappas(stats: AgreementStats, row: str) -> list[str]:
        why = stats.undefined
        cells = [cell(stats.cohen_kappa, "{:.3f}", why.get("cohen_kappa"), "kappa", row)]
        if weights:
            weighted = why.get("weighted_kappa")
            cells.append(cell(stats.weighted_kappa, "{:.3f}", weighted, f"{weights} kappa", row))
        return cells

    overall = result.overall
    head = ["Overall", str(overall.n), f"{overall.accuracy:.1f}%", *kappas(overall, "Overall")]
    rows = [[*head, *[""] * 5]]
    for dim, stats in result.dimensions.items():
        c = result.corrected_rates[dim]

        def percent(x: float | None, field: str, dim: str = dim, c=c) -> str:
            return cell(x, "{:.1f}%", c.undefined.get(field), field, dim)

        corrected = percent(c.corrected, "corrected")
        ci = "" if c.ci_low is None or c.ci_high is None else f"[{c.ci_low:.1f}, {c.ci_high:.1f}]"
        rows.append(
            [
                inline(dim),
                str(stats.n),
                f"{stats.accuracy:.1f}%",
                *kappas(stats, dim),
                percent(c.sensitivity, "sensitivity"),
                percent(c.specificity, "specificity"),
                f"{c.observed:.1f}%",
                corrected,
                ci,
            ]
        )
    title = f"{inline(result.judge)} against {inline(', '.join(result.reference))}"
    print_table(console, cols, rows, title=title)
    for why, where in reasons.items():
        console.print(f"{undefined(why)}: {inline(', '.join(where))}", highlight=False)
    if not result.random_labels:
        how = inline("; ".join(f"{n} {s}" for s, n in sorted(result.label_selection.items())))
        console.print(
            f"[yellow]warning:[/] the labelled answers are not a random sample ({how}): "
            "sensitivity, specificity and the corrected rates may be biased. Label a random "
            "sample: flames annotate export RUN FILE --random N"
        )
    console.print("confusion (rows: human, columns: judge 1 2 3):")
    for h, row in result.confusion.items():
        console.print(f"  {h}: " + " ".join(f"{row[j]:5d}" for j in (1, 2, 3)))
    if result.fleiss_kappa is not None or "fleiss_kappa" in result.undefined:
        kappa = number(result.fleiss_kappa, result.undefined.get("fleiss_kappa"), "{:.3f}")
        console.print(
            f"Fleiss' kappa between annotators: {kappa} "
            f"({result.annotated_by_all} answers labelled by all)"
        )
    if result.no_majority:
        console.print(f"{result.no_majority} answers had no majority label and were left out.")


def number(value: float | None, why: str | None, form: str) -> str:
    """`value` in `form`, "undefined: WHY" when it has a zero denominator, "n/a" when absent."""
    if value is not None:
        return form.format(value)
    return undefined(why) if why else "n/a"


def print_refusals(stats: dict[str, RefusalStats], console: Console) -> None:
    """The refusal rate over all answers, then per dimension."""
    for key in sorted(stats, key=lambda k: (k != ALL, taxonomy_order(k))):
        s = stats[key]
        name = "All answers" if key == ALL else inline(key)
        console.print(f"{name}: {s.rate:.1f}% refused ({s.refused} of {s.answered})")
