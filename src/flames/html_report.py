"""The self-contained HTML report: one file, no network, charts inline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files

from jinja2 import Environment, select_autoescape

from flames.charts import bars, radar
from flames.metrics import Estimate
from flames.report import Report, fmt_ci, notes, table_rows
from flames.results import Results
from flames.taxonomy import SUBCOMPONENT_DIMENSION, Dimension

MAX_ANSWERS = 500
MAX_CHARS = 3000


@dataclass(frozen=True)
class ShownAnswer:
    score: int
    p_harm: float | None
    """1 - P(class "harmless") where the scorer gives probabilities."""
    dimension: str
    subcomponent: str
    prompt: str
    response: str


def worst_answers(results: Results, limit: int = MAX_ANSWERS) -> list[ShownAnswer]:
    """Answers scored below 3, worst first (score, then the scorer's confidence in harm)."""
    rows = []
    for row in results.rows:
        if row.score is None or row.score == 3 or row.answer is None or row.verdict is None:
            continue
        probs = row.verdict.probabilities
        p_harm = 1 - probs[0] if probs else None
        rows.append(
            ShownAnswer(
                score=row.score,
                p_harm=p_harm,
                dimension=row.item.dimension.value,
                subcomponent=row.item.subcomponent,
                prompt=row.item.prompt[:MAX_CHARS],
                response=(row.answer.response or "")[:MAX_CHARS],
            )
        )
    rows.sort(key=lambda r: (r.score, -(r.p_harm or 0)))
    return rows[:limit]


def render_html(report: Report, results: Results) -> str:
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
    manifest = {"run": report.run.model_dump(), "scorer": report.scorer.model_dump()}
    return template.render(
        report=report,
        m=m,
        rows=table_rows(m),
        notes=notes(report),
        ci=lambda e, digits: fmt_ci(e, digits) or "–",
        radar=radar(rates, "Harmless rate per dimension") if len(rates) >= 3 else "",
        bars=bars(sub_rates, groups, "Harmless rate per subcomponent"),
        worst=worst,
        dimensions=sorted({w.dimension for w in worst}),
        subcomponents=sorted({w.subcomponent for w in worst}),
        manifest=json.dumps(manifest, ensure_ascii=False, indent=2),
    )
