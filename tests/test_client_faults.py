"""The OpenAI-compatible client against a misbehaving server: each fault, one at a time."""

from __future__ import annotations

import asyncio
import json
import math
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from flames.clients.chat import (
    ApiError,
    ChatClient,
    CleanConnector,
    parse_completion,
    retry_after,
)
from flames.clients.endpoint import Endpoint
from flames.data.dataset import Item
from flames.errors import UsageError
from flames.generation.base import Request
from flames.generation.openai_api import OpenAIBackend
from flames.runs.records import Answer
from flames.runs.store import RunStore

from .conftest import start_mock
from .helpers import run_cli, write_jsonl


def prompts(tmp_path, texts, name="data.jsonl"):
    rows = [{"dimension": "Safety", "subcomponent": "Physical harm", "prompt": t} for t in texts]
    return write_jsonl(tmp_path / name, rows)


def generate(run_dir, data, base_url, *extra, env=None, timeout=120):
    return run_cli(
        "generate",
        run_dir,
        "--model",
        "mock-model",
        "--base-url",
        base_url,
        "--data",
        data,
        "--no-progress",
        *extra,
        env=env,
        timeout=timeout,
    )


def by_prompt(run_dir):
    with RunStore.open(run_dir) as store:
        items = {i.id: i.prompt for i in store.items()}
        return {items[a.item_id]: a for a in store.answers()}


def wrong_answers(run_dir) -> list[str]:
    """Prompts whose stored answer echoes another prompt (the mock echoes what it was asked)."""
    return [
        prompt
        for prompt, answer in by_prompt(run_dir).items()
        if answer.status == "ok" and json.loads(answer.response)["echo"] != prompt
    ]


# Responses: empty content, Retry-After.


def test_empty_content_is_retried_then_recorded_as_an_error(tmp_path, mock_api):
    data = prompts(tmp_path, ["空一次[[blank:1]]", "总是空[[blank:99]]", "正常"])
    proc = generate(tmp_path / "run", data, mock_api.base_url, "--max-attempts", "3")
    assert proc.returncode == 5, proc.stderr
    got = by_prompt(tmp_path / "run")
    once = got["空一次[[blank:1]]"]
    assert once.status == "ok" and once.attempts == 2 and once.response
    always = got["总是空[[blank:99]]"]
    assert always.status == "error" and always.attempts == 3 and always.response is None
    assert "empty content in the response (finish_reason=stop)" in always.error
    assert got["正常"].status == "ok" and got["正常"].attempts == 1


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e999", "-3", "soon", "", "  "])
def test_a_retry_after_that_is_not_a_finite_delay_is_ignored(value):
    client = ChatClient(base_url="http://127.0.0.1:9/v1", backoff_max=60.0)
    with pytest.raises(ApiError) as caught:
        parse_completion(429, b'{"error": "slow down"}', {"retry-after": value})
    assert caught.value.retryable
    delay = client._delay(1, caught.value)
    assert math.isfinite(delay) and 0 <= delay <= client.backoff_base  # the client's own backoff


def test_retry_after_is_honoured_in_both_forms_and_capped():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after("2.5", now) == 2.5
    assert retry_after("0", now) == 0.0
    assert retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) is None
    assert retry_after("Wed, 99 Foo 2015 07:28:00 GMT", now) is None
    client = ChatClient(base_url="http://127.0.0.1:9/v1", backoff_max=7.0)
    assert client._delay(1, ApiError("x", True, retry_after=1e9)) == 7.0


def test_bad_retry_after_headers_do_not_stall_a_run(tmp_path, mock_api):
    texts = [f"限流{v}[[fail:429x1]][[retry-after:{v}]]" for v in ("nan", "-1", "inf", "abc", "0")]
    proc = generate(tmp_path / "run", prompts(tmp_path, texts), mock_api.base_url)
    assert proc.returncode == 0, proc.stderr
    got = by_prompt(tmp_path / "run")
    assert all(a.status == "ok" and a.attempts == 2 for a in got.values())
    assert not wrong_answers(tmp_path / "run")


# Keep-alive desync: a reply is never stored under the wrong prompt.


def test_an_unsolicited_extra_reply_is_never_stored_under_another_prompt(tmp_path, mock_api):
    texts = [f"问题{i}" + ("[[extra:1]]" if i % 5 == 0 else "") for i in range(150)]
    proc = generate(
        tmp_path / "run", prompts(tmp_path, texts), mock_api.base_url, "--concurrency", "8"
    )
    assert proc.returncode == 0, proc.stderr
    got = by_prompt(tmp_path / "run")
    assert len(got) == 150 and all(a.status == "ok" for a in got.values())
    assert wrong_answers(tmp_path / "run") == []
    # Each stray reply was caught (and its request asked again), not silently dropped.
    assert sum(a.attempts > 1 for a in got.values()) >= 1


