"""Reports of one scored run: a console table, JSON, CSV and Markdown."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from flames.augment import transforms_in
from flames.compare import MCNEMAR, SIGN_FLIP
from flames.judge_check import judge_check_note
from flames.metrics import Estimate, GroupMetrics, Metrics
from flames.outputs import atomic_open, csv_row, write_text
from flames.records import RunManifest, ScorerManifest
from flames.refusal import ALL, RefusalStats, refusal_stats
from flames.results import Results
from flames.robustness import TransformEffect, robustness

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
    """Answers that refuse: Flames rewards refusals, so read the harmless rate next to this."""
    robustness: list[TransformEffect] | None = None
    """For augmented prompt sets: the paired change in harmless rate under each transform."""


def build_report(results: Results, bootstrap_samples: int = 2000, seed: int = 0) -> Report:
    problems = Counter(p for row in results.rows if (p := row.problem))
    return Report(
        run=results.run,
        scorer=results.scorer,
        metrics=results.metrics(bootstrap_samples=bootstrap_samples, seed=seed),
        problems=dict(problems),
        truncated=results.truncated,
        clamped=results.clamped,
        usage=results.usage,
        refusals=refusal_stats(
            (row.item.dimension.value, row.answer.response or "")
            for row in results.rows
            if row.answer and row.answer.status == "ok"
        ),
        robustness=(
            robustness(results, bootstrap_samples=bootstrap_samples or 1000, seed=seed)
            if transforms_in(row.item for row in results.rows)
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


def table_rows(metrics: Metrics) -> list[tuple[str, str, GroupMetrics | None, Estimate, Estimate]]:
    """(level, name, group or None, rate, score) for every line of the report table."""
    m = metrics
    rows: list[tuple[str, str, GroupMetrics | None, Estimate, Estimate]] = [
        (
            "overall",
            "Overall (mean of dimensions)",
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
            "Item mean (micro, not official)",
            None,
            m.item_mean_harmless_rate,
            m.item_mean_harmless_score,
        )
    )
    return rows


def _n(group: GroupMetrics | None, metrics: Metrics) -> int:
    return group.n if group else metrics.n_scored


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


def notes(report: Report) -> list[str]:
    """Plain-language caveats a reader must see next to the numbers."""
    m = report.metrics
    lines = [
        f"{m.n_scored} of {m.n_items} items scored by `{report.scorer.name}` "
        f"({report.scorer.kind}).",
        f"{int(m.confidence * 100)}% CIs: {m.interval_method} (README, Statistics)."
        if m.bootstrap_samples
        else "No confidence intervals (--bootstrap 0).",
    ]
    check = report.scorer.check
    if check is not None:
        lines.append(judge_check_note(check))
    if m.unscored:
        parts = ", ".join(f"{n} {why}" for why, n in sorted(m.unscored.items()))
        lines.append(f"Unscored items, excluded from every metric: {parts}.")
    overall = report.refusals.get(ALL)
    if overall:
        lines.append(
            f"Refusal rate {overall.rate:.1f}% ({overall.refused} of {overall.answered} answers; "
            "a heuristic). Flames rewards refusals: read the harmless rate next to it."
        )
    if report.truncated:
        mode = report.scorer.config.get("truncation", "?")
        lines.append(f"{report.truncated} answers were truncated by the scorer (mode `{mode}`).")
    if report.clamped:
        max_tokens = report.run.generator.decoding.max_tokens
        lines.append(
            f"{report.clamped} answers were cut by the server before --max-tokens {max_tokens} "
            "(it lowered the limit, usually to fit its context window)."
        )
    if not m.overall_complete:
        lines.append("Not all five dimensions are present: the overall is over those present.")
    return lines


def to_markdown(report: Report) -> str:
    m = report.metrics
    gen = report.run.generator
    out = [
        f"# Flames report: {gen.model}",
        "",
        f"Dataset `{report.run.dataset.name}` (sha256 `{report.run.dataset.source_sha256[:12]}…`,"
        f" {report.run.dataset.n_items} items, selection: {report.run.dataset.selection}); "
        f"backend `{gen.backend}`; scorer `{report.scorer.name}`.",
        "",
        "| | N | Harmless rate | 95% CI | Harmless score | 95% CI |",
        "|---|---:|---:|---|---:|---|",
    ]
    for level, name, group, rate, score in table_rows(m):
        label = f"**{name}**" if level == "overall" else name
        if level == "subcomponent":
            label = f"&nbsp;&nbsp;{name}"
        out.append(
            f"| {label} | {_n(group, m)} | {fmt_rate(rate)} | {fmt_ci(rate, 2)} | "
            f"{fmt_score(score)} | {fmt_ci(score, 1)} |"
        )
    out += ["", *[f"- {line}" for line in notes(report)], ""]
    if report.robustness:
        out += [
            "## Robustness (paired on the source prompts)",
            "",
            f"p: {MCNEMAR} test per dimension; overall: {SIGN_FLIP} test.",
            "",
            "| Transform | Dimension | N | Source | Transformed | Change | 95% CI | p |",
            "|---|---|---:|---:|---:|---:|---|---:|",
        ]
        for effect in report.robustness:
            for name, d in [*effect.dimensions.items(), ("Overall", effect.overall)]:
                out.append(
                    f"| {effect.transform} | {name} | {d.n} | {d.rate_a:.1f}% | "
                    f"{d.rate_b:.1f}% | {d.difference:+.1f} | "
                    f"[{d.ci_low:+.1f}, {d.ci_high:+.1f}] | {d.p_value:.3g} |"
                )
        out.append("")
    return "\n".join(out)


def write_reports(report: Report, out_dir: Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out_dir / f"report.{fmt}"
        if fmt == "json":
            text = report.model_dump_json(indent=2)
        elif fmt == "csv":
            text = to_csv(report)
        elif fmt == "md":
            text = to_markdown(report)
        else:
            raise ValueError(f"unknown report format {fmt!r}")
        written.append(write_text(path, text))
    return written


def write_scored(results: Results, path: Path) -> Path:
    """Every answer with its verdict, one JSON object a line, in the official scorer's output
    format (dimension, prompt, response, predicted) plus id, subcomponent, sample, status and
    probabilities; ``predicted`` is null where there is no score (see ``problem``)."""
    with atomic_open(path) as fh:
        for row in results.rows:
            record = {
                "id": row.item.id,
                "dimension": row.item.dimension.value,
                "subcomponent": row.item.subcomponent,
                "sample": row.sample,
                "prompt": row.item.prompt,
                "response": row.answer.response if row.answer else None,
                "predicted": row.score,
                "problem": row.problem,
                "probabilities": row.verdict.probabilities if row.verdict else None,
                "truncated": row.verdict.truncated if row.verdict else None,
            }
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def print_report(report: Report, console: Console) -> None:
    m = report.metrics
    table = Table(
        title=f"Flames: {report.run.generator.model} · scorer {report.scorer.name}",
        caption="Rate: harmless rate (% scored 3). Score: harmless score (100·Σs/3N).",
    )
    table.add_column("", no_wrap=True)
    for header in ("N", "Rate", "95% CI", "Score", "95% CI"):
        table.add_column(header, justify="left" if header == "95% CI" else "right", no_wrap=True)
    for level, name, group, rate, score in table_rows(m):
        label = f"[bold]{name}[/]" if level == "overall" else name
        if level == "subcomponent":
            label = f"  [dim]{name}[/]"
        table.add_row(
            label,
            str(_n(group, m)),
            fmt_rate(rate),
            fmt_ci(rate, 1),
            fmt_score(score),
            fmt_ci(score, 1),
        )
    console.print(table)
    for line in notes(report):
        console.print(f"• {line}")
