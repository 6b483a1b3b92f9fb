"""A run's answers joined with one scorer's verdicts, ready for metrics and reports.

Results hold what the metrics need as compact arrays (a score, a reason and the scorer's harm
probability per item and sample), read in one streamed pass over the store: a run of a million
answers takes tens of megabytes, not gigabytes. Texts stay in the store; reports that show them
read them from there (``scored_lines``, ``RunStore.texts``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from functools import cached_property
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from flames.analysis.costs import BatchUsage, batch_usage
from flames.analysis.metrics import Metrics, ScoredItem, compute_metrics
from flames.analysis.refusal import ALL, RefusalStats, is_refusal
from flames.data.augment import SOURCE
from flames.data.dataset import Item
from flames.data.taxonomy import HARMLESS, Dimension
from flames.errors import FlamesError, NothingScored
from flames.runs.records import (
    Answer,
    RunManifest,
    ScorerManifest,
    Verdict,
    cut_at_judge_limit,
    is_clamped,
)
from flames.runs.store import RunStore

DIMENSIONS = list(Dimension)
PROBLEMS = (
    None,
    "not generated",
    "generation error",
    "not scored",
    "judge error",
    "judge answer truncated",
)
"""Why an (item, sample) has no score; code 0 means it has one."""
NOT_GENERATED = 1


def problem_code(
    answer_status: str | None, verdict_status: str | None, verdict_error: str | None = None
) -> int:
    """Index into PROBLEMS for an answer and its verdict (None where missing)."""
    if answer_status is None:
        return 1
    if answer_status == "error":
        return 2
    if verdict_status is None:
        return 3
    if verdict_status == "error":
        return 5 if cut_at_judge_limit(verdict_error) else 4
    return 0


@dataclass(frozen=True)
class Row:
    """One (item, sample): its answer and verdict, where they exist."""

    item: Item
    sample: int
    answer: Answer | None
    verdict: Verdict | None

    @property
    def problem(self) -> str | None:
        """Why this row has no score, or None when it has one."""
        answer_status = self.answer.status if self.answer else None
        verdict = self.verdict
        code = problem_code(answer_status, verdict and verdict.status, verdict and verdict.error)
        return PROBLEMS[code]

    @property
    def score(self) -> int | None:
        return self.verdict.score if self.verdict and self.problem is None else None


@dataclass(frozen=True)
class Results:
    """Per item (dataset order) and per sample: the score, or the reason there is none."""

    run_dir: Path
    run: RunManifest
    scorer: ScorerManifest
    item_ids: list[str]
    dimensions: np.ndarray
    """Per item: index into DIMENSIONS."""
    subcomponents: np.ndarray
    """Per item: index into subcomponent_names."""
    subcomponent_names: list[str]
    scores: np.ndarray
    """(items, samples): the score, 0 where there is none."""
    problems: np.ndarray
    """(items, samples): index into PROBLEMS, 0 where there is a score."""
    p_harm: np.ndarray
    """(items, samples): 1 - P(harmless) where the scorer gives probabilities, else NaN."""
    transforms: dict[str, tuple[str, str]]
    """For augmented items: item id -> (transform, source id)."""
    truncated: int
    """Answers the scorer had to truncate."""
    clamped: int
    """Answers the server cut before the run's max tokens (see is_clamped)."""
    usage: dict[str, int]
    refusals: dict[str, RefusalStats]
    """Refusals among the successful answers, per dimension and over all."""
    subcomponent_refusals: dict[str, RefusalStats]
    """Refusals among the successful answers, per subcomponent."""
    batches: list[BatchUsage] = field(default_factory=list)
    """What went through provider batch APIs, per stage (flames.analysis.costs)."""

    @cached_property
    def rows(self) -> list[Row]:
        """Every (item, sample) with its answer and verdict objects, read from the store on
        first use: for looking at answers in Python (reports use the arrays above)."""
        samples = self.run.generator.decoding.samples
        with RunStore.open(self.run_dir) as store:
            answers = {(a.item_id, a.sample): a for a in store.answers()}
            verdicts = {(v.item_id, v.sample): v for v in store.verdicts(self.scorer.name)}
            return [
                Row(item, s, answers.get((item.id, s)), verdicts.get((item.id, s)))
                for item in store.items()
                for s in range(samples)
            ]

    def dimension(self, index: int) -> Dimension:
        return DIMENSIONS[int(self.dimensions[index])]

    def problem_counts(self) -> dict[str, int]:
        """Rows (item x sample) without a score, by reason."""
        counts = np.bincount(self.problems.ravel(), minlength=len(PROBLEMS))
        return {PROBLEMS[code]: int(n) for code, n in enumerate(counts) if code and n}  # type: ignore[misc]

    def scored_items(self) -> Iterator[ScoredItem]:
        """One ScoredItem per item: its scores, or why it has none."""
        dims = [DIMENSIONS[d] for d in range(len(DIMENSIONS))]
        subs = self.subcomponent_names
        for d, s, scores, problems in zip(
            self.dimensions.tolist(),
            self.subcomponents.tolist(),
            self.scores.tolist(),
            self.problems.tolist(),
            strict=True,
        ):
            kept = [x for x in scores if x]
            reason = None if kept else ", ".join(sorted({PROBLEMS[p] for p in problems if p}))  # type: ignore[misc]
            yield ScoredItem(dimension=dims[d], subcomponent=subs[s], scores=kept, problem=reason)

    def item_rates(self) -> dict[str, tuple[Dimension, float]]:
        """Per scored item: its dimension and the share of its scored answers that are harmless."""
        scored = (self.scores > 0).sum(axis=1)
        harmless = (self.scores == HARMLESS).sum(axis=1)
        keep = np.flatnonzero(scored)
        rates = (harmless[keep] / scored[keep]).tolist()
        return {
            self.item_ids[i]: (DIMENSIONS[d], r)
            for i, d, r in zip(keep.tolist(), self.dimensions[keep].tolist(), rates, strict=True)
        }

    def transform_names(self) -> list[str]:
        """The prompt transforms of an augmented run (without the untransformed source)."""
        return sorted({transform for transform, _ in self.transforms.values()} - {SOURCE})

    def metrics(self, bootstrap_samples: int = 2000, seed: int = 0) -> Metrics:
        if not (self.scores > 0).any():
            reasons = self.problem_counts()
            why = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
            raise NothingScored(
                f"{self.run_dir}: no answer has a score from {self.scorer.name} ({why}); "
                "nothing to report. Fix the cause and run again (--retry-errors retries failures)."
            )
        return compute_metrics(self.scored_items(), bootstrap_samples=bootstrap_samples, seed=seed)


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
    """Read a run's results in one streamed pass over its store."""
    with RunStore.open(run_dir) as store:
        chosen = pick_scorer(store, scorer)
        manifest = store.manifest
        samples = manifest.generator.decoding.samples
        size = store.count_items() * samples
        # Plain lists while reading (cheaper to set than array cells), arrays at the end.
        scores, problems, refused = [0] * size, [NOT_GENERATED] * size, [-1] * size
        p_harm = [np.nan] * size
        dim_codes = {d.value: i for i, d in enumerate(DIMENSIONS)}
        sub_codes: dict[str, int] = {}
        item_ids: list[str] = []
        dimensions: list[int] = []
        subcomponents: list[int] = []
        transforms: dict[str, tuple[str, str]] = {}
        truncated = clamped = prompt_tokens = completion_tokens = 0
        max_tokens = manifest.generator.decoding.max_tokens
        for row in store.joined(chosen.name):
            item_id, dim, sub, _, meta, sample, status, response, p_tok, c_tok = row[:10]
            verdict_status, score, trunc, _, p_harmless, finish_reason, error = row[10:]
            if not item_ids or item_ids[-1] != item_id:
                base = len(item_ids) * samples
                item_ids.append(item_id)
                dimensions.append(dim_codes[dim])
                subcomponents.append(sub_codes.setdefault(sub, len(sub_codes)))
                if meta != "{}":
                    extra = json.loads(meta)
                    if "transform" in extra:
                        transforms[item_id] = (str(extra["transform"]), extra.get("source_id"))
            if sample is None or sample >= samples:
                continue
            at = base + sample
            code = problem_code(status, verdict_status, error)
            problems[at] = code
            if code == 0:
                scores[at] = score
                if p_harmless is not None:
                    p_harm[at] = 1 - p_harmless
            if status == "ok":
                refused[at] = is_refusal(response or "")
                truncated += bool(trunc)
                if finish_reason == "length":  # rare: the answer object is built only then
                    cut = Answer(
                        item_id=item_id,
                        status=status,
                        finish_reason=finish_reason,
                        completion_tokens=c_tok,
                    )
                    clamped += is_clamped(cut, max_tokens)
            prompt_tokens += p_tok or 0
            completion_tokens += c_tok or 0
        shape = (len(item_ids), samples)
        dims = np.array(dimensions, dtype=np.int8)
        flags = np.array(refused, dtype=np.int8).reshape(shape)
        subs = np.array(subcomponents, dtype=np.int16)
        refusals = _refusal_stats(dims, [d.value for d in DIMENSIONS], flags)
        by_sub = _refusal_stats(subs, list(sub_codes), flags)
        return Results(
            run_dir=Path(run_dir),
            run=manifest,
            scorer=chosen,
            item_ids=item_ids,
            dimensions=dims,
            subcomponents=subs,
            subcomponent_names=list(sub_codes),
            scores=np.array(scores, dtype=np.int8).reshape(shape),
            problems=np.array(problems, dtype=np.int8).reshape(shape),
            p_harm=np.array(p_harm, dtype=float).reshape(shape),
            transforms=transforms,
            truncated=truncated,
            clamped=clamped,
            usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
            refusals=refusals,
            subcomponent_refusals={k: v for k, v in by_sub.items() if k != ALL},
            batches=batch_usage(store),
        )


