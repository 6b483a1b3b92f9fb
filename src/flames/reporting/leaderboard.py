"""A ranked table over several runs, with the published Flames leaderboard beside it.

Runs are ranked in two groups: complete runs (every dimension scored) scored by the official
scorer, which compare with the published table, and the rest, ranked apart with the reason.
Intervals are computed exactly as in `flames report`. Within each group, every pair of runs
gets the paired test of `flames compare`'s overall row (on the prompts both scored), adjusted
over the pairs (Holm by default); each run's `ranks` are the places those tests allow it:
1 + the runs found better, to the group's size - the runs found worse.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from rich.console import Console

from flames._util.markdown import markdown_text
from flames._util.terminal import inline
from flames.analysis.compare import paired_by_dimension
from flames.analysis.multiplicity import Adjustment, adjust
from flames.analysis.results import Results, first_prompt_difference, load_results
from flames.data.published import DIMENSIONS, OFFICIAL_REPO, PUBLISHED
from flames.data.taxonomy import Dimension
from flames.reporting.comparison import method_name
from flames.reporting.console_table import Col, print_table
from flames.reporting.i18n import Lang, local_name, t
from flames.runs.records import ScorerManifest


class Entry(BaseModel):
    run: str
    model: str
    scorer: str
    scorer_kind: str
    n_scored: int
    overall_rate: float
    overall_ci: tuple[float | None, float | None]
    overall_score: float
    dimension_rates: dict[str, float]
    dataset_sha256: str
    flags: list[str]
    """Why the run does not compare with complete official-scorer runs; empty when it does."""
    ranks: tuple[int, int] = (1, 1)
    """The places in its group the paired tests allow: (best, worst); one place when they
    separate the run from every other."""
    rank_adjustment: Adjustment = Adjustment.holm
    """How the p-values of the pairs were adjusted."""


def scorer_flag(scorer: ScorerManifest) -> str | None:
    """Why a scorer is not the official Flames-scorer as published, or None when it is."""
    if scorer.kind != "official":
        return f"scorer {scorer.name} ({scorer.kind}), not the official scorer"
    if scorer.config.get("model") != OFFICIAL_REPO:
        return f"scorer model {scorer.config.get('model')}, not {OFFICIAL_REPO}"
    if scorer.config.get("truncation", "official") != "official":
        return f"scorer truncation {scorer.config['truncation']}, not the official one"
    return None


def leaderboard(
    run_dirs: list[Path],
    scorer_name: str | None = None,
    bootstrap_samples: int = 2000,
    seed: int = 0,
    adjustment: Adjustment | str = Adjustment.holm,
) -> list[Entry]:
    """One entry per run: complete official-scorer runs first, best overall harmless rate first
    within each group, with the places the paired tests allow each."""
    entries, loaded = [], {}
    for run_dir in run_dirs:
        results = load_results(run_dir, scorer_name)
        loaded[run_dir.name] = results
        m = results.metrics(bootstrap_samples=bootstrap_samples, seed=seed)
        missing = [d.value for d in Dimension if d.value not in m.dimensions]
        flags = [f"missing {', '.join(missing)}"] if missing else []
        if flag := scorer_flag(results.scorer):
            flags.append(flag)
        entries.append(
            Entry(
                run=run_dir.name,
                model=results.run.generator.model,
                scorer=results.scorer.name,
                scorer_kind=results.scorer.kind,
                n_scored=m.n_scored,
                overall_rate=m.overall_harmless_rate.value,
                overall_ci=(m.overall_harmless_rate.ci_low, m.overall_harmless_rate.ci_high),
                overall_score=m.overall_harmless_score.value,
                dimension_rates={d: g.harmless_rate.value for d, g in m.dimensions.items()},
                dataset_sha256=results.run.dataset.items_sha256,
                flags=flags,
            )
        )
    entries = sorted(entries, key=lambda e: (bool(e.flags), -e.overall_rate))
    for group in ([e for e in entries if not e.flags], [e for e in entries if e.flags]):
        _rank_ranges(group, loaded, bootstrap_samples, seed, adjustment)
    return entries


def _rank_ranges(
    group: list[Entry],
    results: dict[str, Results],
    bootstrap_samples: int,
    seed: int,
    adjustment: Adjustment | str,
) -> None:
    """Set each entry's ranks from the paired overall tests of every pair in the group.

    A pair whose runs share no prompt, or hold a shared id with different prompts, is not
    tested and so never separated."""
    pairs, p_values, signs = [], [], []
    rates = {e.run: results[e.run].item_rates() for e in group} if len(group) > 1 else {}
    for i, first in enumerate(group):
        for j in range(i + 1, len(group)):
            second = group[j].run
            tested = _overall_test(
                results[first.run],
                results[second],
                rates[first.run],
                rates[second],
                bootstrap_samples,
                seed,
            )
            if tested is not None:
                pairs.append((i, j))
                p_values.append(tested[0])
                signs.append(tested[1])
    better = {k: 0 for k in range(len(group))}  # how many runs each is found worse than
    worse = {k: 0 for k in range(len(group))}
    for (i, j), p, sign in zip(pairs, adjust(p_values, adjustment), signs, strict=True):
        if p < 0.05 and sign != 0:
            top, bottom = (i, j) if sign < 0 else (j, i)  # sign: of B - A, here j - i
            better[bottom] += 1
            worse[top] += 1
    for k, entry in enumerate(group):
        entry.ranks = (1 + better[k], len(group) - worse[k])
        entry.rank_adjustment = Adjustment(adjustment)


def ranks_note(group: list[Entry], lang: Lang | str = Lang.en) -> str:
    """What the Ranks column means, for a group of at least two runs."""
    pairs = len(group) * (len(group) - 1) // 2
    return t("ranks_note", lang, method=method_name(group[0].rank_adjustment, lang), pairs=pairs)


def _overall_test(
    a: Results,
    b: Results,
    rates_a: dict[str, tuple[Dimension, float]],
    rates_b: dict[str, tuple[Dimension, float]],
    bootstrap_samples: int,
    seed: int,
) -> tuple[float, int] | None:
    """(p-value, sign of B - A) of the paired overall test, or None when there is no pair."""
    if not rates_a.keys() & rates_b.keys():
        return None
    same_items = a.run.dataset.items_sha256 == b.run.dataset.items_sha256
    if not same_items and first_prompt_difference(a, b) is not None:
        return None
    _, overall = paired_by_dimension(rates_a, rates_b, max(bootstrap_samples, 100), seed)
    return overall.p_value, int(np.sign(overall.difference))


def ranks_text(e: Entry) -> str:
    """ "2" when the tests place the run alone, "1–3" when they cannot separate it further."""
    low, high = e.ranks
    return str(low) if low == high else f"{low}–{high}"


def _cells(rank: int, e: Entry, text: Callable[[str], str]) -> list[str]:
    """One row: #, ranks, run, model, scorer, overall rate, CI, overall score, dimensions...,
    N; names escaped by `text` for where the row is shown."""
    low, high = e.overall_ci
    ci = f"[{low:.1f}, {high:.1f}]" if low is not None and high is not None else ""
    rates = [
        f"{e.dimension_rates[d.value]:.2f}%" if d.value in e.dimension_rates else "–"
        for d in Dimension
    ]
    return [
        str(rank),
        ranks_text(e),
        text(e.run),
        text(e.model),
        text(e.scorer),
        f"{e.overall_rate:.2f}%",
        ci,
        f"{e.overall_score:.1f}",
        *rates,
        str(e.n_scored),
    ]


def _table(entries: list[Entry], why: bool, lang: Lang | str = Lang.en) -> list[str]:
    dims = [local_name(d.value, lang) for d in Dimension]
    if Lang(lang) is Lang.zh:
        head = "| # | 可能名次 | 运行 | 模型 | 评分器 | 总体无害率 | 95% 置信区间 | 总体无害分 | "
        head += " | ".join(dims) + " | N |" + (" 单独排名的原因 |" if why else "")
    else:
        head = "| # | Ranks | Run | Model | Scorer | Overall rate | 95% CI | Overall score | "
        head += " | ".join(dims) + " | N |" + (" Ranked apart because |" if why else "")
    lines = [head, "|" + "---|" * (len(dims) + 9 + why)]
    for rank, e in enumerate(entries, start=1):
        line = "| " + " | ".join(_cells(rank, e, markdown_text)) + " |"
        lines.append(line + (f" {markdown_text('; '.join(e.flags))} |" if why else ""))
    return lines


SHORT = {
    "Fairness": "Fair.",
    "Safety": "Safe.",
    "Morality": "Moral.",
    "Legality": "Legal.",
    "Data protection": "Data",
}
"""Dimension headers abbreviated for narrow consoles."""


def _dimension_cols(lang: Lang | str) -> list[Col]:
    english = Lang(lang) is Lang.en
    return [
        Col(local_name(d.value, lang), short=SHORT[d.value] if english else None) for d in Dimension
    ]


def print_leaderboard(
    entries: list[Entry], console: Console, published: bool = True, lang: Lang | str = Lang.en
) -> None:
    """Your runs (ranked apart ones separately), then the published leaderboard, as tables that
    fit the console: no number is cut at 80 columns."""
    cols = [
        Col("#"),
        Col(t("ranks", lang), short="≈"),
        Col(t("run", lang), text=True),
        Col(t("model", lang), text=True, drop=1),
        Col(t("scorer", lang), text=True, drop=3),
        Col(t("overall_short", lang)),
        Col(t("ci", lang), short=t("ci_short", lang), drop=4),
        Col(t("score", lang), drop=5),
        *_dimension_cols(lang),
        Col("N", drop=2),
    ]
    ranked = [e for e in entries if not e.flags]
    apart = [e for e in entries if e.flags]
    if ranked:
        rows = [_cells(rank, e, inline) for rank, e in enumerate(ranked, start=1)]
        print_table(console, cols, rows, title=t("your_runs", lang), lang=lang)
        if len(ranked) > 1:
            console.print(ranks_note(ranked, lang), highlight=False)
    else:
        console.print("No run is complete and scored by the official scorer.")
    if apart:
        rows = [_cells(rank, e, inline) for rank, e in enumerate(apart, start=1)]
        title = "Ranked apart: missing dimensions or another scorer"
        print_table(console, cols, rows, title=title, lang=lang)
        for rank, e in enumerate(apart, start=1):
            console.print(
                f"  {rank}. {inline(e.run)}: {inline('; '.join(e.flags))}", highlight=False
            )
        if len(apart) > 1:
            console.print(ranks_note(apart, lang), highlight=False)
    if len({e.dataset_sha256 for e in entries}) > 1:
        console.print(
            "[yellow]warning:[/] these runs used different prompt sets; ranks are not comparable."
        )
    if published:
        cols = [Col("#"), Col(t("model", lang), text=True), Col(t("overall_short", lang))]
        rows = [
            [str(rank), model, f"{overall:.2f}%", *(f"{r:.2f}%" for r, _ in rates)]
            for rank, (model, (overall, rates)) in enumerate(_published(), start=1)
        ]
        title = t("published", lang)
        print_table(console, [*cols, *_dimension_cols(lang)], rows, title=title, lang=lang)
        console.print(PUBLISHED_NOTE)


PUBLISHED_NOTE = (
    "Harmless rate as printed in the official repository's README (Dec 11, 2023): "
    "17 models, the official scorer, 1,001 prompts of the public set as it stood then."
)


def _published() -> list[tuple[str, tuple[float, list[tuple[float, float]]]]]:
    return sorted(PUBLISHED.items(), key=lambda kv: -kv[1][0])


def to_markdown(entries: list[Entry], published: bool = True, lang: Lang | str = Lang.en) -> str:
    ranked = [e for e in entries if not e.flags]
    apart = [e for e in entries if e.flags]
    lines = [f"## {t('your_runs', lang)}", ""]
    if ranked:
        lines += [
            "Complete runs scored by the official scorer (comparable with the published table).",
            "",
            *_table(ranked, why=False, lang=lang),
            *(["", ranks_note(ranked, lang)] if len(ranked) > 1 else []),
        ]
    else:
        lines.append("No run is complete and scored by the official scorer.")
    if apart:
        lines += [
            "",
            "### Ranked apart: missing dimensions or another scorer",
            "",
            "Not comparable with the runs above or with the published table.",
            "",
            *_table(apart, why=True, lang=lang),
            *(["", ranks_note(apart, lang)] if len(apart) > 1 else []),
        ]
    if len({e.dataset_sha256 for e in entries}) > 1:
        lines += [
            "",
            "**Warning:** these runs used different prompt sets; ranks are not comparable.",
        ]
    if published:
        lines += [
            "",
            f"## {t('published', lang)}",
            "",
            PUBLISHED_NOTE,
            "",
            f"| # | {t('model', lang)} | {t('overall_short', lang)} | "
            + " | ".join(local_name(d, lang) for d in DIMENSIONS)
            + " |",
            "|" + "---|" * (len(DIMENSIONS) + 3),
        ]
        for rank, (model, (overall, rows)) in enumerate(_published(), start=1):
            rates = " | ".join(f"{r:.2f}%" for r, _ in rows)
            lines.append(f"| {rank} | {model} | {overall:.2f}% | {rates} |")
    return "\n".join(lines) + "\n"
