"""Any OpenAI-compatible chat-completions API: OpenAI, vLLM and SGLang servers, Ollama, ..."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import openai

from flames.generation.base import Request, chat_messages
from flames.records import Answer, Decoding, GeneratorInfo

NOT_RETRYABLE = (
    openai.BadRequestError,
    openai.AuthenticationError,
    openai.PermissionDeniedError,
    openai.NotFoundError,
    openai.UnprocessableEntityError,
)


class EmptyResponse(Exception):
    """The API answered without any message content."""


class RateLimiter:
    """Spaces request starts to at most `per_minute` a minute."""

    def __init__(self, per_minute: float):
        self.interval = 60.0 / per_minute
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        await asyncio.sleep(start - now)


class OpenAIBackend:
    """Concurrent chat completions with bounded retries; every failure is returned as an error.

    The API key is read from the environment variable named `api_key_env` and is never stored.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        decoding: Decoding | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        requests_per_minute: float | None = None,
        timeout: float = 120.0,
        max_attempts: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
    ):
        self.model = model
        self.base_url = base_url
        self.decoding = decoding or Decoding()
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._limiter = RateLimiter(requests_per_minute) if requests_per_minute else None
        self._api_key = os.environ.get(api_key_env) or "EMPTY"

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(
            backend="openai", model=self.model, base_url=self.base_url, decoding=self.decoding
        )

    def _request_args(self, prompt: str) -> dict[str, Any]:
        d = self.decoding
        args: dict[str, Any] = {"model": self.model, "messages": chat_messages(prompt, d)}
        for name, value in (
            ("temperature", d.temperature),
            ("top_p", d.top_p),
            ("max_tokens", d.max_tokens),
            ("seed", d.seed),
        ):
            if value is not None:
                args[name] = value
        return args

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        if self._api_key != "EMPTY":
            text = text.replace(self._api_key, "***")
        return text[:1000]

    def _delay(self, attempt: int, exc: BaseException) -> float:
        """Exponential backoff with full jitter; a server's Retry-After is honoured."""
        response = getattr(exc, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after:
            try:
                return min(float(retry_after), self.backoff_max)
            except ValueError:
                pass
        cap = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return random.uniform(0, cap)

    async def _ask(self, client: openai.AsyncOpenAI, request: Request) -> Answer:
        args = self._request_args(request.item.prompt)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            if self._limiter:
                await self._limiter.wait()
            try:
                response = await client.chat.completions.create(**args)
                choice = response.choices[0]
                if choice.message.content is None:
                    raise EmptyResponse(f"no content (finish_reason={choice.finish_reason})")
                usage = response.usage
                return Answer(
                    item_id=request.item.id,
                    sample=request.sample,
                    status="ok",
                    response=choice.message.content,
                    finish_reason=choice.finish_reason,
                    prompt_tokens=usage.prompt_tokens if usage else None,
                    completion_tokens=usage.completion_tokens if usage else None,
                    latency_s=round(time.monotonic() - started, 4),
                    attempts=attempt,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is recorded, never raised per item
                if isinstance(exc, NOT_RETRYABLE) or attempt >= self.max_attempts:
                    return Answer(
                        item_id=request.item.id,
                        sample=request.sample,
                        status="error",
                        error=self._describe(exc),
                        latency_s=round(time.monotonic() - started, 4),
                        attempts=attempt,
                    )
                await asyncio.sleep(self._delay(attempt, exc))

    async def stream(self, requests: Sequence[Request]) -> AsyncIterator[Answer]:
        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )
        async with openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self._api_key,
            max_retries=0,
            timeout=self.timeout,
            http_client=httpx.AsyncClient(limits=limits, timeout=self.timeout),
        ) as client:
            slots = asyncio.Semaphore(self.concurrency)

            async def bounded(request: Request) -> Answer:
                async with slots:
                    return await self._ask(client, request)

            tasks = [asyncio.create_task(bounded(r)) for r in requests]
            try:
                for next_done in asyncio.as_completed(tasks):
                    yield await next_done
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
