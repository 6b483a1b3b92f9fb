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
from pydantic import BaseModel, PrivateAttr
from rich.console import Console

from flames._util.markdown import markdown_text
from flames._util.terminal import inline
from flames.analysis.compare import paired_by_dimension
from flames.analysis.multiplicity import Adjustment, adjust
from flames.analysis.results import Results, first_prompt_difference, load_results
from flames.data.published import DIMENSIONS, OFFICIAL_REPO, PUBLISHED
from flames.data.taxonomy import Dimension
from flames.errors import DataError, FlamesError, NothingScored
from flames.reporting.comparison import method_name
from flames.reporting.console_table import Col, print_table
from flames.reporting.i18n import Lang, local_name, t
from flames.runs.records import ScorerManifest

FLAGS: dict[str, tuple[str, str]] = {
    "missing": ("missing {dims}", "缺少{dims}"),
    "scorer": (
        "scorer {name} ({kind}), not the official scorer",
        "评分器 {name}（{kind}）不是官方评分器",
    ),
    "scorer_model": ("scorer model {model}, not {official}", "评分器模型 {model} 不是 {official}"),
    "truncation": (
        "scorer truncation {truncation}, not the official one",
        "评分器截断方式 {truncation} 不是官方的",
    ),
}
"""Why a run is ranked apart, in English (the entry's `flags`, also in JSON) and Chinese."""

Flag = tuple[str, dict[str, str]]


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
    _reasons: list[Flag] = PrivateAttr(default_factory=list)

    def flag_text(self, lang: Lang | str = Lang.en) -> str:
        """The flags in `lang`, joined."""
        if Lang(lang) is Lang.en or len(self._reasons) != len(self.flags):
            return "; ".join(self.flags)
        return "；".join(_flag(key, values, lang) for key, values in self._reasons)


class Unranked(BaseModel):
    """A run given to the leaderboard that cannot be ranked, and why."""

    run: str
    reason: str
    kind: str = "other"
    """not_a_run, not_scored, nothing_scored, damaged or other: what `text` translates."""

    def text(self, lang: Lang | str = Lang.en) -> str:
        """The reason in `lang` (in Chinese, a reason of no known kind stays as it is)."""
        if Lang(lang) is Lang.zh and self.kind in UNRANKED_ZH:
            return UNRANKED_ZH[self.kind]
        return self.reason


UNRANKED_ZH = {
    "not_a_run": "不是 flames 运行目录（没有 run.db）",
    "not_scored": "尚未评分（`flames score`）",
    "nothing_scored": "没有任何回答得到评分，无可排名（修正原因后重新运行）",
    "damaged": "run.db 已损坏，flames 无法读取",
}


def _unranked_kind(run_dir: Path, exc: FlamesError) -> str:
    if isinstance(exc, NothingScored):
        return "nothing_scored"
    if isinstance(exc, DataError) and "damaged" in str(exc):
        return "damaged"
    if not (run_dir / "run.db").is_file():
        return "not_a_run"
    if "not been scored" in str(exc):
        return "not_scored"
    return "other"


def _flag(key: str, values: dict[str, str], lang: Lang | str) -> str:
    en, zh = FLAGS[key]
    if Lang(lang) is Lang.zh:
        if key == "missing":
            values = {"dims": "、".join(local_name(d, lang) for d in values["dims"].split(", "))}
        return zh.format(**values)
    return en.format(**values)


def scorer_flag(scorer: ScorerManifest) -> str | None:
    """Why a scorer is not the official Flames-scorer as published, or None when it is."""
    reason = _scorer_reason(scorer)
    return None if reason is None else _flag(*reason, Lang.en)


def _scorer_reason(scorer: ScorerManifest) -> Flag | None:
    if scorer.kind != "official":
        return "scorer", {"name": scorer.name, "kind": scorer.kind}
    if scorer.config.get("model") != OFFICIAL_REPO:
        return "scorer_model", {"model": str(scorer.config.get("model")), "official": OFFICIAL_REPO}
    if scorer.config.get("truncation", "official") != "official":
        return "truncation", {"truncation": str(scorer.config["truncation"])}
    return None


