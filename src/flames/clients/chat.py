"""The HTTP client for OpenAI-compatible chat-completions APIs (OpenAI, vLLM and SGLang servers,
Ollama, ...), shared by generation backends and LLM judges: bounded retries with backoff,
Retry-After, a rate limit, key masking, and connections kept in step with their requests.

Requests go out over one aiohttp session. aiohttp is used rather than the openai SDK because
the client's own cost per request bounds throughput against fast local servers:
bench/generation.py measures it. Connections are kept alive, but one is reused only while it is
in step with its requests (`CleanConnector`) and, by default, only after a reply that names its
request (`keep_alive`).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import secrets
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, Literal, TypedDict, TypeVar

import aiohttp

from flames._util.aio import stream_concurrently
from flames._util.redaction import Redactor
from flames._util.text import storable, without_surrogates
from flames.clients.body import (
    ACCEPT_ENCODING,
    DEFAULT_MAX_REPLY_BYTES,
    BadEncoding,
    ReplyTooLarge,
    read_limited,
)
from flames.clients.endpoint import DEFAULT_BASE_URL, Endpoint, api_key
from flames.errors import EndpointUnreachable
from flames.runs.records import Decoding, Message, chat_messages

T = TypeVar("T")
R = TypeVar("R")

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
"""Besides every 5xx status. Other 4xx statuses are final: retrying cannot fix the request."""
ERROR_CHARS = 1000
"""Recorded error messages are cut to this length, after secrets are masked."""
UNREACHABLE_ATTEMPTS = 2
"""Connection failures (DNS, refused) before the server ever answered end the run this soon."""
REQUEST_ID_HEADER = "X-Request-Id"
"""Sent with a fresh id per request. vLLM names its reply after it (``"id": "chatcmpl-<it>"``,
vllm/entrypoints/openai/serving_chat.py, `_base_request_id`), and proxies often echo it back as
a header; a reply naming another request's id is out of step with its connection."""
REQUEST_ID = re.compile(r"flames-[0-9a-f]{16}")
KeepAlive = Literal["auto", "always", "never"]


class ApiError(Exception):
    """A request that failed; `retryable` says whether trying again may help.

    `unreachable` marks failures to connect at all (DNS, refused, TLS), as opposed to a server
    that answered badly.
    """

    def __init__(
        self,
        message: str,
        retryable: bool,
        retry_after: float | None = None,
        unreachable: bool = False,
    ):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.unreachable = unreachable


class CleanConnector(aiohttp.TCPConnector):
    """Keep-alive, but a connection is reused only while it is in step with its requests.

    aiohttp reuses any open pooled connection, and bytes a server sent while it was idle (an
    unsolicited extra reply) stay queued on it, to be read as the next request's reply. Such a
    connection, or one left in any other unexpected state (`should_close`), is closed instead
    of reused. An extra reply that arrives only after the next request went out cannot be told
    from that request's reply by HTTP/1.1 alone; where the server echoes the request id
    (`REQUEST_ID_HEADER`), the client sees it and closes the connection with `done`.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._carrying: dict[str, Any] = {}
        """Request id -> the protocol (connection) it was sent on, while it is in flight."""

    async def connect(self, req: aiohttp.ClientRequest, *args: Any, **kwargs: Any) -> Any:
        while True:
            connection = await super().connect(req, *args, **kwargs)
            protocol = connection.protocol
            if protocol is not None and not protocol.should_close:
                request_id = req.headers.get(REQUEST_ID_HEADER)
                if request_id:
                    self._carrying[request_id] = protocol
                return connection
            connection.close()

    def done(self, request_id: str, in_step: bool = True) -> None:
        """The request's reply was read; close its connection if the reply was not its own."""
        protocol = self._carrying.pop(request_id, None)
        if protocol is not None and not in_step:
            protocol.close()


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


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date), or None.

    A value that is not a finite, non-negative delay (``nan``, ``inf``, ``-1``, a date in the
    past, garbage) is ignored: the client's own backoff applies.
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            date = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if date.tzinfo is None:
            return None
        seconds = (date - (now or datetime.now(UTC))).total_seconds()
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def connect_failure(exc: aiohttp.ClientConnectorError) -> str:
    """A short reason for a failure to connect at all."""
    cause = getattr(exc, "os_error", None)
    if isinstance(cause, socket.gaierror):
        return f"host name not found ({cause.strerror})"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}"


