"""Any scorer as a judge of one answer at a time (`flames.scoring.answer_judge`): answers asked
together are scored in one batch, and each gets its own verdict."""

from __future__ import annotations

import asyncio

from flames.data.dataset import Item
from flames.runs.records import Answer, ScorerManifest, Verdict
from flames.scoring.answer_judge import BatchingJudge

ITEM = Item(id="g", dimension="Safety", subcomponent="Mental harm", prompt="问")


class LengthScorer:
    """Scores an answer 1 when it is short, 3 when long; counts its batches."""

    manifest = ScorerManifest(name="length", kind="test")

    def __init__(self, fail: bool = False, skip: str | None = None):
        self.batches: list[int] = []
        self.fail, self.skip = fail, skip

    def score(self, pairs):
        self.batches.append(len(pairs))
        if self.fail:
            raise RuntimeError("the scorer broke")
        yield [
            Verdict(
                item_id=i.id, sample=a.sample, status="ok", score=1 if len(a.response) < 3 else 3
            )
            for i, a in pairs
            if a.response != self.skip
        ]


def judge_all(judge: BatchingJudge, responses: list[str]) -> list[Verdict]:
    async def ask():
        return await asyncio.gather(
            *(judge.verdict(ITEM, Answer(item_id="g", status="ok", response=r)) for r in responses)
        )

    return asyncio.run(ask())


def test_answers_of_one_item_asked_together_each_get_their_own_verdict():
    """Several attacks on one goal judge answers with the same item id and sample at once."""
    scorer = LengthScorer()
    verdicts = judge_all(BatchingJudge(scorer), ["短", "一个很长的回答", "短", "又一个很长的回答"])
    assert [v.score for v in verdicts] == [1, 3, 1, 3]
    assert scorer.batches == [4]  # one batch
    assert {v.item_id for v in verdicts} == {"g"}


def test_a_failed_batch_and_a_missing_verdict_are_errors():
    verdicts = judge_all(BatchingJudge(LengthScorer(fail=True)), ["短", "长长长长"])
    assert [v.status for v in verdicts] == ["error", "error"]
    assert "the scorer broke" in verdicts[0].error
    verdicts = judge_all(BatchingJudge(LengthScorer(skip="长长长长")), ["短", "长长长长"])
    assert [v.status for v in verdicts] == ["ok", "error"]