def leaderboard(
    run_dirs: list[Path],
    scorer_name: str | None = None,
    bootstrap_samples: int = 2000,
    seed: int = 0,
    adjustment: Adjustment | str = Adjustment.holm,
) -> list[Entry]:
    """One entry per run: complete official-scorer runs first, best overall harmless rate first
    within each group, with the places the paired tests allow each. A run that cannot be ranked
    (not scored, ...) raises its FlamesError."""
    loaded = [_entry(run_dir, scorer_name, bootstrap_samples, seed) for run_dir in run_dirs]
    return _ranked(loaded, bootstrap_samples, seed, adjustment)


def rank_runs(
    run_dirs: list[Path],
    scorer_name: str | None = None,
    bootstrap_samples: int = 2000,
    seed: int = 0,
    adjustment: Adjustment | str = Adjustment.holm,
) -> tuple[list[Entry], list[Unranked]]:
    """As `leaderboard`, with the runs that cannot be ranked (not a run, not scored, nothing
    scored, ...) listed apart with the reason instead of stopping. Raises the first one's error
    when no run at all can be ranked."""
    loaded: list[tuple[Entry, Results]] = []
    unranked: list[Unranked] = []
    errors: list[FlamesError] = []
    for run_dir in run_dirs:
        try:
            loaded.append(_entry(run_dir, scorer_name, bootstrap_samples, seed))
        except FlamesError as exc:
            errors.append(exc)
            reason = str(exc).removeprefix(f"{run_dir}: ")
            kind = _unranked_kind(run_dir, exc)
            unranked.append(Unranked(run=str(run_dir), reason=reason, kind=kind))
    if not loaded and errors:
        raise errors[0]
    return _ranked(loaded, bootstrap_samples, seed, adjustment), unranked


def _ranked(
    loaded: list[tuple[Entry, Results]],
    bootstrap_samples: int,
    seed: int,
    adjustment: Adjustment | str,
) -> list[Entry]:
    """The entries sorted into their groups, each with the places its group's tests allow."""
    results = {entry.run: r for entry, r in loaded}
    entries = sorted((e for e, _ in loaded), key=lambda e: (bool(e.flags), -e.overall_rate))
    for group in ([e for e in entries if not e.flags], [e for e in entries if e.flags]):
        _rank_ranges(group, results, bootstrap_samples, seed, adjustment)
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


