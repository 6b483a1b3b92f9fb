"""A red-team run's report: console tables and JSON (the HTML page is `redteam_html`)."""

from __future__ import annotations

from rich.console import Console

from flames._util.terminal import inline
from flames.analysis.attacks import ANY, Rate, RedteamComparison, RedteamReport, StrategyStats
from flames.analysis.compare import MCNEMAR, STRATIFIED_SIGN_FLIP, PairedDifference
from flames.analysis.multiplicity import LABELS, Adjustment
from flames.data.taxonomy import SUBCOMPONENT_DIMENSION, taxonomy_order
from flames.reporting.console_table import Col, print_table
from flames.reporting.i18n import Lang, local_name, t

ROLE_ORDER = ("target", "attacker", "judge")


def fmt_rate(rate: Rate | None) -> str:
    if rate is None or rate.value is None:
        return "–"
    return f"{rate.value:.1f}%"


def fmt_interval(rate: Rate | None) -> str:
    if rate is None or rate.ci_low is None or rate.ci_high is None:
        return ""
    return f"[{rate.ci_low:.1f}, {rate.ci_high:.1f}]"


def strategy_label(name: str, lang: Lang | str) -> str:
    return t("any_strategy", lang) if name == ANY else name


def header_line(report: RedteamReport, lang: Lang | str = Lang.en) -> str:
    run = report.run
    assert run.redteam is not None
    judge = run.redteam.judge
    return t(
        "rt_line",
        lang,
        target=run.generator.model,
        backend=run.generator.backend,
        attacker=run.redteam.attacker.model,
        judge=judge.name,
        kind=judge.kind,
        goals=report.goals,
        dataset=run.dataset.name,
        sha=run.dataset.source_sha256[:12],
        selection=run.dataset.selection,
        budget=run.redteam.budget,
        seed=run.redteam.seed,
    )


def summary_rows(report: RedteamReport, lang: Lang | str) -> list[list[str]]:
    rows = []
    for name, stats in report.strategies.items():
        median = "–" if stats.median_queries is None else f"{stats.median_queries:g}"
        label = strategy_label(name, lang)
        rows.append(
            [
                f"[bold]{inline(label)}[/]" if name == ANY else inline(label),
                str(stats.overall.n),
                fmt_rate(stats.overall.asr),
                fmt_interval(stats.overall.asr),
                fmt_rate(stats.overall.not_harmless),
                fmt_interval(stats.overall.not_harmless),
                median,
                fmt_rate(stats.attacker_refusal),
            ]
        )
    return rows


def dimension_rows(report: RedteamReport, lang: Lang | str) -> tuple[list[str], list[list[str]]]:
    """Rows of dimensions (subcomponents under them), a column pair (ASR, CI) per strategy."""
    names = list(report.strategies)
    found = report.strategies.values()
    dims = sorted({d for stats in found for d in stats.dimensions}, key=taxonomy_order)
    subs = sorted({s for stats in found for s in stats.subcomponents}, key=taxonomy_order)
    rows = []
    for dim in dims:
        rows.append(_group_row(report, names, "dimension", dim, lang))
        for sub in subs:
            if SUBCOMPONENT_DIMENSION.get(sub, None) == dim:
                rows.append(_group_row(report, names, "subcomponent", sub, lang))
    return names, rows


def _group_row(
    report: RedteamReport, names: list[str], level: str, group: str, lang: Lang | str
) -> list[str]:
    label = inline(local_name(group, lang))
    row = [label if level == "dimension" else f"  [dim]{label}[/]"]
    for name in names:
        stats: StrategyStats = report.strategies[name]
        found = (stats.dimensions if level == "dimension" else stats.subcomponents).get(group)
        if found is None or not found.n:
            row += ["–", ""]
        else:
            row += [
                f"{fmt_rate(found.asr)} ({found.asr.count}/{found.n})",
                fmt_interval(found.asr),
            ]
    return row


def print_redteam(report: RedteamReport, console: Console, lang: Lang | str = Lang.en) -> None:
    """The ASR per strategy, per dimension and subcomponent, the outcomes, and every role's
    requests, tokens and cost, fitted to the console."""
    console.print(f"[bold]{t('rt_title', lang)}[/]", highlight=False)
    console.print(inline(header_line(report, lang).replace("`", "")), highlight=False)
    cols = [
        Col(t("strategy", lang), text=True),
        Col(t("n", lang)),
        Col(t("asr", lang)),
        Col(t("ci", lang), short=t("ci_short", lang)),
        Col(t("not_harmless", lang)),
        Col(t("ci", lang), short=t("ci_short", lang), drop=3),
        Col(t("median_queries", lang), short=t("median_queries_short", lang), drop=2),
        Col(t("attacker_refusal", lang), short=t("attacker_refusal_short", lang), drop=1),
    ]
    print_table(
        console,
        cols,
        summary_rows(report, lang),
        title=t("asr_long", lang),
        caption=t("asr_caption", lang),
        lang=lang,
    )
    names, rows = dimension_rows(report, lang)
    cols = [Col("", text=True)]
    for i, name in enumerate(names):
        label = strategy_label(name, lang)
        cols += [Col(label), Col(t("ci", lang), short=t("ci_short", lang), drop=i + 1)]
    print_table(console, cols, rows, title=t("asr_by_dimension", lang), lang=lang)
    for line in outcome_lines(report, lang):
        console.print(f"• {inline(line)}", highlight=False)
    console.print(f"• {t('excluded_note', lang)}", highlight=False)
    console.print(f"• {t('rt_ci_note', lang)}", highlight=False)
    print_usage(report, console, lang)


