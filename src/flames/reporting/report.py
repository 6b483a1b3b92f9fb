"""Reports of one scored run: a console table, JSON, CSV and Markdown."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console

from flames._util.markdown import markdown_fill, markdown_text
from flames._util.outputs import atomic_open, csv_row, write_text
from flames._util.terminal import inline
from flames.analysis.compare import MIN_RESAMPLES
from flames.analysis.costs import BatchUsage, cost_text
from flames.analysis.metrics import INTERVAL_METHOD, Estimate, GroupMetrics, Metrics
from flames.analysis.multiplicity import Adjustment
from flames.analysis.refusal import ALL, RefusalStats
from flames.analysis.results import Results, scored_lines
from flames.analysis.robustness import TransformEffect, cells, robustness
from flames.reporting.comparison import method_name
from flames.reporting.console_table import Col, print_table
from flames.reporting.i18n import Lang, local_name, t
from flames.runs.records import GeneratorInfo, JudgeCheck, RunManifest, ScorerManifest

LOCAL_BACKENDS = ("transformers", "vllm")


def selection_text(selection: str, lang: Lang | str) -> str:
    """How the prompts were selected, as shown: the whole set is 'all' (全部)."""
    return t("all", lang) if selection == "all" else selection


def model_label(generator: GeneratorInfo) -> str:
    """The model as a reader knows it: the GGUF file, the hub id, or a local folder's name
    (the manifest keeps the full path)."""
    gguf = generator.options.get("gguf_file") if generator.backend == "transformers" else None
    if gguf:
        return str(gguf)
    model = generator.model
    local = model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model
    if generator.backend in LOCAL_BACKENDS and (local or model.endswith(".gguf")):
        return Path(model).name or model
    return model


FORMATS = ("json", "csv", "md")


class Report(BaseModel):
    run: RunManifest
    scorer: ScorerManifest
    metrics: Metrics
    problems: dict[str, int]
    """Rows (item x sample) without a score, by reason."""
    truncated: int
    """Answers the scorer had to truncate."""
    clamped: int = 0
    """Answers the server cut before --max-tokens (finish 'length' with fewer tokens)."""
    usage: dict[str, int]
    refusals: dict[str, RefusalStats]
    """Answers that refuse, per dimension and over all answers (key "all"): Flames rewards
    refusals, so read the harmless rate next to this."""
    subcomponent_refusals: dict[str, RefusalStats] = {}
    """The same per subcomponent."""
    robustness: list[TransformEffect] | None = None
    """For augmented prompt sets: the paired change in harmless rate under each transform."""
    batches: list[BatchUsage] = []
    """What went through provider batch APIs, per stage: requests, tokens, and cost."""


def build_report(
    results: Results,
    bootstrap_samples: int = 2000,
    seed: int = 0,
    adjustment: Adjustment | str = Adjustment.bh,
) -> Report:
    """The report of a scored run; `adjustment` adjusts the robustness table's p-values."""
    return Report(
        run=results.run,
        scorer=results.scorer,
        metrics=results.metrics(bootstrap_samples=bootstrap_samples, seed=seed),
        problems=results.problem_counts(),
        truncated=results.truncated,
        clamped=results.clamped,
        usage=results.usage,
        refusals=results.refusals,
        subcomponent_refusals=results.subcomponent_refusals,
        batches=results.batches,
        robustness=(
            # Paired tests need resamples even when the report's own intervals are off.
            robustness(
                results,
                bootstrap_samples=max(bootstrap_samples or 1000, MIN_RESAMPLES),
                seed=seed,
                adjustment=adjustment,
            )
            if results.transform_names()
            else None
        ),
    )


def fmt_rate(e: Estimate) -> str:
    return f"{e.value:.2f}%"


def fmt_score(e: Estimate) -> str:
    return f"{e.value:.1f}"


def fmt_ci(e: Estimate, digits: int) -> str:
    if e.ci_low is None or e.ci_high is None:
        return ""
    return f"[{e.ci_low:.{digits}f}, {e.ci_high:.{digits}f}]"


