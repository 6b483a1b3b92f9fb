"""The self-contained HTML report: one file, no network, charts inline."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from importlib.resources import files
from typing import Any

import numpy as np
from jinja2 import Environment, select_autoescape

from flames.analysis.metrics import Estimate
from flames.analysis.results import Results
from flames.analysis.robustness import TransformEffect, cells
from flames.data.augment import SOURCE
from flames.data.taxonomy import HARMLESS, SUBCOMPONENT_DIMENSION, Dimension, taxonomy_order
from flames.reporting.charts import bars, heatmap, radar
from flames.reporting.comparison import method_name
from flames.reporting.i18n import NAMES_ZH, Lang, local_name, t
from flames.reporting.report import (
    Report,
    fmt_ci,
    fmt_refusal,
    model_label,
    notes,
    refusal_rate,
    selection_text,
    table_rows,
)
from flames.runs.store import RunStore

MAX_ANSWERS = 500
MAX_CHARS = 3000


@dataclass(frozen=True)
class ShownAnswer:
    score: int
    p_harm: float | None
    """1 - P(class "harmless") where the scorer gives probabilities."""
    dimension: str
    subcomponent: str
    transform: str
    """The prompt transform (augmented runs); empty for an untransformed prompt."""
    prompt: str
    response: str


def worst_answers(results: Results, limit: int = MAX_ANSWERS) -> list[ShownAnswer]:
    """Answers scored below 3, worst first (score, then the scorer's confidence in harm), at
    most `limit`; only these are read back from the store."""
    items, samples = np.nonzero((results.scores > 0) & (results.scores < HARMLESS))
    scores = results.scores[items, samples]
    p_harm = results.p_harm[items, samples]
    order = np.lexsort((-np.nan_to_num(p_harm), scores))[:limit]
    keys = [(results.item_ids[items[k]], int(samples[k])) for k in order]
    with RunStore.open(results.run_dir) as store:
        texts = store.texts(keys)
    shown = []
    for k, key in zip(order, keys, strict=True):
        prompt, response = texts[key]
        i = items[k]
        shown.append(
            ShownAnswer(
                score=int(scores[k]),
                p_harm=None if np.isnan(p_harm[k]) else float(p_harm[k]),
                dimension=results.dimension(i).value,
                subcomponent=results.subcomponent_names[results.subcomponents[i]],
                transform=_transform(results.transforms.get(key[0])),
                prompt=prompt[:MAX_CHARS],
                response=response[:MAX_CHARS],
            )
        )
    return shown


def below_harmless(results: Results) -> int:
    """How many answers were scored below 3."""
    return int(((results.scores > 0) & (results.scores < HARMLESS)).sum())


def _transform(transform: tuple[str, str] | None) -> str:
    """The transform's name, or "" for an untransformed prompt."""
    name = transform[0] if transform else None
    return "" if name in (None, SOURCE) else str(name)


def manifest_tree(value: Any) -> Any:
    """The manifest as nested (key, value) lists for a definition list; leaves as text."""
    if isinstance(value, dict):
        return [(str(k), manifest_tree(v)) for k, v in value.items() if v not in (None, {}, [])]
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def robustness_heatmap(effects: list[TransformEffect], lang: Lang) -> str:
    """Transform x dimension, coloured by the change in harmless rate, * where the adjusted
    p-value is below 0.05."""
    overall = t("overall_short", lang)
    dims = sorted({d for e in effects for d in e.dimensions}, key=taxonomy_order)
    cells = {}
    for e in effects:
        for dim, d in [*e.dimensions.items(), (overall, e.overall)]:
            cells[(e.transform, dim)] = (d.difference, d.significant)
    return heatmap(
        cells,
        [e.transform for e in effects],
        [*dims, overall],
        t("robustness", lang),
        labels=_labels(lang),
        legend_labels=(t("change", lang), t("star_legend", lang)),
    )


def heatmap_caption(effects: list[TransformEffect], lang: Lang) -> str:
    """The heatmap's caption: what its stars mean, with the adjustment they went through."""
    rows = cells(effects)
    method = method_name(rows[0].adjustment, lang)
    return t("heatmap_caption", lang, method=method, cells=len(rows))


def _labels(lang: Lang) -> dict[str, str]:
    return {n: local_name(n, lang) for n in NAMES_ZH}


def render_html(report: Report, results: Results, lang: Lang | str = Lang.en) -> str:
    lang = Lang(lang)
    env = Environment(autoescape=select_autoescape(default=True))
    template = env.from_string(files("flames").joinpath("resources/report.html.j2").read_text())
    m = report.metrics
    rates: dict[str, Estimate] = {
        d.value: m.dimensions[d.value].harmless_rate for d in Dimension if d.value in m.dimensions
    }
    sub_rates = {name: g.harmless_rate for name, g in m.subcomponents.items()}
    groups = {
        sub: SUBCOMPONENT_DIMENSION[sub].value for sub in sub_rates if sub in SUBCOMPONENT_DIMENSION
    }
    worst = worst_answers(results)
    rows = [
        (level, local_name(name, lang), group, rate, score, refusal_rate(report, level, name))
        for level, name, group, rate, score in table_rows(m, lang)
    ]
    labels = _labels(lang)
    radar_svg = ""
    if len(rates) >= 3:
        radar_svg = radar(
            rates,
            t("radar_caption", lang),
            labels=labels,
            legend_labels=(t("harmless_rate", lang), t("ci", lang)),
        )
    return template.render(
        lang="zh-CN" if lang is Lang.zh else "en",
        t=partial(t, lang=lang),
        name=partial(local_name, lang=lang),
        report=report,
        model=model_label(report.run.generator),
        selection=selection_text(report.run.dataset.selection, lang),
        m=m,
        rows=rows,
        notes=notes(report, lang),
        ci=lambda e, digits: fmt_ci(e, digits) or "–",
        refusal=fmt_refusal,
        radar=radar_svg,
        bars=bars(sub_rates, groups, t("bars_caption", lang), labels=labels),
        heatmap=robustness_heatmap(report.robustness, lang) if report.robustness else "",
        heatmap_caption=heatmap_caption(report.robustness, lang) if report.robustness else "",
        worst=worst,
        below_harmless=below_harmless(results),
        max_answers=MAX_ANSWERS,
        max_chars=MAX_CHARS,
        dimensions=sorted({w.dimension for w in worst}, key=taxonomy_order),
        subcomponents=sorted({w.subcomponent for w in worst}, key=taxonomy_order),
        transforms=sorted({w.transform for w in worst if w.transform}),
        manifest=manifest_tree(
            {
                "run": report.run.model_dump(mode="json"),
                "scorer": report.scorer.model_dump(mode="json"),
            }
        ),
    )
