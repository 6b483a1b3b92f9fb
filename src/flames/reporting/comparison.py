"""A paired comparison of two runs, as a console table, and the words of its verdicts."""

from __future__ import annotations

from rich.console import Console

from flames._util.terminal import inline
from flames.analysis.compare import (
    MCNEMAR,
    SIGN_FLIP,
    STRATIFIED_SIGN_FLIP,
    Comparison,
    PairedDifference as Difference,
)
from flames.analysis.multiplicity import LABELS, Adjustment
from flames.reporting.console_table import Col, print_table
from flames.reporting.i18n import Lang, local_name, t


def verdict(d: Difference, a: str, b: str, lang: Lang | str = Lang.en) -> str:
    """Plain words: a winner only when the adjusted test says so and the CI agrees; otherwise
    the CI, never "too close": not significant does not mean close. A CI and a test that
    disagree are said to, unless the adjustment has settled the row anyway."""
    excludes_zero = not (d.ci_low <= 0 <= d.ci_high)
    ci = {"low": d.ci_low, "high": d.ci_high}
    method = method_name(d.adjustment, lang)
    if d.significant:
        if not excludes_zero:
            return t("verdict_disagree", lang, n=d.n)
        better, points = (b if d.difference > 0 else a), abs(d.difference)
        if d.adjustment is Adjustment.none:
            return t("verdict_better", lang, better=better, points=points)
        return t(
            "verdict_better_adjusted",
            lang,
            better=better,
            points=points,
            method=method,
            p=d.p_adjusted,
        )
    if d.p_value < 0.05:  # significant alone, not once adjusted
        return t("verdict_not_after", lang, method=method, p=d.p_adjusted, **ci)
    if excludes_zero:
        return t("verdict_disagree", lang, n=d.n)
    return t("verdict_none", lang, **ci)


def method_name(adjustment: Adjustment, lang: Lang | str = Lang.en) -> str:
    """Holm, Bonferroni, Benjamini-Hochberg (names, the same in both languages), or 'none'."""
    return t("no_adjustment", lang) if adjustment is Adjustment.none else LABELS[adjustment]


def paired_test_name(test: str, lang: Lang | str = Lang.en) -> str:
    """The name of a paired test in `lang`."""
    keys = {MCNEMAR: "test_mcnemar", SIGN_FLIP: "test_sign_flip"}
    keys[STRATIFIED_SIGN_FLIP] = "test_stratified"
    return t(keys[test], lang) if test in keys else test


def print_comparison(result: Comparison, console: Console, lang: Lang | str = Lang.en) -> None:
    """Rates of A and B, their difference with its CI, raw and adjusted p-values and the
    verdict, per dimension and overall."""
    adjusted = method_name(result.adjustment, lang)
    cols = [
        Col("", text=True),
        Col("N", drop=2),
        Col("A", drop=3),
        Col("B", drop=3),
        Col("B - A"),
        Col(t("ci", lang), short=t("ci_short", lang)),
        Col("p", drop=4, name=t("raw_p", lang)),
        Col(t("adjusted_p", lang, method=adjusted), short="p*"),
        Col(t("verdict", lang), text=True),
    ]
    rows = [
        [
            inline(local_name(name, lang)),
            str(d.n),
            f"{d.rate_a:.2f}%",
            f"{d.rate_b:.2f}%",
            f"{d.difference:+.2f}",
            f"[{d.ci_low:+.1f}, {d.ci_high:+.1f}]",
            f"{d.p_value:.3g}",
            f"{d.p_adjusted:.3g}",
            inline(verdict(d, result.a, result.b, lang)),
        ]
        for name, d in [*result.dimensions.items(), (t("overall", lang), result.overall)]
    ]
    title = t("comparison_title", lang, a=inline(result.a), b=inline(result.b))
    print_table(console, cols, rows, title=title, lang=lang)
    tests = sorted({paired_test_name(d.test, lang) for d in result.dimensions.values()})
    console.print(
        t(
            "comparison_note",
            lang,
            tests=", ".join(tests),
            overall=paired_test_name(result.overall.test, lang),
            method=adjusted,
        ),
        highlight=False,
    )
    console.print(
        t("paired_counts", lang, n=result.paired_items, a=result.only_in_a, b=result.only_in_b),
        highlight=False,
    )
    if not result.same_scorer:
        console.print(t("different_scorers", lang))
