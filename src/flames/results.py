"""A run's answers joined with one scorer's verdicts, ready for metrics and reports."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from flames.dataset import Item
from flames.errors import FlamesError, NothingScored
from flames.generation.base import is_clamped
from flames.metrics import Metrics, ScoredItem, compute_metrics
from flames.records import TRUNCATED_VERDICT, Answer, RunManifest, ScorerManifest, Verdict
from flames.store import RunStore


@dataclass(frozen=True)
class Row:
    """One (item, sample): its answer and verdict, where they exist."""

    item: Item
    sample: int
    answer: Answer | None
    verdict: Verdict | None

    @property
    def score(self) -> int | None:
        if self.answer and self.answer.status == "ok" and self.verdict:
            return self.verdict.score if self.verdict.status == "ok" else None
        return None

    @property
    def problem(self) -> str | None:
        """Why this row has no score, or None when it has one."""
        if self.answer is None:
            return "not generated"
        if self.answer.status == "error":
            return "generation error"
        if self.verdict is None:
            return "not scored"
        if self.verdict.status == "error":
            cut = (self.verdict.error or "").startswith(TRUNCATED_VERDICT)
            return "judge answer truncated" if cut else "judge error"
        return None


@dataclass(frozen=True)
class Results:
    run_dir: Path
    run: RunManifest
    scorer: ScorerManifest
    rows: list[Row]

    def scored_items(self) -> list[ScoredItem]:
        by_item: dict[str, list[Row]] = defaultdict(list)
        for row in self.rows:
            by_item[row.item.id].append(row)
        scored = []
        for rows in by_item.values():
            item = rows[0].item
            scores = [r.score for r in rows if r.score is not None]
            problems = sorted({p for r in rows if (p := r.problem)})
            scored.append(
                ScoredItem(
                    dimension=item.dimension,
                    subcomponent=item.subcomponent,
                    scores=scores,
                    problem=None if scores else ", ".join(problems),
                )
            )
        return scored

    def metrics(self, bootstrap_samples: int = 2000, seed: int = 0) -> Metrics:
        if not any(row.score is not None for row in self.rows):
            reasons = Counter(row.problem or "not scored" for row in self.rows)
            why = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
            raise NothingScored(
                f"{self.run_dir}: no answer has a score from {self.scorer.name} ({why}); "
                "nothing to report. Fix the cause and run again (--retry-errors retries failures)."
            )
        return compute_metrics(self.scored_items(), bootstrap_samples=bootstrap_samples, seed=seed)

    @property
    def truncated(self) -> int:
        return sum(1 for r in self.rows if r.verdict and r.verdict.truncated)

    @property
    def clamped(self) -> int:
        """Answers the server cut before the run's max tokens (see is_clamped)."""
        max_tokens = self.run.generator.decoding.max_tokens
        return sum(1 for r in self.rows if r.answer and is_clamped(r.answer, max_tokens))

    @property
    def usage(self) -> dict[str, int]:
        answers = [r.answer for r in self.rows if r.answer]
        return {
            "prompt_tokens": sum(a.prompt_tokens or 0 for a in answers),
            "completion_tokens": sum(a.completion_tokens or 0 for a in answers),
        }


def pick_scorer(store: RunStore, name: str | None) -> ScorerManifest:
    """The scorer called `name`, or the run's only scorer when no name is given."""
    scorers = store.scorers()
    if name is not None:
        if name not in scorers:
            known = ", ".join(scorers) or "none"
            raise FlamesError(f"{store.run_dir}: no scorer {name!r} in this run (has: {known})")
        return scorers[name]
    if not scorers:
        raise FlamesError(f"{store.run_dir}: the run has not been scored yet (`flames score`)")
    if len(scorers) > 1:
        raise FlamesError(
            f"{store.run_dir}: the run has several scorers ({', '.join(scorers)}); pick one "
            "with --scorer-name"
        )
    return next(iter(scorers.values()))


def load_results(run_dir: Path | str, scorer: str | None = None) -> Results:
    with RunStore.open(run_dir) as store:
        chosen = pick_scorer(store, scorer)
        answers = {(a.item_id, a.sample): a for a in store.answers()}
        verdicts = {(v.item_id, v.sample): v for v in store.verdicts(chosen.name)}
        samples = store.manifest.generator.decoding.samples
        rows = [
            Row(item, s, answers.get((item.id, s)), verdicts.get((item.id, s)))
            for item in store.items()
            for s in range(samples)
        ]
        return Results(Path(run_dir), store.manifest, chosen, rows)