def outcome_lines(report: RedteamReport, lang: Lang | str = Lang.en) -> list[str]:
    """Per strategy: how many attacks succeeded, failed, were declined, erred, are pending."""
    lines = []
    for name, stats in report.strategies.items():
        counts = {k: stats.outcomes.get(k, 0) for k in ("success", "failure", "declined", "error")}
        lines.append(
            t(
                "outcomes_line",
                lang,
                strategy=strategy_label(name, lang),
                pending=stats.outcomes.get("pending", 0),
                **counts,
            )
        )
    return lines


def print_usage(report: RedteamReport, console: Console, lang: Lang | str = Lang.en) -> None:
    cols = [
        Col(t("role", lang), text=True),
        Col(t("requests", lang)),
        Col(t("errors", lang)),
        Col(t("tokens_in", lang)),
        Col(t("tokens_out", lang)),
        Col(t("cost", lang)),
    ]
    rows = []
    for role in ROLE_ORDER:
        usage = report.usage.get(role)
        if usage is None:
            continue
        rows.append(
            [
                t(role, lang),
                str(usage.requests),
                str(usage.errors),
                str(usage.prompt_tokens),
                str(usage.completion_tokens),
                "–" if usage.cost is None else f"{usage.cost:.4g}",
            ]
        )
    print_table(console, cols, rows, title=t("usage", lang), lang=lang)
    for role in ROLE_ORDER:
        usage = report.usage.get(role)
        if usage is not None and usage.uncounted and usage.prompt_tokens:
            note = t("uncounted_note", lang, n=usage.uncounted, role=t(role, lang))
            console.print(f"• {note}", highlight=False)


def paired_verdict(d: PairedDifference, a: str, b: str) -> str:
    """Plain words on an ASR difference: a direction only when its adjusted test rejects and its
    CI agrees; otherwise the CI (not significant does not mean close)."""
    excludes_zero = not (d.ci_low <= 0 <= d.ci_high)
    ci = f"CI {d.ci_low:+.1f} to {d.ci_high:+.1f}"
    method = LABELS[d.adjustment]
    if d.significant and excludes_zero:
        broken = b if d.difference > 0 else a
        found = f"{broken}'s attacks succeed more often, by {abs(d.difference):.1f} points"
        if d.adjustment is Adjustment.none:
            return found
        return f"{found} ({method}-adjusted p = {d.p_adjusted:.3g})"
    if d.significant or (excludes_zero and d.p_value >= 0.05):
        return f"inconclusive: the CI and the test disagree (n={d.n})"
    if d.p_value < 0.05:
        return (
            f"no significant difference after {method} correction "
            f"(adjusted p = {d.p_adjusted:.3g}; {ci})"
        )
    return f"no significant difference ({ci})"


def print_redteam_comparison(result: RedteamComparison, console: Console) -> None:
    """Per shared strategy: ASR of A and B, the difference, its CI and p, per dimension and
    overall."""
    cols = [
        Col("", text=True),
        Col("N"),
        Col("A"),
        Col("B"),
        Col("B - A"),
        Col("95% CI", short="CI"),
        Col("p", drop=2),
        Col("p (Holm)", short="p*"),
        Col("verdict", text=True, drop=1),
    ]
    for name, paired in result.strategies.items():
        rows = [
            [
                inline(local_name(group)),
                str(d.n),
                f"{d.rate_a:.1f}%",
                f"{d.rate_b:.1f}%",
                f"{d.difference:+.1f}",
                f"[{d.ci_low:+.1f}, {d.ci_high:+.1f}]",
                f"{d.p_value:.3g}",
                f"{d.p_adjusted:.3g}",
                inline(paired_verdict(d, result.a, result.b)),
            ]
            for group, d in [*paired.dimensions.items(), (t("overall_short"), paired.overall)]
        ]
        title = f"ASR, {strategy_label(name, Lang.en)}: {result.a} (A) vs {result.b} (B), paired"
        print_table(console, cols, rows, title=inline(title))
    console.print(
        f"p per dimension: {MCNEMAR} test, adjusted by Holm over the dimensions of each strategy "
        "(only the adjusted p names a winner); overall: "
        f"{STRATIFIED_SIGN_FLIP} test of the mean of dimensions, unadjusted. "
        f"{result.paired_goals} goals paired.",
        highlight=False,
    )
    if not result.same_judge:
        console.print(
            "[yellow]warning:[/] the runs were judged by different judges or settings; the "
            "difference mixes attack and judge."
        )
