"""A judge written as a Python function, sync or async: (prompt, response, dimension) -> score.

Like the LLM judge it is never called official: its verdicts are stored under their own name and
kind ("callable-judge"), with the function's qualified name and the caller's version string in
the scorer manifest. An exception, or a score off the dimension's scale, is a judge error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from flames._aio import run_sync
from flames._callables import call, qualified_name
from flames.data.dataset import Item
from flames.runs.records import Answer, ScorerManifest, Verdict


class CallableJudge:
    """Scores each answer with `function(prompt, response, dimension)`, where `dimension` is the
    English name ("Safety", ...), returning 3, 2 or 1 (3 or 1 for Legality and Data protection)."""

    def __init__(
        self,
        function: Callable[..., Any],
        version: str | None = None,
        name: str | None = None,
        concurrency: int = 16,
        chunk_size: int = 256,
    ):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.function = function
        self.function_name = qualified_name(function)
        self.version = version
        self.name = name or f"judge:{self.function_name}"
        self.concurrency = concurrency
        self.chunk_size = chunk_size

    @property
    def manifest(self) -> ScorerManifest:
        return ScorerManifest(
            name=self.name,
            kind="callable-judge",
            config={"function": self.function_name, "version": self.version},
        )

    async def _verdict(self, item: Item, answer: Answer) -> Verdict:
        dimension = item.dimension
        try:
            score = await call(self.function, item.prompt, answer.response or "", dimension.value)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"[:1000]
            return Verdict(item_id=item.id, sample=answer.sample, status="error", error=message)
        if isinstance(score, bool) or score not in dimension.scale:
            return Verdict(
                item_id=item.id,
                sample=answer.sample,
                status="error",
                raw=repr(score)[:1000],
                error=f"score {score!r} is not on the {dimension.value} scale {dimension.scale}",
            )
        return Verdict(item_id=item.id, sample=answer.sample, status="ok", score=int(score))

    async def _judge(self, pairs: Sequence[tuple[Item, Answer]]) -> list[Verdict]:
        slots = asyncio.Semaphore(self.concurrency)

        async def bounded(item: Item, answer: Answer) -> Verdict:
            async with slots:
                return await self._verdict(item, answer)

        return list(await asyncio.gather(*(bounded(item, answer) for item, answer in pairs)))

    def score(self, pairs: Sequence[tuple[Item, Answer]]) -> Iterator[list[Verdict]]:
        for start in range(0, len(pairs), self.chunk_size):
            yield run_sync(self._judge(pairs[start : start + self.chunk_size]))
