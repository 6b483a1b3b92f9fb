"""A judge written as a Python function, sync or async: (prompt, response, dimension) -> score.

Like the LLM judge it is never called official: its verdicts are stored under their own name and
kind ("callable-judge"), with the function's qualified name and the caller's version string in
the scorer manifest. An exception, or a score off the dimension's scale, is a judge error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from flames._util.aio import iterate_sync, stream_concurrently
from flames._util.callables import call, qualified_name
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
    ):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.function = function
        self.function_name = qualified_name(function)
        self.version = version
        self.name = name or f"judge:{self.function_name}"
        self.concurrency = concurrency

    @property
    def manifest(self) -> ScorerManifest:
        return ScorerManifest(
            name=self.name,
            kind="callable-judge",
            config={"function": self.function_name, "version": self.version},
        )

    async def verdict(self, item: Item, answer: Answer) -> Verdict:
        """One answer's verdict (an exception or an off-scale score is its error)."""
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

    def score(self, pairs: Sequence[tuple[Item, Answer]]) -> Iterator[list[Verdict]]:
        """Yield every verdict alone, as it comes, `concurrency` calls at a time."""
        verdicts = stream_concurrently(pairs, lambda pair: self.verdict(*pair), self.concurrency)
        for verdict in iterate_sync(verdicts):
            yield [verdict]