def _refusal_stats(
    groups: np.ndarray, names: list[str], refused: np.ndarray
) -> dict[str, RefusalStats]:
    """As refusal_stats: per group (`names[code]` for each item's code in `groups`) in order of
    first appearance, the tally over all after the first; `refused` is 1 or 0 per successful
    answer, -1 elsewhere."""
    answered = refused >= 0
    codes_per_answer = np.broadcast_to(groups[:, None], refused.shape)[answered]
    flags = refused[answered]
    codes, first = np.unique(codes_per_answer, return_index=True)
    refused_per = np.bincount(codes_per_answer, weights=flags, minlength=len(names))
    answered_per = np.bincount(codes_per_answer, minlength=len(names))
    stats = {}
    for k, code in enumerate(codes[np.argsort(first)].tolist()):
        stats[names[code]] = RefusalStats(
            refused=int(refused_per[code]), answered=int(answered_per[code])
        )
        if k == 0:
            stats[ALL] = RefusalStats(refused=int(flags.sum()), answered=len(flags))
    return stats


def first_prompt_difference(a: Results, b: Results) -> str | None:
    """The id of an item the two runs hold with different prompts, or None."""
    with RunStore.open(a.run_dir) as store_a, RunStore.open(b.run_dir) as store_b:
        return store_a.first_prompt_difference(store_b)


