"""A server's reply is data from outside: every shape of broken 200 reply, and replies of any
size, end as a repaired answer or as that item's error, never as a crashed run or resume."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from flames.clients.chat import (
    BAD_FINISH,
    BAD_TOKENS,
    BAD_USAGE,
    LONE_SURROGATES,
    ApiError,
    ChatClient,
    chat_request,
    parse_completion,
    token_count,
)
from flames.clients.mock_server import HOSTILE, hostile_body
from flames.runs.records import Decoding
from flames.runs.store import RunStore

from .conftest import start_mock
from .helpers import run_cli, write_jsonl

KEPT = {
    "usage-string": ({"prompt_tokens": None, "completion_tokens": None}, BAD_USAGE),
    "usage-list": ({"prompt_tokens": None, "completion_tokens": None}, BAD_USAGE),
    "tokens-text": ({"prompt_tokens": None, "completion_tokens": 2}, BAD_TOKENS),
    "tokens-fraction": ({"prompt_tokens": None, "completion_tokens": 2}, BAD_TOKENS),
    "tokens-huge": ({"prompt_tokens": None, "completion_tokens": 2}, BAD_TOKENS),
    "tokens-negative": ({"prompt_tokens": None, "completion_tokens": None}, BAD_TOKENS),
    "tokens-digits": ({"prompt_tokens": None, "completion_tokens": 2}, BAD_TOKENS),
    "finish-list": ({"prompt_tokens": 3, "completion_tokens": 2}, BAD_FINISH),
    "surrogate": ({"prompt_tokens": 3, "completion_tokens": 2}, LONE_SURROGATES),
}
"""The broken replies that still carry an answer: the usage parsed from each, and the repair."""


def completion() -> dict:
    return {
        "id": "chatcmpl-1",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "好的"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }


@pytest.mark.parametrize("kind", HOSTILE)
def test_every_broken_reply_is_repaired_or_refused_as_malformed(kind):
    body = hostile_body(completion(), kind)
    if kind not in KEPT:  # nested 100,000 deep: no answer can be read from it
        with pytest.raises(ApiError, match="malformed response") as caught:
            parse_completion(200, body, {})
        assert caught.value.retryable
        return
    usage, repair = KEPT[kind]
    parsed = parse_completion(200, body, {})
    assert parsed["usage"] == usage and parsed["repaired"] == [repair]
    assert parsed["content"] == ("好的\ufffd" if kind == "surrogate" else "好的")
    assert parsed["finish_reason"] == (None if kind == "finish-list" else "stop")
    parsed["content"].encode("utf-8")  # storable: no lone surrogate left


@pytest.mark.parametrize(
    ("value", "count"),
    [
        *[(0, 0), (7, 7), (7.0, 7), (10**9, 10**9)],
        *[(10**9 + 1, None), (-1, None), (1.5, None), ("7", None), (True, None), (None, None)],
        *[([3], None), (float("nan"), None), (float("inf"), None)],
    ],
)
def test_a_token_count_is_a_whole_number_in_range_or_unknown(value, count):
    assert token_count(value) == count


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'"text"',
        b'{"choices": "none"}',
        b'{"choices": []}',
        b'{"choices": [7]}',
        b'{"choices": [{"message": "hi"}]}',
        b'{"choices": [{"message": {"content": ["a", "b"]}}]}',
        b'{"choices": [{"message": {"content": 5}}]}',
        b"\xff\xfe{}",
    ],
)
def test_a_reply_without_text_content_is_a_retryable_malformed_reply(body):
    with pytest.raises(ApiError) as caught:
        parse_completion(200, body, {})
    assert caught.value.retryable
    assert "malformed response" in str(caught.value) or "content in the response" in str(
        caught.value
    )


def test_invalid_utf8_in_an_error_body_is_replaced_in_its_message():
    with pytest.raises(ApiError, match="HTTP 503: busy \ufffd") as caught:
        parse_completion(503, b"busy \xed\xa0\x80", {})
    str(caught.value).encode("utf-8")


def prompts(tmp_path, texts):
    rows = [{"dimension": "Safety", "subcomponent": "Physical harm", "prompt": t} for t in texts]
    return write_jsonl(tmp_path / "data.jsonl", rows)


def test_hostile_replies_leave_generation_judging_and_resumes_whole(tmp_path, mock_api):
    kept = [f"回答{kind}[[hostile:{kind}]][[score:auto]]" for kind in KEPT]
    texts = [*kept, "先深后好[[hostile:deepx1]][[score:auto]]", "总是太深[[hostile:deep]]"]
    data = prompts(tmp_path, texts)
    run_dir = tmp_path / "run"
    network = ["--base-url", mock_api.base_url, "--max-attempts", "2", "--no-progress"]

    first = run_cli("generate", run_dir, "--model", "m", "--data", data, *network)
    assert first.returncode == 5, first.stderr  # only the reply nested too deep every time
    assert "Traceback" not in first.stderr + first.stdout
    assert "replies kept after a repair" in first.stdout
    assert "-5000000" not in first.stdout
    with RunStore.open(run_dir) as store:
        items = {i.id: i.prompt for i in store.items()}
        answers = {items[a.item_id]: a for a in store.answers()}
    for text in kept:
        answer = answers[text]
        assert answer.status == "ok" and answer.attempts == 1, text
        for count in (answer.prompt_tokens, answer.completion_tokens):
            assert count is None or 0 <= count <= 10**9
    assert answers[kept[-1]].response.endswith("\ufffd")  # the lone surrogate, replaced
    assert answers[texts[-2]].status == "ok" and answers[texts[-2]].attempts == 2
    deep = answers[texts[-1]]
    assert deep.status == "error" and "nested too deeply" in deep.error

    # A resume meets the same replies: it neither crashes nor touches the answers kept.
    again = run_cli("generate", run_dir, "--model", "m", "--data", data, "--retry-errors", *network)
    assert again.returncode == 5, again.stderr
    assert "Traceback" not in again.stderr

    # The judge gets the same broken replies (the directives are in what it is asked).
    judged = run_cli("judge", run_dir, "--model", "j", "--skip-judge-check", *network)
    assert judged.returncode == 0, judged.stderr
    assert "replies kept after a repair" in judged.stdout
    with RunStore.open(run_dir) as store:
        verdicts = store.verdicts("judge:j")
    assert len(verdicts) == len(texts) - 1 and all(v.status == "ok" for v in verdicts)
    assert any("\ufffd" in (v.raw or "") for v in verdicts)
    report = run_cli("report", run_dir, "--bootstrap", "0")
    assert report.returncode == 0, report.stderr
    with sqlite3.connect(run_dir / "run.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_judge_answer_nested_past_any_verdict_is_a_malformed_verdict(tmp_path, mock_api):
    """The judge reads a JSON object out of the model's text: text nested 100,000 deep is no
    verdict, and reading it costs one attempt, not one per brace."""
    from flames.scoring.judge import first_json_object

    deep = '{"score": ' * 100_000 + "3" + "}" * 100_000
    assert first_json_object(deep) is None
    assert first_json_object('x {"a": ' + "9" * 5000 + '} {"score": 2}') == {"score": 2}


# Size: a byte limit on the decompressed body, enforced while reading.


def ask(base_url: str, prompt: str, **options) -> object:
    async def one():
        client = ChatClient(base_url=base_url, api_key_env="", **options)
        async with client.session() as session:
            request = client.complete(session, chat_request("m", prompt, Decoding()))
            return await asyncio.wait_for(request, 60)  # a guard: a hung test fails instead

    return asyncio.run(one())


def test_a_gzip_bomb_is_refused_at_the_limit_and_not_asked_again(mock_api):
    reply = ask(mock_api.base_url, "炸弹[[bomb:1]]", max_reply_bytes=64 * 1024, timeout=30)
    assert reply.content is None and reply.attempts == 1
    assert "larger than the limit of 65,536 bytes (--max-reply-bytes)" in reply.error
    assert mock_api.asked("炸弹") == 1


def test_a_reply_within_the_limit_is_read_whole_and_gzip_is_decoded(mock_api):
    reply = ask(mock_api.base_url, "长[[big:200000]]", max_reply_bytes=300_000)
    assert reply.error is None and reply.content == "x" * 200_000
    refused = ask(mock_api.base_url, "长[[big:200000]]", max_reply_bytes=100_000)
    assert "larger than the limit" in refused.error


def test_an_oversized_answer_is_an_error_never_a_stored_answer(tmp_path, mock_api):
    data = prompts(tmp_path, ["太长[[big:2000000]]", "正常"])
    run_dir = tmp_path / "run"
    proc = run_cli(
        "generate", run_dir, "--model", "m", "--data", data, "--base-url", mock_api.base_url,
        "--max-reply-bytes", "1000000", "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 5, proc.stderr
    with RunStore.open(run_dir) as store:
        items = {i.id: i.prompt for i in store.items()}
        answers = {items[a.item_id]: a for a in store.answers()}
    assert answers["太长[[big:2000000]]"].status == "error"
    assert answers["太长[[big:2000000]]"].response is None
    assert answers["正常"].status == "ok"
    assert sum(p.stat().st_size for p in run_dir.glob("run.db*")) < 1_000_000
    bad = run_cli("generate", run_dir, "--model", "m", "--max-reply-bytes", "10")
    assert bad.returncode == 2 and "--max-reply-bytes" in bad.stderr


DRIP = textwrap.dedent(
    """
    import asyncio, sys

    async def handle(reader, writer):
        while (await reader.readline()) not in (b"\\r\\n", b""):
            pass
        writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
                     b"Content-Length: 100000\\r\\n\\r\\n")
        try:
            for _ in range(100000):  # one byte every 50 ms: never a reason to give up reading
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.05)
        except ConnectionError:
            pass

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(main())
    """
)


def test_the_timeout_covers_reading_the_body(tmp_path):
    server = subprocess.Popen([sys.executable, "-c", DRIP], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        # The body alone would take 80 minutes; the request is abandoned after its 1 s.
        reply = ask(f"http://127.0.0.1:{port}/v1", "慢", timeout=1.0, max_attempts=1)
        assert reply.error is not None and reply.error.startswith("timeout")
    finally:
        server.kill()
        server.wait()


BOMBS = textwrap.dedent(
    """
    import asyncio, sys
    from flames.clients.chat import ChatClient, chat_request
    from flames.runs.records import Decoding

    async def main(base_url):
        client = ChatClient(base_url=base_url, api_key_env="", concurrency=16, max_attempts=1)
        async with client.session() as session:
            asks = [chat_request("m", f"炸弹{i}[[bomb:1]]", Decoding()) for i in range(16)]
            replies = await asyncio.gather(*(client.complete(session, a) for a in asks))
        print(sum("larger than the limit" in (r.error or "") for r in replies))
        # The peak of this process's own memory (VmHWM): ru_maxrss would also count the parent's
        # at the moment it started this one, since Linux keeps it across exec.
        status = open("/proc/self/status").read()
        print(int(status.split("VmHWM:")[1].split()[0]) // 1024)

    asyncio.run(main(sys.argv[1]))
    """
)


def test_sixteen_concurrent_gzip_bombs_cost_no_more_than_their_limits(tmp_path):
    """16 replies that inflate to 1 GiB each, at the default limit (8 MiB) and concurrency (16):
    the client's peak memory stays near its size at rest (about 60 MiB here). Before the limit,
    one such reply took 3.4 GB and 92 s."""
    api = start_mock(tmp_path)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", BOMBS, api.base_url], capture_output=True, text=True, timeout=120
        )
    finally:
        api.proc.kill()
        api.proc.wait()
    assert proc.returncode == 0, proc.stderr
    refused, peak_mib = map(int, proc.stdout.split())
    assert refused == 16
    print(f"peak memory under 16 concurrent gzip bombs: {peak_mib} MiB")
    assert peak_mib < 300
