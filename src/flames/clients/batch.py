"""Provider batch APIs behind one interface: OpenAI's Batch API (and the OpenAI-compatible batch
APIs of DashScope and others) and Anthropic's Message Batches.

Both take many requests at once, answer within 24 hours at half the live price, and return the
results in any order, each named by the ``custom_id`` it was sent with. OpenAI's takes a JSONL
file uploaded first (``POST /files``, then ``POST /batches``) and returns output and error
files; Anthropic's takes the requests inline (``POST /messages/batches``) and returns one JSONL
of results. A request is the chat-completions body the live client sends (`chat_body`), turned
into Anthropic's Messages parameters where needed; every result goes through the live client's
validation (`completion_fields`) and key masking, within the live client's reply size limit
(`max_reply_bytes`, for each request's result), its repairs counted with the live client's.

Creating a file or a batch is not idempotent: a reply lost after the server accepted it cannot
be told from a request that never arrived. Such a failure is raised as `Uncertain`, never
retried blindly: the caller looks the object up first (`find_upload`, `find`).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

import aiohttp
from yarl import URL

from flames._util.redaction import MASK, Redactor
from flames._util.text import without_surrogates
from flames.clients.body import (
    ACCEPT_ENCODING,
    DEFAULT_MAX_REPLY_BYTES,
    BadEncoding,
    ReplyTooLarge,
    decoded_chunks,
    read_limited,
)
from flames.clients.chat import (
    ERROR_CHARS,
    RETRYABLE_STATUS,
    UNREACHABLE_ATTEMPTS,
    ApiError,
    ClientOptions,
    Reply,
    completion_fields,
    connect_failure,
    reply_json,
    retry_after,
)
from flames.clients.endpoint import DEFAULT_BASE_URL, Endpoint, api_key
from flames.errors import EndpointUnreachable, UsageError
from flames.runs.records import BatchJob, Price

BatchApiName = Literal["auto", "openai", "anthropic"]
ANTHROPIC_VERSION = "2023-06-01"
"""The ``anthropic-version`` header: the API version the Message Batches endpoints document."""
COMPLETION_WINDOW = "24h"
"""OpenAI's only completion window (batch_create_params.py in openai/openai-python)."""
CHAT_ENDPOINT = "/v1/chat/completions"
"""The endpoint of every request of an OpenAI batch, as its input file and `POST /batches` name
it (OpenAI's and DashScope's batch guides)."""
LOOKUP_MARGIN_S = 600.0
"""How long before a submission began a batch found on the server may have been created and
still be taken for it (clocks differ)."""
LOOKUP_PAGES = 50
"""Pages of the provider's list read at most when looking for a file or batch."""


@dataclass(frozen=True)
class Limits:
    """What one batch job may hold."""

    requests: int
    bytes: int
    """Bytes of the requests as sent: the JSONL file, or Anthropic's request body."""
    line_bytes: int | None = None
    """Bytes of one request, where the provider limits it."""


OPENAI_LIMITS = Limits(requests=50_000, bytes=200_000_000)
"""'The file can contain up to 50,000 requests, and can be up to 200 MB in size': input_file_id
in openai/openai-python, src/openai/types/batch_create_params.py (and OpenAI's API reference,
create batch). Megabytes counted as 10^6 bytes, the smaller reading."""
ANTHROPIC_LIMITS = Limits(requests=100_000, bytes=256_000_000)
"""'A Message Batch is limited to either 100,000 Message requests or 256 MB in size, whichever is
reached first': Anthropic's batch processing guide (docs.anthropic.com, build-with-claude,
batch processing, 'Batch limitations')."""
DASHSCOPE_LIMITS = Limits(requests=50_000, bytes=100_000_000, line_bytes=1_000_000)
"""'单个Batch任务最多包含5万个请求，Batch文件的大小最大100 MB，文件中单行的大小最大 1 MB':
Alibaba Cloud Model Studio, OpenAI兼容-Batch (help.aliyun.com, batch-interfaces-compatible-with-
openai). A newer page may allow more; the smaller limits are kept."""


