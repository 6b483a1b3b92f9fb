"""What an evaluation returns: one scorer's report on a run, with its answers and verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flames.analysis.metrics import Estimate, GroupMetrics, Metrics
from flames.analysis.results import Results, Row
from flames.data.taxonomy import SUBCOMPONENT_DIMENSION
from flames.errors import FlamesError, install_hint
from flames.reporting.report import Report
from flames.runs.records import RunManifest, ScorerManifest

if TYPE_CHECKING:
    import pandas


@dataclass(frozen=True)
class EvalResult:
    """A scored run as seen by one scorer: the official metrics per dimension and subcomponent
    with confidence intervals, and every answer with its verdict.

    `to_pandas()` gives the same as a DataFrame (needs pandas)."""

    report: Report = field(repr=False)
    """Metrics, unscored items by reason, truncation, token usage, refusals, robustness."""
    results: Results = field(repr=False)
    """The run's rows: each (item, sample) with its answer and verdict."""

    @property
    def run_dir(self) -> Path:
        """The run directory."""
        return self.results.run_dir

    @property
    def manifest(self) -> RunManifest:
        """Dataset, model and decoding settings the answers were made with."""
        return self.results.run

    @property
    def scorer(self) -> ScorerManifest:
        """The scorer (or judge) whose verdicts these are, with its settings."""
        return self.results.scorer

    @property
    def metrics(self) -> Metrics:
        """Harmless rate and score per dimension, per subcomponent and overall, with CIs."""
        return self.report.metrics

    @property
    def harmless_rate(self) -> Estimate:
        """The official overall harmless rate (mean of the dimensions), in percent."""
        return self.metrics.overall_harmless_rate

    @property
    def harmless_score(self) -> Estimate:
        """The official overall harmless score (mean of the dimensions)."""
        return self.metrics.overall_harmless_score

    @property
    def rows(self) -> list[Row]:
        """Each (item, sample) with its answer and verdict, where they exist."""
        return self.results.rows

    @property
    def unscored(self) -> dict[str, int]:
        """Rows without a score, by reason ('generation error', 'judge error', ...)."""
        return self.report.problems

    def __str__(self) -> str:
        m = self.metrics
        return (
            f"{self.run_dir.name} ({self.scorer.name}): harmless rate "
            f"{_fmt(self.harmless_rate, '%')}, harmless score {_fmt(self.harmless_score)}, "
            f"{m.n_scored} of {m.n_items} items scored"
        )

    def __repr__(self) -> str:
        return f"<EvalResult {self}>"

    def to_pandas(self, table: Literal["metrics", "answers"] = "metrics") -> pandas.DataFrame:
        """A DataFrame: 'metrics' has one row per dimension, subcomponent and the overall, with
        intervals; 'answers' has one row per answer with its verdict."""
        try:
            import pandas
        except ImportError:
            raise FlamesError(f"to_pandas() needs pandas: {install_hint('pandas')}") from None
        if table == "metrics":
            return pandas.DataFrame(_metric_rows(self.metrics))
        if table == "answers":
            return pandas.DataFrame([_answer_row(row) for row in self.rows])
        raise ValueError(f"table must be 'metrics' or 'answers', not {table!r}")


def _fmt(estimate: Estimate, unit: str = "") -> str:
    interval = estimate.interval
    text = f"{estimate.value:.1f}{unit}"
    return text + (f" [{interval[0]:.1f}, {interval[1]:.1f}]" if interval else "")


def _metric_row(
    level: str, name: str, dimension: str | None, group: GroupMetrics
) -> dict[str, Any]:
    return {
        "level": level,
        "name": name,
        "dimension": dimension,
        "n": group.n,
        **_estimate_columns("harmless_rate", group.harmless_rate),
        **_estimate_columns("harmless_score", group.harmless_score),
    }


def _estimate_columns(name: str, estimate: Estimate) -> dict[str, float | None]:
    return {name: estimate.value, f"{name}_low": estimate.ci_low, f"{name}_high": estimate.ci_high}


def _metric_rows(metrics: Metrics) -> list[dict[str, Any]]:
    rows = [
        {
            "level": "overall",
            "name": "Overall",
            "dimension": None,
            "n": metrics.n_scored,
            **_estimate_columns("harmless_rate", metrics.overall_harmless_rate),
            **_estimate_columns("harmless_score", metrics.overall_harmless_score),
        }
    ]
    rows += [_metric_row("dimension", d, d, g) for d, g in metrics.dimensions.items()]
    for name, group in metrics.subcomponents.items():
        dimension = SUBCOMPONENT_DIMENSION.get(name)
        rows.append(_metric_row("subcomponent", name, dimension and dimension.value, group))
    return rows


def _answer_row(row: Row) -> dict[str, Any]:
    answer, verdict = row.answer, row.verdict
    return {
        "item_id": row.item.id,
        "sample": row.sample,
        "dimension": row.item.dimension.value,
        "subcomponent": row.item.subcomponent,
        "prompt": row.item.prompt,
        "response": answer.response if answer else None,
        "score": row.score,
        "problem": row.problem,
        "answer_error": answer.error if answer else None,
        "verdict_error": verdict.error if verdict else None,
    }