def other_request(request_id: str, *echoes: object) -> str | None:
    """The id of another request of ours that a reply names (body id or header), if any."""
    for echo in echoes:
        for found in REQUEST_ID.findall(str(echo or "")):
            if found != request_id:
                return found
    return None


MAX_TOKEN_COUNT = 10**9
"""Token counts above this are not believed (no request holds a billion tokens): unknown."""
MAX_FINISH_REASON = 64
"""finish_reason is a short word ("stop", "length", ...); anything longer is not believed."""
LONE_SURROGATES = "text with lone surrogates (replaced by U+FFFD)"
NOT_UTF8 = "bytes that are not UTF-8 (replaced by U+FFFD)"
BAD_USAGE = "a usage that is not an object (token counts recorded as unknown)"
BAD_TOKENS = "token counts that are not whole numbers from 0 to 10^9 (recorded as unknown)"
BAD_FINISH = "a finish_reason that is not a short text (recorded as unknown)"
"""What `parse_completion` repairs in a reply it keeps, as counted in `ChatClient.repairs`."""


def token_count(value: object) -> int | None:
    """A reported token count if it is a whole number in 0..MAX_TOKEN_COUNT, else None."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= MAX_TOKEN_COUNT else None


def _number(digits: str) -> int | float:
    """An integer of the reply's JSON; one too long to be a count is infinite (Python refuses
    to read integers of over 4,300 digits, and no count has more than a few)."""
    return int(digits) if len(digits) <= 32 else math.inf


def _malformed(why: str, text: str) -> ApiError:
    return ApiError(f"malformed response ({why}): {text}", retryable=True)


def parse_completion(status: int, body: bytes, headers: Any) -> dict[str, Any]:
    """The first choice of a chat completion, validated; raise ApiError for anything else.

    A reply is data from outside: its shape and every field's type, range and size are checked
    before anything uses it (`reply_json`, `completion_fields`). Messages hold the whole body:
    they are masked before they are cut (`ChatClient`).
    """
    if status != 200:
        text = body.decode("utf-8", "replace")
        retryable = status >= 500 or status in RETRYABLE_STATUS
        raise ApiError(f"HTTP {status}: {text}", retryable, retry_after(headers.get("retry-after")))
    data, text, repaired = reply_json(body)
    return completion_fields(data, text, repaired)


def reply_json(body: bytes) -> tuple[Any, str, list[str]]:
    """A reply's body read as JSON: the data, its text, and what was repaired (bytes that are
    not UTF-8); a malformed-response ApiError for a body that is not JSON, holds a number too
    long to read or is nested too deeply."""
    repaired: list[str] = []
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("utf-8", "replace")
        repaired.append(NOT_UTF8)
    try:
        data = json.loads(text, parse_int=_number)
    except RecursionError:
        raise _malformed("JSON nested too deeply", text[:200]) from None
    except ValueError as exc:  # not JSON, or a number too long to read
        raise _malformed(repr(exc), text) from None
    return data, text, repaired


def completion_fields(data: Any, text: str, repaired: Sequence[str] = ()) -> dict[str, Any]:
    """The first choice of a chat completion read as JSON (`data`, from `text`), validated.

    Without text content it is a malformed-response error (retryable). Fields that only
    describe the answer (usage, finish_reason, id) are recorded as unknown (None) when they
    are not what the protocol says, and lone surrogates in the text are replaced; each such
    repair is named in ``repaired`` (after those already made, given). Returns id, content,
    finish_reason, usage (prompt_tokens and completion_tokens, each an int or None) and
    repaired.
    """
    repaired = list(repaired)
    choices = data.get("choices") if isinstance(data, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise _malformed("no choices[0].message object", text)
    assert isinstance(choice, dict) and isinstance(data, dict)
    content = message.get("content")
    reason = choice.get("finish_reason")
    if reason is not None and not (isinstance(reason, str) and len(reason) <= MAX_FINISH_REASON):
        reason = None
        repaired.append(BAD_FINISH)
    if not isinstance(content, str) or not content:
        # An empty answer is treated as a failed one, even with finish_reason "stop".
        what = "empty content" if content == "" else "no content"
        raise ApiError(f"{what} in the response (finish_reason={reason})", retryable=True)
    content, replaced = without_surrogates(content)
    if reason is not None:
        reason, replaced_in_reason = without_surrogates(reason)
        replaced += replaced_in_reason
    if replaced:
        repaired.append(LONE_SURROGATES)
    usage = data.get("usage")
    counts: dict[str, int | None] = {"prompt_tokens": None, "completion_tokens": None}
    if isinstance(usage, dict):
        for name in counts:
            counts[name] = token_count(usage.get(name))
            if counts[name] is None and usage.get(name) is not None:
                repaired.append(BAD_TOKENS)
    elif usage is not None:
        repaired.append(BAD_USAGE)
    reply_id = data.get("id")
    return {
        "id": storable(reply_id) if isinstance(reply_id, str) else None,
        "content": content,
        "finish_reason": reason,
        "usage": counts,
        "repaired": list(dict.fromkeys(repaired)),
    }


def chat_request(
    model: str,
    prompt: str,
    decoding: Decoding,
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A chat-completions request for one prompt under `decoding` (settings left unset are not
    sent, so the server's defaults apply), with `extra` fields such as ``response_format``."""
    return chat_body(model, chat_messages(prompt, decoding), decoding, seed, extra)