def table_rows(
    metrics: Metrics, lang: Lang | str = Lang.en
) -> list[tuple[str, str, GroupMetrics | None, Estimate, Estimate]]:
    """(level, name, group or None, rate, score) for every line of the report table; names of
    dimensions and subcomponents stay the taxonomy's (see `flames.reporting.i18n.local_name`)."""
    m = metrics
    rows: list[tuple[str, str, GroupMetrics | None, Estimate, Estimate]] = [
        (
            "overall",
            t("overall", lang),
            None,
            m.overall_harmless_rate,
            m.overall_harmless_score,
        ),
    ]
    rows += [
        ("dimension", n, g, g.harmless_rate, g.harmless_score) for n, g in m.dimensions.items()
    ]
    rows += [
        ("subcomponent", n, g, g.harmless_rate, g.harmless_score)
        for n, g in m.subcomponents.items()
    ]
    rows.append(
        (
            "item_mean",
            t("item_mean", lang),
            None,
            m.item_mean_harmless_rate,
            m.item_mean_harmless_score,
        )
    )
    return rows


def _n(group: GroupMetrics | None, metrics: Metrics) -> int:
    return group.n if group else metrics.n_scored


def refusal_rate(report: Report, level: str, group_name: str) -> float | None:
    """The refusal rate (%) of one line of the report table: dimensions and subcomponents their
    own; the overall, like the harmless rate, the mean over dimensions; the item mean over all
    answers."""
    if level == "dimension":
        found = report.refusals.get(group_name)
        return found.rate if found else None
    if level == "subcomponent":
        found = report.subcomponent_refusals.get(group_name)
        return found.rate if found else None
    if level == "overall":
        dims = [s.rate for k, s in report.refusals.items() if k != ALL]
        return sum(dims) / len(dims) if dims else None
    overall = report.refusals.get(ALL)
    return overall.rate if overall else None


def fmt_refusal(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.1f}%"


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "level",
            "name",
            "n",
            "harmless_rate",
            "rate_ci_low",
            "rate_ci_high",
            "harmless_score",
            "score_ci_low",
            "score_ci_high",
        ]
    )
    for level, name, group, rate, score in table_rows(report.metrics):
        writer.writerow(
            csv_row(
                [
                    level,
                    name,
                    _n(group, report.metrics),
                    round(rate.value, 4),
                    _r(rate.ci_low),
                    _r(rate.ci_high),
                    round(score.value, 4),
                    _r(score.ci_low),
                    _r(score.ci_high),
                ]
            )
        )
    return out.getvalue()


def _r(value: float | None) -> float | str:
    return "" if value is None else round(value, 4)


def _method(method: str, lang: Lang | str) -> str:
    """The interval method in `lang` (a method recorded by another version stays as it was)."""
    return t("interval_method", lang) if method == INTERVAL_METHOD else method


Text = Callable[..., str]
"""Fills a report text in a language: `t` (plain text), or `markdown_t`."""


def markdown_t(key: str, lang: Lang | str = Lang.en, **values: object) -> str:
    """`t` for Markdown: the values (names, a judge's error messages ...) shown as text."""
    return markdown_fill(t(key, lang), **values)


def notes(report: Report, lang: Lang | str = Lang.en, text: Text = t) -> list[str]:
    """Plain-language caveats a reader must see next to the numbers, filled by `text`: plain
    text by default (escape it where it is shown: it holds names and a judge's error
    messages), or Markdown with `markdown_t`."""
    m = report.metrics
    lines = [
        text(
            "scored_by",
            lang,
            n=m.n_scored,
            total=m.n_items,
            scorer=report.scorer.name,
            kind=report.scorer.kind,
        ),
        text("ci_note", lang, pct=int(m.confidence * 100), method=_method(m.interval_method, lang))
        if m.bootstrap_samples
        else text("no_ci_note", lang),
    ]
    check = report.scorer.check
    if check is not None:
        lines.append(judge_check_note(check, lang, text))
    if m.unscored:
        parts = ", ".join(f"{n} {why}" for why, n in sorted(m.unscored.items()))
        lines.append(text("unscored", lang, parts=parts))
    overall = report.refusals.get(ALL)
    if overall:
        lines.append(
            text(
                "refusal_note",
                lang,
                rate=overall.rate,
                refused=overall.refused,
                answered=overall.answered,
            )
        )
    if report.truncated:
        mode = report.scorer.config.get("truncation", "?")
        lines.append(text("truncated_note", lang, n=report.truncated, mode=mode))
    if report.clamped:
        max_tokens = report.run.generator.decoding.max_tokens
        lines.append(text("clamped_note", lang, n=report.clamped, max_tokens=max_tokens))
    for usage in report.batches:
        lines.append(batch_note(usage, lang, text))
    if not m.overall_complete:
        lines.append(text("incomplete_note", lang))
    if Lang(lang) is Lang.zh:
        lines.append(text("own_translation", lang))
    return lines


