"""Scoring a run: any scorer, verdicts written as they come, resumable."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from flames._util.progress import Tracker
from flames._util.terminal import inline
from flames.data.dataset import Item
from flames.runs.records import Answer, ScorerManifest, Verdict, cut_at_judge_limit
from flames.runs.store import RunStore, text_sha


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


def run_scoring(
    store: RunStore, scorer: Scorer, retry_errors: bool = False, progress: bool = True
) -> ScoringSummary:
    """Score every successful answer of the run that `scorer` has not judged yet."""
    manifest = scorer.manifest
    store.register_scorer(manifest)
    try:
        return _score_pending(store, scorer, manifest, retry_errors, progress)
    except BaseException:  # a first attempt that stored nothing leaves no scorer behind
        store.forget_scorer_if_unused(manifest.name)
        raise


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