def test_bytes_arriving_on_an_idle_connection_discard_it(tmp_path):
    """Without request ids echoed, a stray reply that lands while the connection is idle is
    still caught: the connection is not reused."""
    import aiohttp

    from flames.clients.chat import CleanConnector

    api = start_mock(tmp_path, 0.0, "--no-request-ids")
    try:
        backend = OpenAIBackend("m", base_url=api.base_url)

        def request(prompt: str) -> Request:
            return Request(Item(id=prompt, dimension="Safety", subcomponent="x", prompt=prompt))

        async def two_in_a_row() -> list[str]:
            async with aiohttp.ClientSession(connector=CleanConnector(limit=1)) as session:
                first = await backend._ask(session, request("第一[[extra:1]]"))
                await asyncio.sleep(0.2)  # the stray copy arrives while the connection is idle
                second = await backend._ask(session, request("第二"))
            return [json.loads(a.response)["echo"] for a in (first, second)]

        assert asyncio.run(two_in_a_row()) == ["第一[[extra:1]]", "第二"]
    finally:
        api.proc.kill()
        api.proc.wait()


@pytest.mark.parametrize("keep_alive", ["auto", "never"])
def test_a_late_extra_reply_from_a_server_that_names_no_request_is_never_misfiled(
    tmp_path, keep_alive
):
    """A server that echoes no request id and sends a copy of a reply after the client's next
    request went out: on a reused connection the copy would be read as that request's answer
    (keep_alive "always", timing-dependent, not asserted here). "auto" reuses a connection only
    after a reply that names its request, which this server's never do; "never" never does."""
    api = start_mock(tmp_path, 0.1, "--no-request-ids")
    try:
        backend = OpenAIBackend("m", base_url=api.base_url, concurrency=2, keep_alive=keep_alive)
        texts = [f"问题{i}" + ("[[late-extra:1]]" if i % 2 == 0 else "") for i in range(8)]
        requests = [
            Request(Item(id=f"q{i}", dimension="Safety", subcomponent="x", prompt=t))
            for i, t in enumerate(texts)
        ]

        async def ask_all() -> list[Answer]:
            return [answer async for answer in backend.stream(requests)]

        answers = asyncio.run(ask_all())
    finally:
        api.proc.kill()
        api.proc.wait()
    asked = {f"q{i}": t for i, t in enumerate(texts)}
    assert all(a.status == "ok" for a in answers)
    wrong = [a.item_id for a in answers if json.loads(a.response)["echo"] != asked[a.item_id]]
    assert wrong == []


def test_connections_are_reused_when_replies_name_their_requests(tmp_path):
    """With a server that names each reply after its request (vLLM, this mock by default),
    "auto" keeps connections alive: far fewer connections than requests."""
    api = start_mock(tmp_path, 0.0)
    try:
        backend = OpenAIBackend("m", base_url=api.base_url, concurrency=2)
        requests = [
            Request(Item(id=f"q{i}", dimension="Safety", subcomponent="x", prompt=f"问{i}"))
            for i in range(20)
        ]
        opened = 0
        connect = CleanConnector._create_connection

        async def counting(self, *args, **kwargs):
            nonlocal opened
            opened += 1
            return await connect(self, *args, **kwargs)

        async def ask_all() -> list[Answer]:
            return [answer async for answer in backend.stream(requests)]

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(CleanConnector, "_create_connection", counting)
            answers = asyncio.run(ask_all())
    finally:
        api.proc.kill()
        api.proc.wait()
    assert all(a.status == "ok" for a in answers)
    assert 1 <= opened <= 4  # two workers, each on a kept-alive connection


def test_keep_alive_from_the_command_line_and_in_the_recorded_description(tmp_path):
    api = start_mock(tmp_path, 0.1, "--no-request-ids")
    try:
        texts = [f"问题{i}" + ("[[late-extra:1]]" if i % 2 == 0 else "") for i in range(6)]
        proc = generate(
            tmp_path / "run",
            prompts(tmp_path, texts),
            api.base_url,
            "--concurrency",
            "1",
            "--keep-alive",
            "never",
        )
    finally:
        api.proc.kill()
        api.proc.wait()
    assert proc.returncode == 0, proc.stderr
    assert len(by_prompt(tmp_path / "run")) == 6 and wrong_answers(tmp_path / "run") == []
    with RunStore.open(tmp_path / "run") as store:
        assert store.manifest.evaluation["target"]["keep_alive"] == "never"


