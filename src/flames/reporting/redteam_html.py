"""A red-team run's self-contained HTML page: rates, ASR@k, usage, and every goal with the
winning prompt and how it got there, filterable by dimension, strategy and outcome."""

from __future__ import annotations

from functools import partial
from importlib.resources import files

from jinja2 import Environment, select_autoescape

from flames.analysis.attacks import GoalView, RedteamReport
from flames.data.taxonomy import SUBCOMPONENT_DIMENSION, taxonomy_order
from flames.reporting.charts import curves
from flames.reporting.html_report import manifest_tree
from flames.reporting.i18n import Lang, local_name, t
from flames.reporting.redteam import (
    ROLE_ORDER,
    fmt_interval,
    fmt_rate,
    header_line,
    outcome_lines,
    strategy_label,
)

MAX_CHARS = 3000
"""Texts shown are cut at this many characters."""


def render_redteam_html(
    report: RedteamReport, goals: list[GoalView], lang: Lang | str = Lang.en
) -> str:
    lang = Lang(lang)
    env = Environment(autoescape=select_autoescape(default=True))
    template = env.from_string(files("flames").joinpath("resources/redteam.html.j2").read_text())
    found = report.strategies.values()
    dims = sorted({d for stats in found for d in stats.dimensions}, key=taxonomy_order)
    subs = sorted({s for stats in found for s in stats.subcomponents}, key=taxonomy_order)
    groups = []
    for dim in dims:
        groups.append(("dimension", dim))
        groups += [("subcomponent", s) for s in subs if SUBCOMPONENT_DIMENSION[s].value == dim]
    series = {
        strategy_label(name, lang): stats.asr_at_k
        for name, stats in report.strategies.items()
        if stats.asr_at_k and stats.overall.n
    }
    curve = ""
    if series:
        curve = curves(series, t("asr_at_k", lang), t("queries", lang), t("asr", lang) + " (%)")
    assert report.run.redteam is not None
    return template.render(
        lang="zh-CN" if lang is Lang.zh else "en",
        t=partial(t, lang=lang),
        label=partial(local_name, lang=lang),
        strategy=partial(strategy_label, lang=lang),
        rate=fmt_rate,
        interval=fmt_interval,
        report=report,
        header=header_line(report, lang),
        outcome_lines=outcome_lines(report, lang),
        groups=groups,
        curve=curve,
        usage=[(role, report.usage[role]) for role in ROLE_ORDER if role in report.usage],
        goals=goals,
        any_success=any(a.outcome == "success" for g in goals for a in g.attacks),
        dimensions=sorted({g.dimension for g in goals}, key=taxonomy_order),
        strategy_names=list(report.run.redteam.strategies),
        max_chars=MAX_CHARS,
        manifest=manifest_tree({"run": report.run.model_dump(mode="json")}),
    )