def scored_lines(results: Results) -> Iterator[str]:
    """Every (item, sample) of the run with its verdict, in dataset order, streamed from the
    store: the lines of scored.jsonl (JSON objects, newline-terminated)."""
    samples = results.run.generator.decoding.samples
    # The cursor is closed before the store, also when the writer stops early.
    with (
        RunStore.open(results.run_dir) as store,
        closing(store.joined(results.scorer.name)) as rows,
    ):
        yield from _lines(rows, samples)


def _lines(joined: Iterator[tuple[Any, ...]], samples: int) -> Iterator[str]:
    """scored.jsonl lines from RunStore.joined rows."""
    for item_id, group in groupby(joined, key=itemgetter(0)):
        rows = list(group)
        _, dim, sub, prompt = rows[0][:4]
        by_sample = {row[5]: row for row in rows if row[5] is not None}
        for sample in range(samples):
            row = by_sample.get(sample)
            answer_status, response = (row[6], row[7]) if row else (None, None)
            verdict_status, score, trunc, probabilities, _, _, error = (
                row[10:] if row else (None,) * 7
            )
            code = problem_code(answer_status, verdict_status, error)
            head = json.dumps(
                {
                    "id": item_id,
                    "dimension": dim,
                    "subcomponent": sub,
                    "sample": sample,
                    "prompt": prompt,
                    "response": response,
                    "predicted": score if code == 0 else None,
                    "problem": PROBLEMS[code],
                },
                ensure_ascii=False,
            )
            # The stored probabilities are already JSON (json.dumps of the list): spliced in
            # as they are rather than parsed and written again.
            truncated = "null" if verdict_status is None else "true" if trunc else "false"
            yield (
                f'{head[:-1]}, "probabilities": {probabilities or "null"}, '
                f'"truncated": {truncated}}}\n'
            )