def _entry(
    run_dir: Path, scorer_name: str | None, bootstrap_samples: int, seed: int
) -> tuple[Entry, Results]:
    """The run's entry (ranks not set yet) and its loaded results."""
    results = load_results(run_dir, scorer_name)
    m = results.metrics(bootstrap_samples=bootstrap_samples, seed=seed)
    missing = [d.value for d in Dimension if d.value not in m.dimensions]
    reasons: list[Flag] = [("missing", {"dims": ", ".join(missing)})] if missing else []
    if reason := _scorer_reason(results.scorer):
        reasons.append(reason)
    entry = Entry(
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
        flags=[_flag(key, values, Lang.en) for key, values in reasons],
    )
    entry._reasons = reasons
    return entry, results


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
    else:
        head = "| # | Ranks | Run | Model | Scorer | Overall rate | 95% CI | Overall score | "
    head += " | ".join(dims) + " | N |" + (f" {t('apart_why', lang)} |" if why else "")
    lines = [head, "|" + "---|" * (len(dims) + 9 + why)]
    for rank, e in enumerate(entries, start=1):
        line = "| " + " | ".join(_cells(rank, e, markdown_text)) + " |"
        lines.append(line + (f" {markdown_text(e.flag_text(lang))} |" if why else ""))
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
    entries: list[Entry],
    console: Console,
    published: bool = True,
    lang: Lang | str = Lang.en,
    unranked: list[Unranked] | None = None,
) -> None:
    """Your runs (ranked apart ones separately, then those that cannot be ranked), then the
    published leaderboard, as tables that fit the console: no number is cut at 80 columns."""
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
    colon = "：" if Lang(lang) is Lang.zh else ": "
    if ranked:
        rows = [_cells(rank, e, inline) for rank, e in enumerate(ranked, start=1)]
        print_table(console, cols, rows, title=t("your_runs", lang), lang=lang)
        if len(ranked) > 1:
            console.print(ranks_note(ranked, lang), highlight=False)
    else:
        console.print(t("no_ranked", lang))
    if apart:
        rows = [_cells(rank, e, inline) for rank, e in enumerate(apart, start=1)]
        print_table(console, cols, rows, title=t("apart_title", lang), lang=lang)
        for rank, e in enumerate(apart, start=1):
            console.print(
                f"  {rank}. {inline(e.run)}{colon}{inline(e.flag_text(lang))}", highlight=False
            )
        if len(apart) > 1:
            console.print(ranks_note(apart, lang), highlight=False)
    if unranked:
        console.print(f"{t('not_ranked', lang)}{colon.strip()}", highlight=False)
        for u in unranked:
            console.print(f"  {inline(u.run)}{colon}{inline(u.text(lang))}", highlight=False)
    if len({e.dataset_sha256 for e in entries}) > 1:
        console.print(
            f"[yellow]{t('warning', lang)}{colon.strip()}[/] {t('other_prompt_sets', lang)}"
        )
    if published:
        cols = [Col("#"), Col(t("model", lang), text=True), Col(t("overall_short", lang))]
        rows = [
            [str(rank), model, f"{overall:.2f}%", *(f"{r:.2f}%" for r, _ in rates)]
            for rank, (model, (overall, rates)) in enumerate(_published(), start=1)
        ]
        title = t("published", lang)
        print_table(console, [*cols, *_dimension_cols(lang)], rows, title=title, lang=lang)
        console.print(t("published_note", lang))


def _published() -> list[tuple[str, tuple[float, list[tuple[float, float]]]]]:
    return sorted(PUBLISHED.items(), key=lambda kv: -kv[1][0])


def to_markdown(
    entries: list[Entry],
    published: bool = True,
    lang: Lang | str = Lang.en,
    unranked: list[Unranked] | None = None,
) -> str:
    ranked = [e for e in entries if not e.flags]
    apart = [e for e in entries if e.flags]
    lines = [f"## {t('your_runs', lang)}", ""]
    if ranked:
        lines += [
            t("ranked_note", lang),
            "",
            *_table(ranked, why=False, lang=lang),
            *(["", ranks_note(ranked, lang)] if len(ranked) > 1 else []),
        ]
    else:
        lines.append(t("no_ranked", lang))
    if apart:
        lines += [
            "",
            f"### {t('apart_title', lang)}",
            "",
            t("apart_note", lang),
            "",
            *_table(apart, why=True, lang=lang),
            *(["", ranks_note(apart, lang)] if len(apart) > 1 else []),
        ]
    if unranked:
        lines += ["", f"### {t('not_ranked', lang)}", "", t("not_ranked_note", lang), ""]
        colon = "：" if Lang(lang) is Lang.zh else ": "
        lines += [f"- {markdown_text(u.run)}{colon}{markdown_text(u.text(lang))}" for u in unranked]
    if len({e.dataset_sha256 for e in entries}) > 1:
        warning = t("warning", lang)
        warning = warning.capitalize() + ("：" if Lang(lang) is Lang.zh else ":")
        lines += ["", f"**{warning}** {t('other_prompt_sets', lang)}"]
    if published:
        lines += [
            "",
            f"## {t('published', lang)}",
            "",
            t("published_note", lang),
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
