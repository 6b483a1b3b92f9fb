"""Pending work streamed from the store page by page, against a plain computation; the OpenAI
client takes requests from a stream as it goes."""

from __future__ import annotations

import asyncio

import pytest

from flames.data.dataset import Item
from flames.data.taxonomy import Dimension
from flames.generation.base import Request
from flames.generation.openai_api import OpenAIBackend
from flames.runs.records import (
    Answer,
    DatasetInfo,
    Decoding,
    GeneratorInfo,
    RunManifest,
    ScorerManifest,
    Verdict,
)
from flames.runs.store import RunStore

from .helpers import tied

SAMPLES = 2


@pytest.fixture
def store(tmp_path):
    items = [
        Item(
            id=f"x{(i * 7) % 25:02d}",
            dimension=Dimension.SAFETY,
            subcomponent="Physical harm",
            prompt=f"问题 {i}",
            meta={"n": i},
        )
        for i in range(25)
    ]  # ids out of dataset order, so id order and position order differ
    manifest = RunManifest(
        dataset=DatasetInfo(
            name="t", source_sha256="0" * 64, items_sha256="0" * 64, selection="all", n_items=25
        ),
        generator=GeneratorInfo(backend="test", model="m", decoding=Decoding(samples=SAMPLES)),
    )
    store = RunStore.create_or_resume(tmp_path / "run", manifest, items)
    answers = []
    for i, item in enumerate(items):
        for s in range(SAMPLES):
            if (i + s) % 3 == 0:
                answers.append(Answer(item_id=item.id, sample=s, status="ok", response="好"))
            elif (i + s) % 3 == 1:
                answers.append(Answer(item_id=item.id, sample=s, status="error", error="e"))
    store.record_answers(answers)
    store.register_scorer(ScorerManifest(name="j", kind="test"))
    ok = [a for a in answers if a.status == "ok"]
    store.record_verdicts(
        "j",
        tied(
            store,
            [Verdict(item_id=a.item_id, sample=a.sample, status="ok", score=3) for a in ok[::3]]
            + [Verdict(item_id=a.item_id, sample=a.sample, status="error") for a in ok[1::3]],
        ),
    )
    yield store
    store.close()


@pytest.mark.parametrize("retry", [False, True])
@pytest.mark.parametrize("page", [1, 4, 1000])
def test_pending_answers_match_the_plain_computation(store, retry, page):
    done = {(a.item_id, a.sample): a.status for a in store.answers()}
    expected = [
        (item, s)
        for item in store.items()
        for s in range(SAMPLES)
        if (item.id, s) not in done or (retry and done[(item.id, s)] == "error")
    ]
    got = list(store.pending_answers(retry, page=page))
    assert got == expected and 0 < len(expected) < 50
    assert store.count_pending_answers(retry) == len(expected)


@pytest.mark.parametrize("retry", [False, True])
@pytest.mark.parametrize("page", [1, 4, 1000])
def test_pending_verdicts_match_the_plain_computation(store, retry, page):
    items = {item.id: item for item in store.items()}
    judged = {(v.item_id, v.sample): v.status for v in store.verdicts("j")}
    expected = [
        (items[a.item_id], a)
        for a in store.answers()
        if a.status == "ok"
        and (
            (a.item_id, a.sample) not in judged
            or (retry and judged[(a.item_id, a.sample)] == "error")
        )
    ]
    got = list(store.pending_verdicts("j", retry, page=page))
    assert got == expected and len(expected) > 0
    assert store.count_pending_verdicts("j", retry) == len(expected)


def test_the_client_takes_requests_as_it_goes(mock_api):
    """With concurrency 4, the first answer arrives long before 200 requests are drawn."""
    backend = OpenAIBackend("m", base_url=mock_api.base_url, concurrency=4)
    drawn = []

    def requests():
        for i in range(200):
            drawn.append(i)
            yield Request(
                Item(
                    id=f"r{i}", dimension="Safety", subcomponent="Physical harm", prompt=f"问题 {i}"
                )
            )

    async def consume():
        seen_at_first, ids = None, []
        async for answer in backend.stream(requests()):
            if seen_at_first is None:
                seen_at_first = len(drawn)
            ids.append(answer.item_id)
        return seen_at_first, ids

    seen_at_first, ids = asyncio.run(consume())
    assert seen_at_first <= 4 + 4 + 1  # in flight + waiting in the queue + one being drawn
    assert sorted(ids) == sorted(f"r{i}" for i in range(200))  # each exactly once