def batch_note(usage: BatchUsage, lang: Lang | str = Lang.en, text: Text = t) -> str:
    """One stage's batch jobs in a sentence: requests, tokens, and the cost where known; plain
    text by default (it names the stage: escape it where it is shown), or Markdown with
    `markdown_t`."""
    line = text(
        "batch_note",
        lang,
        api=usage.api,
        stage=usage.stage,
        requests=usage.requests,
        jobs=f"{usage.jobs} job" + ("s" if usage.jobs != 1 else "")
        if Lang(lang) is Lang.en
        else usage.jobs,
        ok=usage.ok,
        errors=usage.errors,
        pending=usage.pending,
        prompt=usage.prompt_tokens,
        completion=usage.completion_tokens,
    )
    if usage.cost is not None and usage.cost_live is not None:
        cost, live = cost_text(usage.cost), cost_text(usage.cost_live)
        line += text("batch_cost", lang, cost=cost, live=live)
    return line


def to_markdown(report: Report, lang: Lang | str = Lang.en) -> str:
    m = report.metrics
    gen = report.run.generator
    ds = report.run.dataset
    head = [
        t(k, lang) for k in ("n", "harmless_rate", "ci", "harmless_score", "ci", "refusal_rate")
    ]
    md = markdown_text
    out = [
        f"# {t('title_of', lang, model=md(model_label(gen)))}",
        "",
        markdown_t(
            "dataset_line",
            lang,
            name=ds.name,
            sha=ds.source_sha256[:12],
            n=ds.n_items,
            selection=selection_text(ds.selection, lang),
            backend=gen.backend,
            scorer=report.scorer.name,
        ),
        "",
        "| | " + " | ".join(head) + " |",
        "|---|---:|---:|---|---:|---|---:|",
    ]
    for level, group_name, group, rate, score in table_rows(m, lang):
        label = md(local_name(group_name, lang))
        if level == "overall":
            label = f"**{label}**"
        elif level == "subcomponent":
            label = f"&nbsp;&nbsp;{label}"
        out.append(
            f"| {label} | {_n(group, m)} | {fmt_rate(rate)} | {fmt_ci(rate, 2)} | "
            f"{fmt_score(score)} | {fmt_ci(score, 1)} | "
            f"{fmt_refusal(refusal_rate(report, level, group_name))} |"
        )
    out += ["", *[f"- {line}" for line in notes(report, lang, markdown_t)], ""]
    if report.robustness:
        head = [
            t(k, lang)
            for k in ("transform", "dimension", "n", "source", "transformed", "change", "ci")
        ]
        out += [
            f"## {t('robustness', lang)}",
            "",
            p_note(report.robustness, lang),
            "",
            "| " + " | ".join(head) + " | p | p* |",
            "|---|---|---:|---:|---:|---:|---|---:|---:|",
        ]
        for effect in report.robustness:
            for dim, d in [*effect.dimensions.items(), (t("overall_short", lang), effect.overall)]:
                out.append(
                    f"| {md(effect.transform)} | {md(local_name(dim, lang))} | {d.n} | "
                    f"{d.rate_a:.1f}% | "
                    f"{d.rate_b:.1f}% | {d.difference:+.1f} | "
                    f"[{d.ci_low:+.1f}, {d.ci_high:+.1f}] | {d.p_value:.3g} | "
                    f"{d.p_adjusted:.3g}{' *' if d.significant else ''} |"
                )
        out.append("")
    return "\n".join(out)


