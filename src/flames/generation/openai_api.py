"""Any OpenAI-compatible chat-completions API as a generation backend: OpenAI, vLLM and SGLang
servers, Ollama, ... The HTTP side (retries, rate limit, key masking) is `flames.clients.chat`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any, Unpack

import aiohttp

from flames.clients.batch import BatchApi, BatchSettings, batch_api
from flames.clients.chat import ChatClient, ClientOptions, chat_body
from flames.data.dataset import Item
from flames.data.taxonomy import Dimension
from flames.generation.base import DEFAULT_MAX_TOKENS, Request, answer_of, sample_seed
from flames.runs.records import Answer, Decoding, GeneratorInfo

PROBE = Item(id="probe", dimension=Dimension.SAFETY, subcomponent="Mental harm", prompt="?")
"""A request to check that the batch API takes this backend's settings."""


class OpenAIBackend:
    """Concurrent chat completions for a run's requests; every failure is returned as an error
    answer (see `ChatClient` for retries, keys and unreachable servers)."""

    def __init__(
        self,
        model: str,
        decoding: Decoding | None = None,
        extra_body: dict[str, Any] | None = None,
        batch: BatchSettings | None = None,
        **client: Unpack[ClientOptions],
    ):
        self.model = model
        self.client = ChatClient(**client)
        self.base_url = self.client.base_url
        self.decoding = decoding or Decoding()
        self.concurrency = self.client.concurrency
        self.extra_body = extra_body or {}
        """Extra request fields, e.g. ``{"response_format": {"type": "json_object"}}``."""
        self.batch = batch
        """Send the requests through the provider's batch API (`flames.clients.batch_jobs`)
        instead of one by one."""
        self._client_options = client
        # A provider that cannot take these requests is refused now, before anything runs.
        self._batch_api = self.batch_api().name if batch is not None else None

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(
            backend="openai",
            model=self.model,
            base_url=self.base_url,
            decoding=self.decoding,
            concurrency=self.concurrency,
            batch=self._batch_api,
        )

    def batch_api(self) -> BatchApi:
        """The batch API of this backend's endpoint (with `batch` set), its results validated
        and masked as the live client's replies are, and their repairs counted with them."""
        assert self.batch is not None
        default_max_tokens = self.decoding.max_tokens or DEFAULT_MAX_TOKENS
        api = batch_api(self.batch, self._client_options, default_max_tokens, self.client.repairs)
        api.request_line("check", self.request_body(Request(PROBE)))  # refused settings raise
        return api

    def request_body(self, request: Request) -> dict[str, Any]:
        seed = sample_seed(self.decoding.seed, request.sample)
        messages = request.messages(self.decoding)
        return chat_body(self.model, messages, self.decoding, seed, self.extra_body)

    async def _ask(self, session: aiohttp.ClientSession, request: Request) -> Answer:
        return answer_of(request, await self.client.complete(session, self.request_body(request)))

    async def stream(self, requests: Iterable[Request]) -> AsyncIterator[Answer]:
        """Answers in completion order; requests are taken as they go."""
        async for answer in self.client.map(requests, self._ask):
            yield answer