@dataclass(frozen=True)
class BatchSettings:
    """How a backend or judge sends its requests through a batch API."""

    api: BatchApiName = "auto"
    """'openai', 'anthropic', or 'auto': Anthropic's for api.anthropic.com, else OpenAI's."""
    max_requests: int | None = None
    """Requests per job at most (default: the provider's limit)."""
    poll: float = 60.0
    """The longest wait between two status checks, in seconds (they start at a second or
    less, and double)."""
    price: Price | None = None
    """What the model's tokens cost, to show the cost live against batch."""


@dataclass(frozen=True)
class RemoteBatch:
    """A batch as the provider describes it."""

    id: str
    status: str
    ended: bool
    counts: dict[str, int]
    created_at: float
    """Unix time."""
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    errors: str | None = None
    """Why the whole batch failed (OpenAI's 'failed': its input was refused)."""

    @property
    def total(self) -> int:
        if "total" in self.counts:
            return self.counts["total"]
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        """Requests finished, well or not."""
        if "total" in self.counts:
            return self.counts.get("completed", 0) + self.counts.get("failed", 0)
        return self.total - self.counts.get("processing", 0)


class Uncertain(ApiError):
    """A create request that failed after the server may have acted on it."""


def detect_api(choice: BatchApiName, endpoint: Endpoint) -> Literal["openai", "anthropic"]:
    if choice != "auto":
        return choice
    host = (endpoint.url.host or "").lower()
    return "anthropic" if host == "anthropic.com" or host.endswith(".anthropic.com") else "openai"


def provider_limits(api: str, endpoint: Endpoint) -> Limits:
    if api == "anthropic":
        return ANTHROPIC_LIMITS
    host = (endpoint.url.host or "").lower()
    return DASHSCOPE_LIMITS if host.endswith("dashscope.aliyuncs.com") else OPENAI_LIMITS


def _unix(value: Any) -> float:
    """A timestamp as Unix time: OpenAI's are seconds, Anthropic's RFC 3339 text."""
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def anthropic_params(body: dict[str, Any], default_max_tokens: int) -> dict[str, Any]:
    """A chat-completions body as Anthropic's Messages parameters: system turns become the
    `system` field; `max_tokens`, which Anthropic requires, defaults to `default_max_tokens`.
    Settings it has no equivalent for are refused rather than dropped."""
    unsupported = sorted(set(body) - {"model", "messages", "max_tokens", "temperature", "top_p"})
    if unsupported:
        raise UsageError(
            f"Anthropic's Message Batches take no {', '.join(unsupported)} "
            "(--gen-seed, --json-mode): leave them out, or send these requests live"
        )
    system = [m["content"] for m in body["messages"] if m["role"] == "system"]
    params: dict[str, Any] = {
        "model": body["model"],
        "max_tokens": body.get("max_tokens") or default_max_tokens,
        "messages": [m for m in body["messages"] if m["role"] != "system"],
    }
    if system:
        params["system"] = "\n\n".join(system)
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            params[name] = body[name]
    return params


REQUESTS_OPEN, REQUESTS_CLOSE = b'{"requests": [', b"]}"
"""Around the requests of an Anthropic batch: its body is one JSON object."""
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}
"""Anthropic's stop reasons as chat completions name them."""


