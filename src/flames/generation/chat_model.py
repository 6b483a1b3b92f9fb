"""Local models and Python functions as chat models (`flames.clients.chat_model.ChatModel`).

A local model generates best in batches, while the roles that take turns ask one chat at a time:
`LocalChatModel` gathers the chats asked concurrently into batches for a transformers or vLLM
backend (`complete`), in a worker thread. `CallableChatModel` calls a Python function.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from flames._util.aio import in_thread
from flames._util.callables import call, qualified_name
from flames.clients.chat import ERROR_CHARS, Reply
from flames.runs.records import Decoding, GeneratorInfo, Message, with_system_prompt


class Completer(Protocol):
    """A local backend's batch primitive (`TransformersBackend`, `VLLMBackend`)."""

    decoding: Decoding

    @property
    def info(self) -> GeneratorInfo: ...

    def complete(
        self,
        chats: Sequence[Sequence[Message]],
        max_tokens: int | None = None,
        seed: int | None = None,
        stop: threading.Event | None = None,
    ) -> list[Reply]: ...


@dataclass
class _Asked:
    chat: list[Message]
    settings: tuple[int | None, int | None]
    """(max_tokens, seed): only chats with the same settings share a batch."""
    reply: asyncio.Future[Reply] = field(repr=False)


def failed(exc: BaseException) -> Reply:
    return Reply(error=f"{type(exc).__name__}: {exc}"[:ERROR_CHARS])


class LocalChatModel:
    """A local backend as a chat model: chats asked concurrently are generated together, up to
    `batch_size` at a time, one batch after another."""

    def __init__(self, backend: Completer, batch_size: int = 8):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.backend = backend
        self.batch_size = batch_size
        self._asked: list[_Asked] = []
        self._worker: asyncio.Task[None] | None = None

    @property
    def info(self) -> GeneratorInfo:
        return self.backend.info

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        seed: int | None = None,
    ) -> Reply:
        chat = with_system_prompt(messages, self.backend.decoding)
        asked = _Asked(chat, (max_tokens, seed), asyncio.get_running_loop().create_future())
        self._asked.append(asked)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        try:
            return await asyncio.shield(asked.reply)
        except asyncio.CancelledError:
            if asked in self._asked:  # not started: never generated
                self._asked.remove(asked)
            raise

    async def _work(self) -> None:
        await asyncio.sleep(0)  # let the chats asked at the same moment join the first batch
        while self._asked:
            settings = self._asked[0].settings
            batch = [a for a in self._asked if a.settings == settings][: self.batch_size]
            for asked in batch:
                self._asked.remove(asked)
            stop = threading.Event()  # set by a Ctrl-C: the model stops at its next token
            try:
                replies = await in_thread(
                    self.backend.complete, [a.chat for a in batch], *settings, stop, stop=stop
                )
            except Exception as exc:  # the batch's failure is each of its chats' error
                replies = [failed(exc)] * len(batch)
            for asked, reply in zip(batch, replies, strict=True):
                if not asked.reply.done():
                    asked.reply.set_result(reply)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None


CallableInput = Literal["prompt", "messages"]


class CallableChatModel:
    """A Python function as a chat model: ``function(messages)`` (the whole chat), or
    ``function(prompt)`` (the last user turn, for single-turn use). An exception, or a result
    that is not text, is the reply's error."""

    def __init__(
        self,
        function: Callable[..., Any],
        input: CallableInput = "messages",
        version: str | None = None,
        name: str | None = None,
        decoding: Decoding | None = None,
    ):
        self.function = function
        self.input = input
        self.version = version
        self.name = name or qualified_name(function)
        self.decoding = decoding or Decoding(temperature=None, max_tokens=None)

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(
            backend="callable",
            model=self.name,
            decoding=self.decoding,
            options={"version": self.version, "input": self.input},
        )

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        seed: int | None = None,
    ) -> Reply:
        chat = with_system_prompt(messages, self.decoding)
        if self.input == "prompt":
            turns = [m for m in chat if m["role"] != "system"]
            if len(turns) != 1:
                problem = "a conversation reaches the function only with input='messages'"
                return Reply(error=f"ValueError: {problem}")
            argument: Any = turns[0]["content"]
        else:
            argument = chat
        started = time.monotonic()
        try:
            text = await call(self.function, argument)
        except Exception as exc:
            return failed(exc)
        if not isinstance(text, str):
            return Reply(error=f"TypeError: the function returned {type(text).__name__}, not str")
        return Reply(content=text, latency_s=round(time.monotonic() - started, 4))

    async def aclose(self) -> None:
        return None
