"""Any OpenAI-compatible chat-completions API: OpenAI, vLLM and SGLang servers, Ollama, ...

Requests go out over one aiohttp session. aiohttp is used rather than the openai SDK because
the client's own cost per request bounds throughput against fast local servers:
bench/generation.py measures it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp

from flames.generation.base import Request, chat_messages, sample_seed
from flames.records import Answer, Decoding, GeneratorInfo

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
"""Besides every 5xx status. Other 4xx statuses are final: retrying cannot fix the request."""


class ApiError(Exception):
    """A request that failed; `retryable` says whether trying again may help."""

    def __init__(self, message: str, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


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


def _retry_after(headers: Any) -> float | None:
    try:
        return float(headers.get("retry-after", ""))
    except ValueError:
        return None


def parse_completion(status: int, body: bytes, headers: Any) -> dict[str, Any]:
    """The first choice of a chat completion; raise ApiError for anything else."""
    text = body.decode("utf-8", "replace")
    if status != 200:
        retryable = status >= 500 or status in RETRYABLE_STATUS
        raise ApiError(f"HTTP {status}: {text[:500]}", retryable, _retry_after(headers))
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        content = choice["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ApiError(f"malformed response ({exc!r}): {text[:200]}", retryable=True) from None
    if not isinstance(content, str):
        reason = choice.get("finish_reason")
        raise ApiError(f"no content in the response (finish_reason={reason})", retryable=True)
    return {
        "content": content,
        "finish_reason": choice.get("finish_reason"),
        "usage": data.get("usage") or {},
    }


class OpenAIBackend:
    """Concurrent chat completions with bounded retries; every failure is returned as an error.

    The API key is read from the environment variable named `api_key_env`; it is sent only in
    the Authorization header and masked in every recorded error message.
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
        extra_body: dict[str, Any] | None = None,
    ):
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self.decoding = decoding or Decoding()
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.extra_body = extra_body or {}
        """Extra request fields, e.g. ``{"response_format": {"type": "json_object"}}``."""
        self._limiter = RateLimiter(requests_per_minute) if requests_per_minute else None
        self._api_key = os.environ.get(api_key_env, "")

    @property
    def info(self) -> GeneratorInfo:
        return GeneratorInfo(
            backend="openai",
            model=self.model,
            base_url=self.base_url,
            decoding=self.decoding,
            concurrency=self.concurrency,
        )

    def request_body(self, prompt: str, sample: int = 0) -> dict[str, Any]:
        d = self.decoding
        body: dict[str, Any] = {"model": self.model, "messages": chat_messages(prompt, d)}
        for name, value in (
            ("temperature", d.temperature),
            ("top_p", d.top_p),
            ("max_tokens", d.max_tokens),
            ("seed", sample_seed(d.seed, sample)),
        ):
            if value is not None:
                body[name] = value
        return {**body, **self.extra_body}

    def _mask(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _delay(self, attempt: int, error: ApiError) -> float:
        """Exponential backoff with full jitter; a server's Retry-After is honoured."""
        if error.retry_after is not None:
            return min(error.retry_after, self.backoff_max)
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    async def _post(self, session: aiohttp.ClientSession, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        url = self.base_url.rstrip("/") + "/chat/completions"
        try:
            async with session.post(url, json=body, headers=headers) as response:
                payload = await response.read()
                return parse_completion(response.status, payload, response.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise ApiError(f"{kind}: {exc}".rstrip(": "), retryable=True) from None

    async def _ask(self, session: aiohttp.ClientSession, request: Request) -> Answer:
        body = self.request_body(request.item.prompt, request.sample)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            if self._limiter:
                await self._limiter.wait()
            try:
                result = await self._post(session, body)
            except ApiError as error:
                if not error.retryable or attempt >= self.max_attempts:
                    return Answer(
                        item_id=request.item.id,
                        sample=request.sample,
                        status="error",
                        error=self._mask(str(error))[:1000],
                        latency_s=round(time.monotonic() - started, 4),
                        attempts=attempt,
                    )
                await asyncio.sleep(self._delay(attempt, error))
                continue
            usage = result["usage"]
            return Answer(
                item_id=request.item.id,
                sample=request.sample,
                status="ok",
                response=result["content"],
                finish_reason=result["finish_reason"],
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                latency_s=round(time.monotonic() - started, 4),
                attempts=attempt,
            )

    async def stream(self, requests: Sequence[Request]) -> AsyncIterator[Answer]:
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            slots = asyncio.Semaphore(self.concurrency)

            async def bounded(request: Request) -> Answer:
                async with slots:
                    return await self._ask(session, request)

            tasks = [asyncio.create_task(bounded(r)) for r in requests]
            try:
                for next_done in asyncio.as_completed(tasks):
                    yield await next_done
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