def write_reports(
    report: Report,
    out_dir: Path,
    formats: tuple[str, ...] = FORMATS,
    lang: Lang | str = Lang.en,
) -> list[Path]:
    """report.FORMAT for each format; `lang` is the Markdown's (JSON and CSV keys stay English)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out_dir / f"report.{fmt}"
        if fmt == "json":
            text = report.model_dump_json(indent=2)
        elif fmt == "csv":
            text = to_csv(report)
        elif fmt == "md":
            text = to_markdown(report, lang)
        else:
            raise ValueError(f"unknown report format {fmt!r}")
        written.append(write_text(path, text))
    return written


def write_scored(results: Results, path: Path) -> Path:
    """Every answer with its verdict, one JSON object a line, in the official scorer's output
    format (dimension, prompt, response, predicted) plus id, subcomponent, sample, status and
    probabilities; ``predicted`` is null where there is no score (see ``problem``)."""
    with atomic_open(path) as fh:
        fh.writelines(scored_lines(results))
    return path


def print_report(report: Report, console: Console, lang: Lang | str = Lang.en) -> None:
    """The report table, fitted to the console's width, and its notes."""
    m = report.metrics
    cols = [
        Col("", text=True),
        Col(t("n", lang)),
        Col(t("rate", lang)),
        Col(t("ci", lang), short=t("ci_short", lang)),
        Col(t("score", lang)),
        Col(t("ci", lang), short=t("ci_short", lang), drop=2, name=t("score_ci", lang)),
        Col(
            t("refusal_rate", lang),
            short="Ref." if Lang(lang) is Lang.en else "拒答",
            drop=1,
        ),
    ]
    rows = []
    for level, group_name, group, rate, score in table_rows(m, lang):
        label = inline(local_name(group_name, lang))
        if level == "overall":
            label = f"[bold]{label}[/]"
        elif level == "subcomponent":
            label = f"  [dim]{label}[/]"
        rows.append(
            [
                label,
                str(_n(group, m)),
                fmt_rate(rate),
                fmt_ci(rate, 1),
                fmt_score(score),
                fmt_ci(score, 1),
                fmt_refusal(refusal_rate(report, level, group_name)),
            ]
        )
    gen, scorer = inline(model_label(report.run.generator)), inline(report.scorer.name)
    title = f"{t('title_of', lang, model=gen)} · {t('scorer', lang)} {scorer}"
    print_table(console, cols, rows, title=title, caption=t("caption", lang), lang=lang)
    for line in notes(report, lang):
        console.print(f"• {inline(line)}", highlight=False)


def print_robustness(
    effects: list[TransformEffect], console: Console, lang: Lang | str = Lang.en
) -> None:
    """The robustness table, fitted to the console's width."""
    cols = [
        Col(t("transform", lang), text=True),
        Col(t("dimension", lang), text=True),
        Col(t("n", lang)),
        Col(t("source", lang), short="Src" if Lang(lang) is Lang.en else None),
        Col(t("transformed", lang), short="Trans." if Lang(lang) is Lang.en else None),
        Col(t("change", lang), short="Δ"),
        Col(t("ci", lang), short=t("ci_short", lang), drop=1),
        Col("p", drop=2, name=t("raw_p", lang)),
        Col("p*"),
    ]
    rows = []
    for effect in effects:
        dims = [*effect.dimensions.items(), (t("overall_short", lang), effect.overall)]
        for i, (dim, d) in enumerate(dims):
            rows.append(
                [
                    inline(effect.transform) if i == 0 else "",
                    inline(local_name(dim, lang)),
                    str(d.n),
                    f"{d.rate_a:.1f}%",
                    f"{d.rate_b:.1f}%",
                    f"{d.difference:+.1f}",
                    f"[{d.ci_low:+.1f}, {d.ci_high:+.1f}]",
                    f"{d.p_value:.3g}",
                    f"{d.p_adjusted:.3g}{' *' if d.significant else ''}",
                ]
            )
    print_table(console, cols, rows, title=t("robustness", lang), lang=lang)
    console.print(p_note(effects, lang), highlight=False)


def p_note(effects: list[TransformEffect], lang: Lang | str = Lang.en) -> str:
    """What p and p* mean in the robustness table: its tests and how p* is adjusted."""
    rows = cells(effects)
    return t("p_note", lang, method=method_name(rows[0].adjustment, lang), cells=len(rows))


def judge_check_note(check: dict[str, Any], lang: Lang | str = Lang.en, text: Text = t) -> str:
    """The report's line on a judge's sanity check, from its record in the scorer manifest
    (filled by `text`, as `notes`)."""
    if check.get("skipped"):
        return text("judge_skipped", lang)
    result = JudgeCheck.model_validate(check)
    verdict = t("judge_passed" if result.passed else "judge_failed", lang)
    if Lang(lang) is Lang.en:
        summary = result.summary()  # with what went wrong, in the words the judge check uses
    else:
        right = sum(r.correct for r in result.results)
        summary = t(
            "judge_summary",
            lang,
            right=right,
            total=len(result.results),
            accuracy=result.accuracy,
            bar=result.threshold,
        )
    return text("judge_check", lang, verdict=verdict, summary=summary)