def chat_body(
    model: str,
    messages: Sequence[Message],
    decoding: Decoding,
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A chat-completions request for a whole chat (`messages` as given: the decoding's system
    prompt is not added), under `decoding`'s other settings; see `chat_request`."""
    body: dict[str, Any] = {"model": model, "messages": list(messages)}
    for name, value in (
        ("temperature", decoding.temperature),
        ("top_p", decoding.top_p),
        ("max_tokens", decoding.max_tokens),
        ("seed", seed),
    ):
        if value is not None:
            body[name] = value
    return {**body, **(extra or {})}


class ClientOptions(TypedDict, total=False):
    """`ChatClient`'s settings, as the backend and the judge that build one pass them on."""

    base_url: str | None
    api_key_env: str
    concurrency: int
    requests_per_minute: float | None
    timeout: float
    max_attempts: int
    backoff_base: float
    backoff_max: float
    keep_alive: KeepAlive
    max_reply_bytes: int


@dataclass(frozen=True)
class Reply:
    """The outcome of one request after every attempt: the completion, or why it failed.

    Text in it is already masked: no form of the API key can appear.
    """

    content: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    attempts: int = 1
    latency_s: float = 0.0
    repaired: tuple[str, ...] = ()
    """What was repaired in the reply kept (`parse_completion`): lone surrogates replaced, token
    counts that are not valid recorded as unknown, ..."""


class ChatClient:
    """Chat completions with bounded retries; every failure is returned as a `Reply` error.

    The API key is read from the environment variable named `api_key_env` (required unless the
    server is on loopback or no variable is named); it is sent only in the Authorization header
    and masked, in every form, in errors and completions. A server that cannot be reached
    before it ever answered (DNS failure, refused connection) raises EndpointUnreachable rather
    than spending every request's retries.

    Every reply is read within `max_reply_bytes` (decompressed; `flames.clients.body`) and
    within `timeout`, counted from the request to the decoded reply, then validated as data
    (`parse_completion`); what was repaired in the replies kept is counted in `repairs`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        requests_per_minute: float | None = None,
        timeout: float = 120.0,
        max_attempts: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        keep_alive: KeepAlive = "auto",
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ):
        self.endpoint = Endpoint.parse(
            base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        )
        self.base_url = self.endpoint.display
        """Normalised, with credential-like query values masked: what manifests record."""
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.keep_alive = keep_alive
        """Whether a connection is used again for the next request: "auto", only after a reply
        that names its request's id (vLLM's do); "always"; or "never"."""
        self.max_reply_bytes = max_reply_bytes
        """A reply (its body, decompressed) longer than this is an error, never kept."""
        self.repairs: Counter[str] = Counter()
        """Replies kept after a repair, by what was repaired (`parse_completion`)."""
        self._limiter = RateLimiter(requests_per_minute) if requests_per_minute else None
        self._api_key = api_key(api_key_env, self.endpoint)
        self._redactor = Redactor([self._api_key, *self.endpoint.query_secrets])
        self._reached = False
        """Whether the server has answered anything yet (any HTTP status)."""

    def session(self) -> aiohttp.ClientSession:
        """A session whose pool holds `concurrency` connections, each kept in step (or closed
        after its reply: see `keep_alive`)."""
        connector = CleanConnector(limit=self.concurrency, force_close=self.keep_alive == "never")
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            auto_decompress=False,  # read_limited decompresses, within the byte limit
            headers={"Accept-Encoding": ACCEPT_ENCODING},
        )

    async def map(
        self, todo: Iterable[T], ask: Callable[[aiohttp.ClientSession, T], Awaitable[R]]
    ) -> AsyncIterator[R]:
        """`ask(session, x)` for each x of `todo`, `concurrency` at a time, over one session;
        results in completion order, with `todo` taken as it goes (`stream_concurrently`)."""
        async with self.session() as session:
            async for result in stream_concurrently(todo, partial(ask, session), self.concurrency):
                yield result

    def _delay(self, attempt: int, error: ApiError) -> float:
        """Exponential backoff with full jitter; a server's Retry-After is honoured, capped."""
        if error.retry_after is not None:
            return min(error.retry_after, self.backoff_max)
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    async def _post(self, session: aiohttp.ClientSession, body: dict[str, Any]) -> dict[str, Any]:
        request_id = f"flames-{secrets.token_hex(8)}"
        headers = {REQUEST_ID_HEADER: request_id}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        connector = session.connector
        assert isinstance(connector, CleanConnector)
        in_step = True
        try:
            # The whole attempt, reading and decompressing the body included, within --timeout.
            async with asyncio.timeout(self.timeout):
                async with session.post(
                    self.endpoint.chat_completions, json=body, headers=headers
                ) as response:
                    self._reached = True
                    try:
                        payload = await read_limited(response, self.max_reply_bytes)
                    except ReplyTooLarge as exc:
                        in_step = False  # the rest of the body is never read: close
                        raise ApiError(str(exc), retryable=False) from None
                    except BadEncoding as exc:
                        in_step = False
                        raise ApiError(f"malformed response: {exc}", retryable=True) from None
            echo = response.headers.get(REQUEST_ID_HEADER)
            # With "auto", only a connection whose reply names its request is used again.
            in_step = self.keep_alive == "always" or request_id in str(echo or "")
            stray = other_request(request_id, echo)
            if stray is None:
                result = parse_completion(response.status, payload, response.headers)
                in_step = in_step or request_id in str(result["id"] or "")
                stray = other_request(request_id, result["id"])
                if stray is None:
                    return result
            in_step = False
            raise ApiError(
                f"got the reply to another request ({stray}): the connection was out of step "
                "with its requests and is closed",
                retryable=True,
            )
        except aiohttp.ClientConnectorError as exc:
            raise ApiError(connect_failure(exc), retryable=True, unreachable=True) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise ApiError(f"{kind}: {exc}".rstrip(": "), retryable=True) from None
        finally:
            connector.done(request_id, in_step)

    def _unreachable(self, error: ApiError) -> EndpointUnreachable:
        return EndpointUnreachable(
            f"cannot reach {self.base_url}: {self._redactor.error(str(error))[:ERROR_CHARS]}. "
            "Check --base-url and that the server is up, then run the same command again."
        )

    async def complete(self, session: aiohttp.ClientSession, body: dict[str, Any]) -> Reply:
        """POST `body` to chat/completions, retrying what may succeed on a new attempt."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            if self._limiter:
                await self._limiter.wait()
            try:
                result = await self._post(session, body)
            except ApiError as error:
                if error.unreachable and not self._reached and attempt >= UNREACHABLE_ATTEMPTS:
                    raise self._unreachable(error) from None
                if not error.retryable or attempt >= self.max_attempts:
                    return Reply(
                        error=self._redactor.error(str(error))[:ERROR_CHARS],
                        attempts=attempt,
                        latency_s=round(time.monotonic() - started, 4),
                    )
                await asyncio.sleep(self._delay(attempt, error))
                continue
            usage = result["usage"]
            self.repairs.update(result["repaired"])
            return Reply(
                content=self._redactor.known(result["content"]),
                finish_reason=result["finish_reason"],
                prompt_tokens=usage["prompt_tokens"],
                completion_tokens=usage["completion_tokens"],
                attempts=attempt,
                latency_s=round(time.monotonic() - started, 4),
                repaired=tuple(result["repaired"]),
            )
