"""Any scorer as a judge of one answer at a time, for callers that judge as they go (a red-team
attack judges each answer before its next move).

LLM and callable judges judge one answer at a time already (`verdict`). Batch scorers (the
official scorer on transformers, vLLM or Ray) are wrapped: the answers asked concurrently are
scored together in a worker thread, so the event loop stays free and the batches stay full.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from flames._util.aio import in_thread
from flames.data.dataset import Item
from flames.runs.records import Answer, ScorerManifest, Verdict
from flames.scoring.runner import Scorer


class AnswerJudge(Protocol):
    @property
    def manifest(self) -> ScorerManifest: ...

    async def verdict(self, item: Item, answer: Answer) -> Verdict:
        """The verdict on one answer; a failure is an error verdict, never a default score."""
        ...


@dataclass
class _Asked:
    pair: tuple[Item, Answer]
    verdict: asyncio.Future[Verdict] = field(repr=False)


class BatchingJudge:
    """A batch scorer judging one answer at a time: answers asked concurrently are scored in
    one call of `scorer.score`, up to `batch_size` at a time."""

    def __init__(self, scorer: Scorer, batch_size: int = 64):
        self.scorer = scorer
        self.batch_size = batch_size
        self._asked: list[_Asked] = []
        self._worker: asyncio.Task[None] | None = None

    @property
    def manifest(self) -> ScorerManifest:
        return self.scorer.manifest

    async def verdict(self, item: Item, answer: Answer) -> Verdict:
        asked = _Asked((item, answer), asyncio.get_running_loop().create_future())
        self._asked.append(asked)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        try:
            return await asyncio.shield(asked.verdict)
        except asyncio.CancelledError:
            if asked in self._asked:
                self._asked.remove(asked)
            raise

    def _score(self, pairs: list[tuple[Item, Answer]]) -> list[Verdict]:
        """Each pair's verdict, in order. The pairs are numbered for the scorer: answers asked
        together may share an item and a sample (several attacks on one goal)."""
        numbered = [
            (item.model_copy(update={"id": str(n)}), answer.model_copy(update={"item_id": str(n)}))
            for n, (item, answer) in enumerate(pairs)
        ]
        found = {v.item_id: v for batch in self.scorer.score(numbered) for v in batch}
        missing = "the scorer gave no verdict for this answer"
        return [
            found[str(n)].model_copy(update={"item_id": item.id})
            if str(n) in found
            else Verdict(item_id=item.id, sample=answer.sample, status="error", error=missing)
            for n, (item, answer) in enumerate(pairs)
        ]

    async def _work(self) -> None:
        await asyncio.sleep(0)  # let the answers asked at the same moment join the first batch
        while self._asked:
            batch, self._asked = self._asked[: self.batch_size], self._asked[self.batch_size :]
            pairs = [a.pair for a in batch]
            try:
                verdicts = await in_thread(self._score, pairs)
            except Exception as exc:  # the batch's failure is each of its answers' error
                message = f"{type(exc).__name__}: {exc}"[:1000]
                verdicts = [
                    Verdict(item_id=i.id, sample=a.sample, status="error", error=message)
                    for i, a in pairs
                ]
            for asked, verdict in zip(batch, verdicts, strict=True):
                if not asked.verdict.done():
                    asked.verdict.set_result(verdict)


def answer_judge(scorer: Scorer) -> AnswerJudge:
    """`scorer` as a judge of one answer at a time: as it is if it judges so already."""
    if callable(getattr(scorer, "verdict", None)):
        return scorer  # type: ignore[return-value]
    return BatchingJudge(scorer)