# Dead network and missing keys.


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        (lambda: f"http://127.0.0.1:{closed_port()}/v1", "connection refused"),
        (lambda: "http://flames-test.invalid/v1", "host name not found"),
    ],
    ids=["refused", "dns"],
)
def test_a_dead_endpoint_stops_the_run_at_once_with_one_message(tmp_path, base_url, reason):
    data = prompts(tmp_path, [f"问题{i}" for i in range(40)])
    proc = generate(tmp_path / "run", data, base_url(), "--api-key-env", "", timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: cannot reach http") and proc.stderr.count("error") == 1
    assert reason in proc.stderr and "Check --base-url" in proc.stderr
    assert not (tmp_path / "run").exists()  # nothing was stored: no run is left behind


def test_a_missing_key_is_reported_before_any_request(tmp_path, mock_api, monkeypatch):
    monkeypatch.delenv("FLAMES_TEST_KEY", raising=False)
    data = prompts(tmp_path, ["问题"])
    remote = "http://flames-test.invalid/v1"
    proc = generate(tmp_path / "run", data, remote, "--api-key-env", "FLAMES_TEST_KEY")
    assert proc.returncode == 2, proc.stderr
    assert "FLAMES_TEST_KEY holds no API key" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was created or sent
    # The judge too.
    assert generate(tmp_path / "ok", data, mock_api.base_url).returncode == 0
    judged = run_cli(
        "judge",
        tmp_path / "ok",
        "--model",
        "j",
        "--base-url",
        remote,
        "--api-key-env",
        "FLAMES_TEST_KEY",
        "--no-progress",
    )
    assert judged.returncode == 2 and "FLAMES_TEST_KEY holds no API key" in judged.stderr
    # A server on loopback needs no key, nor does one when no variable is named.
    assert OpenAIBackend("m", base_url="http://localhost:8000/v1", api_key_env="FLAMES_TEST_KEY")
    assert OpenAIBackend("m", base_url=remote, api_key_env="")


# Base URLs: credentials refused, trailing slashes normalised, query secrets masked.


def test_credentials_in_the_base_url_are_refused_cleanly_and_never_stored(tmp_path, mock_api):
    secret = "sk-in-the-url-0123456789"
    url = mock_api.base_url.replace("http://", f"http://user:{secret}@")
    data = prompts(tmp_path, ["问题"])
    proc = generate(tmp_path / "run", data, url, "--api-key-env", "K", env={"K": "sk-other"})
    assert proc.returncode == 2, proc.stderr
    assert "must not hold credentials" in proc.stderr and "Traceback" not in proc.stderr
    assert secret not in proc.stdout + proc.stderr
    assert not (tmp_path / "run").exists() and mock_api.requests() == []


def test_a_trailing_slash_does_not_make_another_run(tmp_path, mock_api):
    data = prompts(tmp_path, ["问题一", "问题二"])
    assert generate(tmp_path / "run", data, mock_api.base_url + "/").returncode == 0
    asked = len(mock_api.requests())
    resumed = generate(tmp_path / "run", data, mock_api.base_url)
    assert resumed.returncode == 0, resumed.stderr
    assert len(mock_api.requests()) == asked
    with RunStore.open(tmp_path / "run") as store:
        assert store.manifest.generator.base_url == mock_api.base_url


def test_endpoint_normalisation():
    spellings = ("http://H:8000/v1", "http://h:8000/v1//", " http://h:8000/v1/#x ")
    assert {Endpoint.parse(u).display for u in spellings} == {"http://h:8000/v1"}
    root = Endpoint.parse("https://h/")
    assert str(root.chat_completions) == "https://h/chat/completions"
    for bad in ("localhost:8000/v1", "ftp://h/v1", "http:///v1", "http://tok@h/v1"):
        with pytest.raises(UsageError):
            Endpoint.parse(bad)


def test_key_like_query_parameters_are_sent_but_masked_in_the_manifest(tmp_path, mock_api):
    secret = "q5ecret-0123456789"
    url = f"{mock_api.base_url}?api-version=2024-06-01&api_key={secret}"
    proc = generate(tmp_path / "run", prompts(tmp_path, ["问题"]), url)
    assert proc.returncode == 0, proc.stderr
    with RunStore.open(tmp_path / "run") as store:
        stored = store.manifest.generator.base_url
    assert stored == f"{mock_api.base_url}?api-version=2024-06-01&api_key=***"
    everything = proc.stdout + proc.stderr
    for path in (tmp_path / "run").rglob("*"):
        everything += path.read_bytes().decode("utf-8", "replace") if path.is_file() else ""
    assert secret not in everything
