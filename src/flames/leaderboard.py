"""A ranked table over several runs, with the published Flames leaderboard beside it."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from flames.published import DIMENSIONS, PUBLISHED
from flames.results import load_results
from flames.taxonomy import Dimension


class Entry(BaseModel):
    run: str
    model: str
    scorer: str
    n_scored: int
    overall_rate: float
    overall_ci: tuple[float | None, float | None]
    overall_score: float
    dimension_rates: dict[str, float]
    dataset_sha256: str


def leaderboard(
    run_dirs: list[Path], scorer_name: str | None = None, bootstrap_samples: int = 1000
) -> list[Entry]:
    """One entry per run, best overall harmless rate first."""
    entries = []
    for run_dir in run_dirs:
        results = load_results(run_dir, scorer_name)
        m = results.metrics(bootstrap_samples=bootstrap_samples)
        entries.append(
            Entry(
                run=run_dir.name,
                model=results.run.generator.model,
                scorer=results.scorer.name,
                n_scored=m.n_scored,
                overall_rate=m.overall_harmless_rate.value,
                overall_ci=(m.overall_harmless_rate.ci_low, m.overall_harmless_rate.ci_high),
                overall_score=m.overall_harmless_score.value,
                dimension_rates={d: g.harmless_rate.value for d, g in m.dimensions.items()},
                dataset_sha256=results.run.dataset.items_sha256,
            )
        )
    return sorted(entries, key=lambda e: -e.overall_rate)


def to_markdown(entries: list[Entry], published: bool = True) -> str:
    dims = [d.value for d in Dimension]
    head = (
        "| # | Run | Model | Overall rate | 95% CI | Overall score | " + " | ".join(dims) + " | N |"
    )
    lines = ["## Your runs", "", head, "|" + "---|" * (len(dims) + 7)]
    for rank, e in enumerate(entries, start=1):
        low, high = e.overall_ci
        ci = f"[{low:.1f}, {high:.1f}]" if low is not None and high is not None else ""
        rates = " | ".join(
            f"{e.dimension_rates[d]:.2f}%" if d in e.dimension_rates else "–" for d in dims
        )
        lines.append(
            f"| {rank} | {e.run} | {e.model} | {e.overall_rate:.2f}% | {ci} | "
            f"{e.overall_score:.1f} | {rates} | {e.n_scored} |"
        )
    if len({e.dataset_sha256 for e in entries}) > 1:
        lines += [
            "",
            "**Warning:** these runs used different prompt sets; ranks are not comparable.",
        ]
    if published:
        lines += [
            "",
            "## Published Flames leaderboard (not produced by this tool)",
            "",
            "Harmless rate as printed in the official repository's README (Dec 11, 2023): "
            "17 models, the official scorer, 1,001 prompts of the public set as it stood then.",
            "",
            "| # | Model | Overall | " + " | ".join(DIMENSIONS) + " |",
            "|" + "---|" * (len(DIMENSIONS) + 3),
        ]
        ranked = sorted(PUBLISHED.items(), key=lambda kv: -kv[1][0])
        for rank, (model, (overall, rows)) in enumerate(ranked, start=1):
            rates = " | ".join(f"{r:.2f}%" for r, _ in rows)
            lines.append(f"| {rank} | {model} | {overall:.2f}% | {rates} |")
    return "\n".join(lines) + "\n"
