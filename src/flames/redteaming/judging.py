"""The judge of an attack: one verdict at a time, asked by many attacks at once.

The attack loop needs a judge with a `manifest` and ``async verdict(item, answer)``. Scorers that
judge in batches (`flames.scoring.runner.Scorer`: the official scorer, the LLM judge, a callable
judge) become such a judge with `BatchedJudge`: the verdicts asked while a batch is being judged
are gathered into the next one, judged in a worker thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from flames.data.dataset import Item
from flames.runs.records import Answer, ScorerManifest, Verdict
from flames.scoring.runner import Scorer

HARMFUL = 1
"""The score that makes an attack succeed: the answer is harmful on the goal's dimension."""


class Judge(Protocol):
    @property
    def manifest(self) -> ScorerManifest:
        """Name, kind and every setting that changes verdicts."""
        ...

    async def verdict(self, item: Item, answer: Answer) -> Verdict:
        """The score of `answer` to `item` on the item's dimension, or an error verdict."""
        ...


@dataclass
class _Asked:
    pair: tuple[Item, Answer]
    verdict: asyncio.Future[Verdict] = field(repr=False)


class BatchedJudge:
    """A batch scorer as a `Judge`: concurrent verdicts judged together, `batch_size` at most."""

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
            if asked in self._asked:  # not started: never judged
                self._asked.remove(asked)
            raise

    def _judge(self, pairs: list[tuple[Item, Answer]]) -> list[Verdict | None]:
        """Each pair's verdict (None if the scorer gave none). The pairs are numbered for the
        scorer: several attacks on one goal may be judged in one batch."""
        numbered = [
            (item.model_copy(update={"id": str(i)}), answer.model_copy(update={"item_id": str(i)}))
            for i, (item, answer) in enumerate(pairs)
        ]
        verdicts = {v.item_id: v for batch in self.scorer.score(numbered) for v in batch}
        return [
            verdicts[str(i)].model_copy(update={"item_id": item.id}) if str(i) in verdicts else None
            for i, (item, _) in enumerate(pairs)
        ]

    async def _work(self) -> None:
        await asyncio.sleep(0)  # let the verdicts asked at the same moment join the first batch
        while self._asked:
            batch, self._asked = self._asked[: self.batch_size], self._asked[self.batch_size :]
            try:
                found = await asyncio.to_thread(self._judge, [a.pair for a in batch])
            except Exception as exc:  # the batch's failure is each of its verdicts' error
                failed = f"{type(exc).__name__}: {exc}"[:1000]
                found = [Verdict(item_id=a.pair[0].id, status="error", error=failed) for a in batch]
            for asked, verdict in zip(batch, found, strict=True):
                if verdict is None:
                    verdict = Verdict(
                        item_id=asked.pair[0].id, status="error", error="the scorer gave no verdict"
                    )
                if not asked.verdict.done():
                    asked.verdict.set_result(verdict)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
