"""A chat model as one role in a conversation: ask it a whole chat, get one reply.

Generation asks a model every prompt of a run at once (`flames.generation.Backend`); roles that
take turns (an attacker, a target in a multi-turn attack, a judge) ask one chat at a time, many
concurrently. `ChatModel` is that interface, whatever serves the model: an OpenAI-compatible API
(`ApiChatModel`, here), a local transformers or vLLM model, or a Python function
(`flames.generation.chat_model`). Failures come back as a `Reply` with an error, never raised;
only a server never reached at all stops the caller (`flames.errors.EndpointUnreachable`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol, Unpack

import aiohttp

from flames.clients.chat import ChatClient, ClientOptions, Reply, chat_body
from flames.runs.records import Decoding, GeneratorInfo, Message, with_system_prompt


class ChatModel(Protocol):
    @property
    def info(self) -> GeneratorInfo:
        """What a manifest records: backend, model and every setting that changes replies."""
        ...

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        seed: int | None = None,
    ) -> Reply:
        """One reply to `messages` (after the model's system prompt, unless they begin with
        their own), with `max_tokens` and `seed` instead of the model's decoding's if given."""
        ...

    async def aclose(self) -> None:
        """Free what the model holds (connections, ...); it may be used again afterwards."""
        ...


class ApiChatModel:
    """A chat model behind an OpenAI-compatible API (`ChatClient`: retries, rate limit, keys)."""

    def __init__(
        self,
        model: str,
        decoding: Decoding | None = None,
        extra_body: dict[str, Any] | None = None,
        **client: Unpack[ClientOptions],
    ):
        self.model = model
        self.decoding = decoding or Decoding()
        self.extra_body = extra_body or {}
        self.client = ChatClient(**client)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(
            backend="openai",
            model=self.model,
            base_url=self.client.base_url,
            decoding=self.decoding,
            concurrency=self.client.concurrency,
        )

    def _open(self) -> aiohttp.ClientSession:
        """The session of the running event loop (a session cannot move between loops)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = self.client.session()
            self._loop = loop
        return self._session

    def body(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """The chat-completions request `chat` sends for these arguments (a batch API takes
        the same)."""
        decoding = self.decoding
        if max_tokens is not None:
            decoding = decoding.model_copy(update={"max_tokens": max_tokens})
        chat = with_system_prompt(messages, decoding)
        seed = seed if seed is not None else decoding.seed
        return chat_body(self.model, chat, decoding, seed, self.extra_body)

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        seed: int | None = None,
    ) -> Reply:
        body = self.body(messages, max_tokens=max_tokens, seed=seed)
        return await self.client.complete(self._open(), body)

    async def aclose(self) -> None:
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None