def completion_of_message(message: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic Message as a chat completion, for `parse_completion`: its text blocks
    joined, its stop reason and token usage renamed (a message without text has no content)."""
    if not isinstance(message, dict):
        message = {}
    blocks = message.get("content")
    blocks = blocks if isinstance(blocks, list) else []
    texts = [b.get("text") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
    content = "".join(t for t in texts if isinstance(t, str)) if texts else None
    usage = message.get("usage")
    if isinstance(usage, dict):  # else kept as it is, for the validation to find it wrong
        usage = {
            "prompt_tokens": usage.get("input_tokens"),
            "completion_tokens": usage.get("output_tokens"),
        }
    reason = message.get("stop_reason")
    if isinstance(reason, str):
        reason = STOP_REASONS.get(reason, reason)
    return {
        "id": message.get("id"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": reason,
            }
        ],
        "usage": usage,
    }


async def jsonl_lines(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes | None]:
    """The non-blank lines of a JSONL body as its decoded `chunks` stream in; None for a line
    longer than `limit` bytes, of which no more than `limit` (and a chunk) is ever held."""
    pending = b""
    skipping = False
    async for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if skipping:  # the end of a line too long
                skipping = False
            elif len(line) > limit:
                yield None
            elif line.strip():
                yield line
        if len(pending) > limit:
            if not skipping:
                yield None
            skipping, pending = True, b""
    if pending.strip() and not skipping:
        yield pending if len(pending) <= limit else None


class BatchApi:
    """The calls a batch job needs, over one aiohttp session: requests that read are retried
    with backoff (Retry-After honoured); those that create are not (`Uncertain`). The API key
    is read from `api_key_env` as the live client reads it, sent only in a header, and masked
    in every message and result. Every body is read within `max_reply_bytes` (a results
    download within that much per request) and decoded as the live client decodes it; results
    are validated as live replies are, their repairs counted in `repairs`."""

    name: Literal["openai", "anthropic"]

    def __init__(
        self,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 300.0,
        max_attempts: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        repairs: Counter[str] | None = None,
    ):
        self.endpoint = Endpoint.parse(
            base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        )
        self.base_url = self.endpoint.display
        self.api_key_env = api_key_env
        self.limits = provider_limits(self.name, self.endpoint)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_reply_bytes = max_reply_bytes
        self.repairs: Counter[str] = Counter() if repairs is None else repairs
        """Results kept after a repair, by what was repaired (the live client's counter, when
        it is shared)."""
        self.oversized = 0
        """Result lines of the latest download passed over: longer than `max_reply_bytes`."""
        self._api_key = api_key(api_key_env, self.endpoint)
        self._redactor = Redactor([self._api_key, *self.endpoint.query_secrets])
        self._session: aiohttp.ClientSession | None = None
        self._reached = False

    # -- plumbing ------------------------------------------------------------------------------

    async def __aenter__(self) -> BatchApi:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(limit=8, force_close=True),
            auto_decompress=False,  # bodies are decoded within the byte limit (clients.body)
            headers={"Accept-Encoding": ACCEPT_ENCODING},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, *parts: str) -> URL:
        """The endpoint's URL with `parts` added to its path (its query kept)."""
        path = "/".join([self.endpoint.url.path.rstrip("/"), *parts])
        return self.endpoint.url.with_path(path).with_query(self.endpoint.url.query)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def masked(self, text: str) -> str:
        return self._redactor.error(text)[:ERROR_CHARS]

    def _delay(self, attempt: int, error: ApiError) -> float:
        if error.retry_after is not None:
            return min(error.retry_after, self.backoff_max)
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    async def _once(
        self,
        method: str,
        url: URL,
        read: Callable[[aiohttp.ClientResponse], Awaitable[Any]],
        creates: bool,
        content_type: str | None,
        **kwargs: Any,
    ) -> Any:
        """One request; `read` takes the response once its status is 200."""
        assert self._session is not None, "use BatchApi in 'async with'"
        headers = self.headers()
        if content_type:
            headers["Content-Type"] = content_type
        try:
            async with self._session.request(method, url, headers=headers, **kwargs) as response:
                self._reached = True
                if response.status != 200:
                    text = await self._error_text(response)
                    retryable = response.status >= 500 or response.status in RETRYABLE_STATUS
                    # A 5xx after a create may come from a proxy after the server acted on it.
                    kind = Uncertain if creates and response.status >= 500 else ApiError
                    raise kind(
                        f"HTTP {response.status}: {text}",
                        retryable,
                        retry_after(response.headers.get("retry-after")),
                    )
                return await read(response)
        except aiohttp.ClientConnectorError as exc:  # nothing was sent: safe to send again
            raise ApiError(connect_failure(exc), retryable=True, unreachable=True) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            error_type = Uncertain if creates else ApiError
            raise error_type(f"{kind}: {exc}".rstrip(": "), retryable=True) from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # a 200, not as it says
            raise ApiError(f"malformed response ({exc!r})", retryable=True) from None
        except ReplyTooLarge as exc:
            raise ApiError(str(exc), retryable=False) from None
        except BadEncoding as exc:
            raise ApiError(f"malformed response: {exc}", retryable=True) from None

    async def _error_text(self, response: aiohttp.ClientResponse) -> str:
        """An error reply's body as text, read within the byte limit."""
        try:
            body = await read_limited(response, self.max_reply_bytes)
        except (ReplyTooLarge, BadEncoding) as exc:
            return f"(body not shown: {exc})"
        return body.decode("utf-8", "replace")

    async def call(
        self,
        method: str,
        url: URL,
        read: Callable[[aiohttp.ClientResponse], Awaitable[Any]] | None = None,
        creates: bool = False,
        content_type: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """A request, retried while retrying may help; a create's uncertain failure is raised
        at once (`Uncertain`), as is a final one (ApiError, masked)."""

        async def json_body(response: aiohttp.ClientResponse) -> Any:
            data, _, _ = reply_json(await read_limited(response, self.max_reply_bytes))
            return data

        attempt = 0
        while True:
            attempt += 1
            try:
                body = kwargs.get("data")
                if hasattr(body, "seek"):
                    body.seek(0)  # a file sent again is sent whole
                return await self._once(
                    method, url, read or json_body, creates, content_type, **kwargs
                )
            except Uncertain as error:
                raise Uncertain(self.masked(str(error)), True) from None
            except ApiError as error:
                if error.unreachable and not self._reached and attempt >= UNREACHABLE_ATTEMPTS:
                    raise EndpointUnreachable(
                        f"cannot reach {self.base_url}: {self.masked(str(error))}. Check "
                        "--base-url and that the server is up, then run the same command again "
                        "(the batch jobs are kept in the run)."
                    ) from None
                if not error.retryable or attempt >= self.max_attempts:
                    raise ApiError(self.masked(str(error)), error.retryable) from None
                await asyncio.sleep(self._delay(attempt, error))

    async def pages(self, url: URL, cursor: str, since: float) -> AsyncIterator[dict[str, Any]]:
        """The objects of a list endpoint, newest first, until one was created before `since`
        (or LOOKUP_PAGES pages were read); `cursor` names the query parameter of the next page."""
        params: dict[str, str] = {"limit": "100"}
        for _ in range(LOOKUP_PAGES):
            page = await self.call("GET", url.update_query(params))
            data = page.get("data") or []
            for obj in data:
                yield obj
            if not data or not page.get("has_more"):
                return
            if min(_unix(o.get("created_at")) for o in data) < since:
                return
            params[cursor] = str(page.get("last_id") or data[-1]["id"])

    async def lines(self, url: URL) -> AsyncIterator[bytes | None]:
        """The lines of a JSONL download as they stream in (None for one longer than
        `max_reply_bytes`); ApiError (retryable) if it is cut."""
        assert self._session is not None, "use BatchApi in 'async with'"
        try:
            async with self._session.get(url, headers=self.headers()) as response:
                if response.status != 200:
                    text = await self._error_text(response)
                    retryable = response.status >= 500 or response.status in RETRYABLE_STATUS
                    raise ApiError(
                        self.masked(f"HTTP {response.status}: {text}"),
                        retryable,
                        retry_after(response.headers.get("retry-after")),
                    )
                async for line in jsonl_lines(decoded_chunks(response), self.max_reply_bytes):
                    yield line
        except (aiohttp.ClientError, TimeoutError) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise ApiError(self.masked(f"{kind}: {exc}".rstrip(": ")), retryable=True) from None
        except BadEncoding as exc:
            raise ApiError(self.masked(f"malformed download: {exc}"), retryable=True) from None

    async def parsed(self, url: URL) -> AsyncIterator[tuple[str, Reply]]:
        """(custom_id, reply) for each line of a results download that names a request; a line
        that cannot be read, or is longer than the limit (counted in `oversized`), names none."""
        self.oversized = 0
        async for line in self.lines(url):
            if line is None:
                self.oversized += 1
                continue
            try:
                data, _, repaired = reply_json(line)
                found = self.result_of(data) if isinstance(data, dict) else None
            except (ApiError, ValueError, AttributeError, TypeError):
                found = None  # unreadable: its request stays without a result
            if found is None:
                continue
            custom_id, reply = found
            if repaired and reply.error is None:  # bytes that were not UTF-8, replaced
                self.repairs.update(repaired)
                repairs = tuple(dict.fromkeys((*repaired, *reply.repaired)))
                reply = replace(reply, repaired=repairs)
            yield custom_id, reply

    def result_of(self, line: dict[str, Any]) -> tuple[str, Reply] | None:
        """(custom_id, the reply it makes) for one line of results; None for a line that names
        no request."""
        raise NotImplementedError

    def reply(self, status: object, body: Any) -> Reply:
        """A result's response, validated as a live reply is (`completion_fields`) and masked;
        what was repaired is counted in `repairs`."""
        text = json.dumps(body, ensure_ascii=False, default=str)
        if status != 200:
            return self.failed(f"HTTP {status}: {text}")
        try:
            result = completion_fields(body, text)
        except ApiError as error:
            return self.failed(str(error))
        usage = result["usage"]
        self.repairs.update(result["repaired"])
        return Reply(
            content=self._redactor.known(result["content"]),
            finish_reason=result["finish_reason"],
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            repaired=tuple(result["repaired"]),
        )

    def failed(self, what: str) -> Reply:
        """A request's failure, its message masked and storable (lone surrogates replaced)."""
        return Reply(error=self.masked(without_surrogates(what)[0]))

    # -- what each provider implements ---------------------------------------------------------

    needs_upload = False

    def request_line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        """One request as the provider takes it, JSON without a newline."""
        raise NotImplementedError

    def frame(self, lines: int, line_bytes: int) -> int:
        """Bytes of a job holding `lines` requests of `line_bytes` bytes in all."""
        raise NotImplementedError

    def write_job(self, lines: Iterable[bytes], out: BinaryIO) -> int:
        """Write a job's requests (`request_line`s) as the provider takes them; their bytes."""
        raise NotImplementedError

    async def upload(self, name: str, path: Path) -> str:
        raise NotImplementedError

    async def find_upload(self, name: str, size: int, since: float) -> str | None:
        raise NotImplementedError

    async def create(self, job: BatchJob, path: Path) -> RemoteBatch:
        raise NotImplementedError

    async def find(self, job: BatchJob) -> list[RemoteBatch]:
        """Batches on the server that may be `job` (created once its submission began), the
        likeliest first; for OpenAI, the one made from its input file."""
        raise NotImplementedError

    async def retrieve(self, batch_id: str) -> RemoteBatch:
        raise NotImplementedError

    async def cancel(self, batch_id: str) -> RemoteBatch:
        raise NotImplementedError

    def results(self, batch: RemoteBatch) -> AsyncIterator[tuple[str, Reply]]:
        """(custom_id, reply) for each result of an ended batch, in the provider's order."""
        raise NotImplementedError


class OpenAIBatchApi(BatchApi):
    """OpenAI's Batch API: ``POST /files`` (purpose ``batch``), ``POST /batches``, ``GET
    /batches/{id}``, ``POST /batches/{id}/cancel``, ``GET /files/{id}/content``; DashScope's
    OpenAI-compatible batch API is the same."""

    name = "openai"
    needs_upload = True

    def request_line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        line = {"custom_id": custom_id, "method": "POST", "url": CHAT_ENDPOINT, "body": body}
        return json.dumps(line, ensure_ascii=False).encode("utf-8")

    def frame(self, lines: int, line_bytes: int) -> int:
        return line_bytes + lines  # a newline after each

    def write_job(self, lines: Iterable[bytes], out: BinaryIO) -> int:
        size = 0
        for line in lines:
            size += out.write(line + b"\n")
        return size

    @staticmethod
    def batch_of(data: dict[str, Any]) -> RemoteBatch:
        status = str(data.get("status"))
        errors = (data.get("errors") or {}).get("data") or []
        return RemoteBatch(
            id=str(data["id"]),
            status=status,
            ended=status in ("completed", "failed", "expired", "cancelled"),
            counts={k: int(v) for k, v in (data.get("request_counts") or {}).items()},
            created_at=_unix(data.get("created_at")),
            input_file_id=data.get("input_file_id"),
            output_file_id=data.get("output_file_id"),
            error_file_id=data.get("error_file_id"),
            metadata=data.get("metadata") or {},
            errors="; ".join(
                f"{e.get('code')}: {e.get('message')}"
                + (f" (line {e['line']})" if e.get("line") else "")
                for e in errors
            )
            or None,
        )

    async def upload(self, name: str, path: Path) -> str:
        with path.open("rb") as fh:
            form = aiohttp.FormData()
            form.add_field("purpose", "batch")
            form.add_field("file", fh, filename=name, content_type="application/jsonl")
            data = await self.call("POST", self.url("files"), creates=True, data=form)
        return str(data["id"])

    async def find_upload(self, name: str, size: int, since: float) -> str | None:
        url = self.url("files").update_query(purpose="batch", order="desc")
        async for found in self.pages(url, "after", since):
            if found.get("filename") == name and found.get("bytes") in (size, None):
                return str(found["id"])
        return None

    async def create(self, job: BatchJob, path: Path) -> RemoteBatch:
        body = {
            "input_file_id": job.input_file_id,
            "endpoint": CHAT_ENDPOINT,
            "completion_window": COMPLETION_WINDOW,
            "metadata": {"flames_job": job.job},
        }
        return self.batch_of(await self.call("POST", self.url("batches"), creates=True, json=body))

    async def find(self, job: BatchJob) -> list[RemoteBatch]:
        since = (job.submit_started_at or 0) - LOOKUP_MARGIN_S
        async for found in self.pages(self.url("batches"), "after", since):
            batch = self.batch_of(found)
            mine = batch.metadata.get("flames_job") == job.job
            if mine or (job.input_file_id and batch.input_file_id == job.input_file_id):
                return [batch]
        return []

    async def retrieve(self, batch_id: str) -> RemoteBatch:
        return self.batch_of(await self.call("GET", self.url("batches", batch_id)))

    async def cancel(self, batch_id: str) -> RemoteBatch:
        return self.batch_of(await self.call("POST", self.url("batches", batch_id, "cancel")))

    def result_of(self, line: dict[str, Any]) -> tuple[str, Reply] | None:
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str):
            return None
        response = line.get("response")
        if isinstance(response, dict) and response.get("status_code") is not None:
            return custom_id, self.reply(response["status_code"], response.get("body"))
        error = line.get("error") or {}
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        return custom_id, self.failed(f"batch request failed ({code}): {message}")

    async def results(self, batch: RemoteBatch) -> AsyncIterator[tuple[str, Reply]]:
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                async for found in self.parsed(self.url("files", file_id, "content")):
                    yield found


class AnthropicBatchApi(BatchApi):
    """Anthropic's Message Batches: ``POST /messages/batches`` with the requests inline, ``GET
    /messages/batches/{id}`` (``processing_status``, ``request_counts``), ``POST
    .../cancel``, and the results (``results_url``) as JSONL."""

    name = "anthropic"

    def __init__(self, *args: Any, default_max_tokens: int = 1024, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.default_max_tokens = default_max_tokens

    def headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    def request_line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        line = {"custom_id": custom_id, "params": anthropic_params(body, self.default_max_tokens)}
        return json.dumps(line, ensure_ascii=False).encode("utf-8")

    def frame(self, lines: int, line_bytes: int) -> int:
        return len(REQUESTS_OPEN + REQUESTS_CLOSE) + line_bytes + max(lines - 1, 0)  # commas

    def write_job(self, lines: Iterable[bytes], out: BinaryIO) -> int:
        size = out.write(REQUESTS_OPEN)
        for n, line in enumerate(lines):
            size += out.write(line if n == 0 else b"," + line)
        return size + out.write(REQUESTS_CLOSE)

    @staticmethod
    def batch_of(data: dict[str, Any]) -> RemoteBatch:
        status = str(data.get("processing_status"))
        return RemoteBatch(
            id=str(data["id"]),
            status=status,
            ended=status == "ended",
            counts={k: int(v) for k, v in (data.get("request_counts") or {}).items()},
            created_at=_unix(data.get("created_at")),
        )

    async def create(self, job: BatchJob, path: Path) -> RemoteBatch:
        with path.open("rb") as fh:  # the whole request body (`write_job`)
            url = self.url("messages", "batches")
            data = await self.call(
                "POST", url, creates=True, content_type="application/json", data=fh
            )
        return self.batch_of(data)

    async def find(self, job: BatchJob) -> list[RemoteBatch]:
        since = (job.submit_started_at or 0) - LOOKUP_MARGIN_S
        found = []
        async for data in self.pages(self.url("messages", "batches"), "after_id", since):
            batch = self.batch_of(data)
            same_size = batch.total == job.requests
            if batch.created_at >= since and same_size and batch.id not in job.not_ours:
                found.append(batch)
        # Message Batches carry no metadata: a batch of the same size made since is a
        # candidate, proved (or disproved) by the custom_ids of its results.
        return sorted(found, key=lambda b: b.created_at)

    async def retrieve(self, batch_id: str) -> RemoteBatch:
        return self.batch_of(await self.call("GET", self.url("messages", "batches", batch_id)))

    async def cancel(self, batch_id: str) -> RemoteBatch:
        url = self.url("messages", "batches", batch_id, "cancel")
        return self.batch_of(await self.call("POST", url))

    def result_of(self, line: dict[str, Any]) -> tuple[str, Reply] | None:
        custom_id = line.get("custom_id")
        result = line.get("result")
        if not isinstance(custom_id, str) or not isinstance(result, dict):
            return None
        kind = result.get("type")
        if kind == "succeeded":
            return custom_id, self.reply(200, completion_of_message(result.get("message") or {}))
        if kind == "errored":
            error = (result.get("error") or {}).get("error") or result.get("error") or {}
            what = f"{error.get('type')}: {error.get('message')}"
            return custom_id, self.failed(f"batch request errored ({what})")
        return custom_id, self.failed(f"batch request {kind} (not processed)")

    def results(self, batch: RemoteBatch) -> AsyncIterator[tuple[str, Reply]]:
        # The path results_url names, on this endpoint: the key is never sent to another host.
        return self.parsed(self.url("messages", "batches", batch.id, "results"))


def batch_api(
    settings: BatchSettings,
    options: ClientOptions,
    default_max_tokens: int = 1024,
    repairs: Counter[str] | None = None,
) -> BatchApi:
    """The batch API of the endpoint a live client's `options` name (see `BatchSettings.api`),
    with its key variable, attempts and reply size limit; `repairs` is the live client's
    counter, to count the results' repairs with its replies'."""
    base_url = options.get("base_url")
    endpoint = Endpoint.parse(base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL)
    common: dict[str, Any] = {
        "max_attempts": options.get("max_attempts", 6),
        "max_reply_bytes": options.get("max_reply_bytes", DEFAULT_MAX_REPLY_BYTES),
        "repairs": repairs,
    }
    api_key_env = options.get("api_key_env", "OPENAI_API_KEY")
    if detect_api(settings.api, endpoint) == "anthropic":
        return AnthropicBatchApi(
            base_url, api_key_env, default_max_tokens=default_max_tokens, **common
        )
    return OpenAIBatchApi(base_url, api_key_env, **common)


def api_for_job(job: BatchJob, like: BatchApi | None = None) -> BatchApi:
    """The batch API a recorded job was sent to (its endpoint and key variable as recorded),
    with the reply size limit and repairs counter of `like`."""
    if MASK in job.base_url:
        raise UsageError(
            f"batch job {job.job}: its endpoint's URL is recorded with a credential masked "
            f"({MASK}), so flames cannot call it from the run alone"
        )
    kind = AnthropicBatchApi if job.api == "anthropic" else OpenAIBatchApi
    if like is None:
        return kind(job.base_url, job.api_key_env)
    return kind(
        job.base_url,
        job.api_key_env,
        max_reply_bytes=like.max_reply_bytes,
        repairs=like.repairs,
    )
