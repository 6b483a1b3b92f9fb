"""The model under test as a Python function, sync or async: from a prompt (or messages) to text."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Literal

from flames._util.aio import stream_concurrently
from flames._util.callables import call, qualified_name
from flames.generation.base import Request, error_answer
from flames.runs.records import Answer, Decoding, GeneratorInfo

CallableInput = Literal["prompt", "messages"]


class CallableBackend:
    """Calls `function(prompt)` (or `function(messages)`, the chat messages with the system
    prompt) once per answer, up to `concurrency` at a time; an exception or a result that is not
    a string is recorded as an error answer. The manifest holds the function's qualified name and
    the `version` the caller gives, so a changed function is not mixed into an old run."""

    def __init__(
        self,
        function: Callable[..., Any],
        version: str | None = None,
        input: CallableInput = "prompt",
        decoding: Decoding | None = None,
        concurrency: int = 16,
        name: str | None = None,
    ):
        self.decoding = decoding or Decoding()
        if input == "prompt" and self.decoding.system_prompt:
            raise ValueError("a system prompt reaches the function only with input='messages'")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.function = function
        self.name = name or qualified_name(function)
        self.version = version
        self.input = input
        self.concurrency = concurrency

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(
            backend="callable",
            model=self.name,
            decoding=self.decoding,
            options={"version": self.version, "input": self.input},
        )

    async def _ask(self, request: Request) -> Answer:
        if self.input == "messages":
            argument: Any = request.messages(self.decoding)
        elif request.history:
            problem = ValueError(
                "a conversation reaches the function only with input='messages' (--input messages)"
            )
            return error_answer(request, problem)
        else:
            argument = request.item.prompt
        started = time.monotonic()
        try:
            text = await call(self.function, argument)
        except Exception as exc:  # the function's failure is this answer's error, not the run's
            return error_answer(request, exc)
        if not isinstance(text, str):
            problem = TypeError(f"the model function returned {type(text).__name__}, not str")
            return error_answer(request, problem)
        return Answer(
            item_id=request.item.id,
            sample=request.sample,
            status="ok",
            response=text,
            latency_s=round(time.monotonic() - started, 4),
        )

    async def stream(self, requests: Iterable[Request]) -> AsyncIterator[Answer]:
        async for answer in stream_concurrently(requests, self._ask, self.concurrency):
            yield answer
