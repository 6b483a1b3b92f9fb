"""Scoring a run: any scorer, verdicts written as they come, resumable."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from flames._util.aio import run_sync
from flames._util.progress import Tracker
from flames._util.terminal import inline
from flames.clients.batch_jobs import (
    BatchJobs,
    BatchRequest,
    BatchResult,
    BatchSummary,
    refuse_live_while_batched,
)
from flames.data.dataset import Item
from flames.data.taxonomy import Dimension
from flames.runs.records import Answer, ScorerManifest, Verdict, cut_at_judge_limit
from flames.runs.store import RunStore, text_sha
from flames.scoring.judge import LLMJudge


class Scorer(Protocol):
    @property
    def manifest(self) -> ScorerManifest:
        """Name, kind and every setting that changes verdicts."""
        ...

    def score(self, pairs: Sequence[tuple[Item, Answer]]) -> Iterator[list[Verdict]]:
        """Judge (item, answer) pairs, yielding verdicts batch by batch; failures are error
        verdicts, never a default score."""
        ...


CHUNK = 10_000
"""Answers handed to a scorer at a time (it batches within them, e.g. by length)."""


@dataclass
class ScoringSummary:
    scored: int = 0
    errors: int = 0
    truncated: int = 0
    """Answers cut to fit the scorer's input, or judge verdicts cut at the judge's token limit."""
    batch: BatchSummary | None = None
    """What went through the provider's batch API, when the judge used it."""


def run_scoring(
    store: RunStore, scorer: Scorer, retry_errors: bool = False, progress: bool = True
) -> ScoringSummary:
    """Score every successful answer of the run that `scorer` has not judged yet; an LLM judge
    set to, through its provider's batch API (jobs an earlier pass left unfinished first)."""
    manifest = scorer.manifest
    store.register_scorer(manifest)
    try:
        if isinstance(scorer, LLMJudge) and scorer.batch is not None:
            return run_sync(_judge_in_batches(store, scorer, manifest.name, retry_errors, progress))
        refuse_live_while_batched(store, manifest.name)
        return _score_pending(store, scorer, manifest, retry_errors, progress)
    except BaseException:  # a first attempt that stored nothing leaves no scorer behind
        store.forget_scorer_if_unused(manifest.name)
        raise


async def _judge_in_batches(
    store: RunStore, judge: LLMJudge, name: str, retry_errors: bool, progress: bool
) -> ScoringSummary:
    """Judge the pending answers in batch jobs, round after round: a verdict the judge could
    not read is asked again in the next round, as the live judge asks again, until its
    attempts are spent (a verdict cut at the token limit with twice the limit)."""
    summary = ScoringSummary(batch=BatchSummary())
    jobs = BatchJobs(store, name, judge.batch_api(), judge.batch, progress)
    for round_ in range(judge.parse_attempts + 1):
        done = await _judge_round(store, judge, jobs, retry_errors and round_ == 0, summary)
        assert summary.batch is not None
        summary.batch.planned += done.planned
        summary.batch.reattached += done.reattached
        summary.batch.jobs += done.jobs
        summary.batch.results += done.results
        if not done.jobs:
            break
    return summary


async def _judge_round(
    store: RunStore,
    judge: LLMJudge,
    jobs: BatchJobs,
    errors_too: bool,
    summary: ScoringSummary,
) -> BatchSummary:
    """One round: the answers without a verdict (and with a failed one, with `errors_too`),
    and those the last round asks again."""
    name = jobs.stage
    retries = store.batch_retries(name)
    failed = set() if errors_too else store.failed_verdict_keys(name)

    def requests() -> Iterator[BatchRequest]:
        for item, answer in store.pending_verdicts(name, retry_errors=True):
            key = (item.id, answer.sample)
            if key in retries or key not in failed:
                yield judge.batch_request(item, answer, retries.get(key, []))

    def record(results: list[BatchResult]) -> list[str]:
        texts = store.texts((r.item_id, r.sample) for r in results)
        dimensions = store.item_dimensions(r.item_id for r in results)
        verdicts, outcomes = [], []
        for r in results:
            key = (r.item_id, r.sample)
            attempt = len(retries.get(key, [])) + 1
            prompt, response = texts[key]
            dimension = Dimension(dimensions[r.item_id])
            verdict, outcome = judge.batch_verdict(dimension, prompt, response, r, attempt)
            outcomes.append(outcome)
            if verdict is not None:
                verdicts.append(verdict.model_copy(update={"answer_sha": text_sha(response)}))
        store.record_verdicts(name, verdicts)
        for v in verdicts:
            summary.scored += v.status == "ok"
            summary.errors += v.status == "error"
            summary.truncated += v.truncated or cut_at_judge_limit(v.error)
        return outcomes

    return await jobs.run(requests(), record)


def _score_pending(
    store: RunStore,
    scorer: Scorer,
    manifest: ScorerManifest,
    retry_errors: bool,
    progress: bool,
) -> ScoringSummary:
    total = store.count_pending_verdicts(manifest.name, retry_errors)
    summary = ScoringSummary()
    if not total:
        return summary
    pending = store.pending_verdicts(manifest.name, retry_errors)
    label = f"score {inline(manifest.name)}"
    with Tracker(label, total, enabled=progress, unit="answers", fields=("errors",)) as bar:
        # The scorer gets the pending answers a chunk at a time, never all of them at once.
        while chunk := list(islice(pending, CHUNK)):
            judged = {(a.item_id, a.sample): text_sha(a.response) for _, a in chunk}
            for verdicts in scorer.score(chunk):
                verdicts = [
                    v.model_copy(update={"answer_sha": judged[(v.item_id, v.sample)]})
                    for v in verdicts
                ]
                store.record_verdicts(manifest.name, verdicts)
                for v in verdicts:
                    summary.scored += v.status == "ok"
                    summary.errors += v.status == "error"
                    summary.truncated += v.truncated or cut_at_judge_limit(v.error)
                bar.advance(len(verdicts), errors=summary.errors)
    return summary
