"""A loopback server that speaks the OpenAI chat-completions protocol, for tests and benchmarks.

It answers every request after a fixed latency. Directives in the last user message script
failures for that prompt, counted per prompt across attempts:

- ``[[fail:429x2]]``: the first 2 attempts get HTTP 429 (any status code works; 4xx error
  messages quote the API key received, as some real servers do);
- ``[[retry-after:VALUE]]``: failures of this prompt carry the header ``Retry-After: VALUE``;
- ``[[hang:1]]``: the first attempt hangs for 30 s (longer than any sane client timeout);
- ``[[malformed:1]]``: the first attempt gets a body that is not JSON;
- ``[[empty:1]]``: the first attempt gets a choice whose content is null;
- ``[[blank:1]]``: the first attempt gets a choice whose content is "";
- ``[[extra:1]]``: the first attempt's reply is sent twice on the same kept-alive connection,
  the copy a moment later, when a careless client reads it as its next request's reply;
- ``[[late-extra:1]]``: as ``extra``, but the copy comes 50 ms later, after the client's next
  request on that connection went out: only the request id (or no keep-alive) tells them apart;
- ``[[ansi:1]]``: the first attempt gets HTTP 502 with a plain-text body full of terminal
  escape sequences (clear screen, OSC 52 clipboard write, C1 controls);
- ``[[leak:500x2]]``: the first 2 attempts get that status with a body echoing the API key in
  every form a server might (plain, URL-encoded, JSON-escaped, base64 of the key and of the
  whole Authorization header), one copy straddling each common cut (200, 500, 1000
  characters); a 200 gets such a body that is not JSON;
- ``[[verdict:A||B]]``: the answer's content is A on the first attempt, then B (the last
  alternative repeats), for scripted judges;
- ``[[b64:TEXT]]``: the answer's content is TEXT decoded from base64, for scripted replies that
  hold brackets or directives of their own (an attacker proposing a prompt that scripts the
  target and the judge);
- ``[[score:auto]]``: the answer's content is JSON holding the prompt's echo and a score in
  1..3 derived from the prompt (``expected_score``), so a judge's verdicts can be checked;
- ``[[hostile:KIND]]`` (every attempt) or ``[[hostile:KINDxN]]`` (the first N): an HTTP 200
  reply that breaks the protocol in one way (`HOSTILE`): a usage that is a string or a list,
  token counts that are text, fractions, huge, negative or 5,000 digits long, a finish_reason
  that is a list, a body nested 100,000 levels deep, content holding a lone surrogate;
- ``[[big:N]]``: the answer's content is N bytes of text;
- ``[[bomb:N]]``: the reply is a gzip body of about N MiB that inflates to N GiB of zeros,
  sent as fast as the client reads it (a "gzip bomb").

A prompt holding ``[[sample]]`` is answered as a language model that never stops would answer
it: one character a token, drawn from a seeded generator (the request's ``seed``; greedy at
temperature 0; fresh randomness without a seed), up to ``max_tokens`` (default 16), finish
``length``. Like vLLM, the server clamps that limit to its context window (``--context``, in
prompt characters plus answer tokens) without saying so.

Otherwise the answer's content is JSON echoing what the server received, so tests can check the
decoding settings (and, for a conversation, its earlier turns under ``history``). As vLLM does,
a completion's id is ``chatcmpl-`` followed by the request's ``X-Request-Id`` header when there
is one (``--no-request-ids`` turns that off). Each request is appended to ``--log`` as one JSON
line.

A judge prompt names the id its verdict must carry (``本次评估的编号是 J...``): like a judge
that follows the format, the server adds that id to a scripted verdict that is a JSON object
without one, and to ``[[score:auto]]``'s answer.

Run: ``python -m flames.clients.mock_server --port 0 --latency 0.05``; it prints ``PORT <n>``
when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

DIRECTIVE = re.compile(
    r"\[\[(fail|retry-after|hang|malformed|empty|blank|extra|late-extra|ansi|leak|verdict|score"
    r"|hostile|big|bomb|b64):([^\]]*)\]\]"
)
ATTEMPT_COUNTED = ("hang", "malformed", "empty", "blank", "extra", "late-extra", "ansi")
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}
SAMPLE = "[[sample]]"
VOCABULARY = "天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏"
TERMINAL_ATTACK = (
    "upstream failed\x1b[2J\x1b[H\x1b]52;c;ZmxhbWVz\x07\x1b]0;pwned\x1b\\\x9b31m\x07\x08\r\x00 done"
)
"""Clears the screen, writes the clipboard (OSC 52), sets the title, colours via C1 CSI."""
DEEP = 100_000
HOSTILE = (
    "usage-string",
    "usage-list",
    "tokens-text",
    "tokens-fraction",
    "tokens-huge",
    "tokens-negative",
    "tokens-digits",
    "finish-list",
    "deep",
    "surrogate",
)
"""The ways a ``[[hostile:KIND]]`` reply breaks the protocol."""
HOSTILE_ARG = re.compile(r"(.+?)(?:x(\d+))?")
"""KIND, or KINDxN: only the first N attempts."""


def hostile_body(completion: dict[str, Any], kind: str) -> bytes:
    """`completion` broken in the way `kind` names (one of `HOSTILE`)."""
    usage, choice = completion["usage"], completion["choices"][0]
    if kind == "usage-string":
        completion["usage"] = "plenty"
    elif kind == "usage-list":
        completion["usage"] = [usage["prompt_tokens"], usage["completion_tokens"]]
    elif kind == "tokens-text":
        usage["prompt_tokens"] = "abc"
    elif kind == "tokens-fraction":
        usage["prompt_tokens"] = 1.5
    elif kind == "tokens-huge":
        usage["prompt_tokens"] = 10**30
    elif kind == "tokens-negative":
        usage["prompt_tokens"] = usage["completion_tokens"] = -5_000_000
    elif kind == "finish-list":
        choice["finish_reason"] = ["stop"]
    elif kind == "surrogate":
        choice["message"]["content"] += "\ud800"  # sent as the escape \ud800: valid JSON
    body = json.dumps(completion)  # ASCII: lone surrogates become \uXXXX escapes
    if kind == "tokens-digits":
        body = body.replace('"prompt_tokens": ', '"prompt_tokens": ' + "9" * 5000, 1)
    elif kind == "deep":
        body = body[:-1] + ', "extra": ' + "[" * DEEP + "]" * DEEP + "}"
    elif kind not in HOSTILE:
        raise ValueError(f"unknown hostile reply {kind!r}")
    return body.encode("ascii")


def gzip_bomb(gib: int) -> tuple[bytes, bytes, int]:
    """A gzip stream of zeros as (head, block, repeats): head then `repeats` times block
    inflate to `gib` GiB. Each block is 1 MiB of zeros fully flushed, so it can be repeated
    without compressing a gigabyte (the trailer is left off: no reader gets that far)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    head = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return head, block, gib * 1024 - 1


def sampled_answer(body: dict[str, Any], prompt: str, context: int) -> str:
    """What a seeded sampling model writes for `prompt`: as many tokens as it may."""
    limit = min(body.get("max_tokens") or 16, max(context - len(prompt), 0))
    # Greedy always gives the same answer; when sampling, a seed of None draws fresh randomness.
    rng = random.Random(body.get("seed") if body.get("temperature") else prompt)
    return "".join(rng.choice(VOCABULARY) for _ in range(limit))


VERDICT_ID = re.compile(r"本次评估的编号是 (J[0-9a-f]+)")
"""Where a judge prompt names the id its verdict must carry (flames.scoring.judge)."""


def with_verdict_id(verdict: str, verdict_id: str | None) -> str:
    """A scripted verdict as a judge following the format writes it: a JSON object gets the id
    the judge prompt names, unless it has an id of its own; anything else is sent as it is."""
    try:
        data = json.loads(verdict)
    except json.JSONDecodeError:
        return verdict
    if not isinstance(data, dict) or verdict_id is None or "id" in data:
        return verdict
    return json.dumps({**data, "id": verdict_id}, ensure_ascii=False)


def expected_score(prompt: str) -> int:
    """The score ``[[score:auto]]`` answers for this prompt: 1, 2 or 3."""
    return 1 + zlib.crc32(prompt.encode("utf-8")) % 3


def key_echoes(key: str) -> str:
    """An error body echoing `key` in every form a server might, straddling common cuts."""
    header = f"Bearer {key}"
    forms = [
        key,
        quote(key, safe=""),
        quote_plus(key),
        json.dumps(key)[1:-1].replace("/", "\\/"),
        base64.b64encode(key.encode()).decode(),
        base64.urlsafe_b64encode(key.encode()).decode(),
        base64.b64encode(header.encode()).decode(),
        f"Authorization: {header}",
        f"https://user:{quote(key, safe='')}@example.invalid/v1?api_key={quote(key, safe='')}",
    ]
    text = " | ".join(forms)
    for cut in (200, 500, 1000):  # one plain copy across each cut
        text = text[: cut - len(key) // 2].ljust(cut - len(key) // 2, ".") + key + text
    return text


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    extra: bytes | None = None
    """An unsolicited second reply, sent `extra_delay` seconds after this one on the same
    connection."""
    extra_delay: float = 0.001
    bomb: int = 0
    """Above 0: the body is a gzip bomb of this many GiB, streamed (`gzip_bomb`)."""


def http_message(reply: Reply) -> bytes:
    head = [
        f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Error')}",
        f"Content-Type: {reply.content_type}",
        f"Content-Length: {len(reply.body)}",
        *(f"{k}: {v}" for k, v in reply.headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body


async def send_bomb(writer: asyncio.StreamWriter, reply: Reply) -> None:
    """Stream a gzip bomb as a chunked body, as fast as the client reads it."""
    head, block, repeats = gzip_bomb(reply.bomb)
    lines = [f"HTTP/1.1 {reply.status} OK", f"Content-Type: {reply.content_type}"]
    lines += [f"{k}: {v}" for k, v in reply.headers.items()] + ["Transfer-Encoding: chunked"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    for part in [head, *([block] * repeats)]:
        writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        await writer.drain()  # blocks while the client reads no more: a closed client ends it
    writer.write(b"0\r\n\r\n")
    await writer.drain()


class MockServer:
    def __init__(
        self,
        latency: float = 0.0,
        log_path: str | None = None,
        request_ids: bool = True,
        context: int = 4096,
    ):
        self.latency = latency
        self.request_ids = request_ids
        self.context = context
        self.attempts: Counter[str] = Counter()
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115

    def _plan(self, prompt: str) -> tuple[str, Any]:
        """What to do with this attempt of this prompt: ('ok'|'fail'|..., argument)."""
        self.attempts[prompt] += 1
        attempt = self.attempts[prompt]
        for kind, arg in DIRECTIVE.findall(prompt):
            if kind in ("fail", "leak"):
                status, _, times = arg.partition("x")
                if attempt <= int(times or 1):
                    return kind, int(status)
            elif kind == "hostile":
                broken, times = HOSTILE_ARG.fullmatch(arg).groups()  # type: ignore[union-attr]
                if times is None or attempt <= int(times):
                    return kind, broken
            elif kind in ("big", "bomb"):
                return kind, int(arg)
            elif kind in ATTEMPT_COUNTED and attempt <= int(arg or 1):
                return kind, None
        return "ok", None

    def _completion(self, body: dict[str, Any], prompt: str, request_id: str) -> dict[str, Any]:
        directives = dict(DIRECTIVE.findall(prompt))
        verdict = directives.get("verdict")
        if verdict is not None:
            alternatives = verdict.split("||")
            verdict = alternatives[min(self.attempts[prompt], len(alternatives)) - 1]
        received = {k: body.get(k) for k in ("model", "temperature", "top_p", "max_tokens", "seed")}
        system = [m["content"] for m in body.get("messages", []) if m.get("role") == "system"]
        verdict_id = VERDICT_ID.search(prompt)
        if verdict is not None:
            content = with_verdict_id(verdict, verdict_id.group(1) if verdict_id else None)
        elif "b64" in directives:
            content = base64.b64decode(directives["b64"]).decode("utf-8")
        elif directives.get("score") == "auto":
            scored = {"score": expected_score(prompt), "echo": prompt}
            if verdict_id:
                scored["id"] = verdict_id.group(1)
            content = json.dumps(scored, ensure_ascii=False)
        else:
            echo = {"echo": prompt, "system": system[0] if system else None, **received}
            turns = [m for m in body.get("messages", []) if m.get("role") != "system"][:-1]
            if turns:  # the earlier turns of a conversation, as "role: content"
                echo["history"] = [f"{m.get('role')}: {m.get('content')}" for m in turns]
            content = json.dumps(echo, ensure_ascii=False)
        sampled = SAMPLE in prompt
        if sampled:
            content = sampled_answer(body, prompt, self.context)
        return {
            "id": f"chatcmpl-{request_id}"
            if request_id and self.request_ids
            else f"mock-{sum(self.attempts.values())}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "mock"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "length" if sampled else "stop",
                    "message": {"role": "assistant", "content": content},
                }
            ],
            "usage": {
                "prompt_tokens": len(prompt),
                "completion_tokens": len(content),
                "total_tokens": len(prompt) + len(content),
            },
        }

    async def respond(self, body: dict[str, Any], api_key: str = "", request_id: str = "") -> Reply:
        messages = body.get("messages") or [{}]
        prompt = next(
            (m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), ""
        )
        action, arg = self._plan(prompt)
        if self.log:
            self.log.write(json.dumps({"prompt": prompt, "action": action}, ensure_ascii=False))
            self.log.write("\n")
            self.log.flush()
        await asyncio.sleep(self.latency)
        if action == "fail":
            # Like some real servers, 4xx errors quote the key they were given.
            quoted = f" (key {api_key!r})" if 400 <= arg < 500 else ""
            message = json.dumps({"error": {"message": f"injected {arg}{quoted}"}})
            retry_after = dict(DIRECTIVE.findall(prompt)).get("retry-after")
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return Reply(arg, message.encode(), headers=headers)
        if action == "leak":
            return Reply(arg, key_echoes(api_key).encode(), content_type="text/plain")
        if action == "ansi":
            return Reply(502, TERMINAL_ATTACK.encode(), content_type="text/plain")
        if action == "hang":
            await asyncio.sleep(30)
        if action == "malformed":
            return Reply(200, b'{"id": "broken", "choices": [ {"mess')
        if action == "bomb":
            return Reply(200, b"", headers={"Content-Encoding": "gzip"}, bomb=arg)
        completion = self._completion(body, prompt, request_id)
        if action == "hostile":
            return Reply(200, hostile_body(completion, arg))
        if action == "big":
            completion["choices"][0]["message"]["content"] = "x" * arg
        if action in ("empty", "blank"):
            completion["choices"][0]["message"]["content"] = None if action == "empty" else ""
        reply = Reply(200, json.dumps(completion, ensure_ascii=False).encode())
        if action in ("extra", "late-extra"):
            reply.extra = reply.body
            reply.extra_delay = 0.05 if action == "late-extra" else 0.001
        return reply

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                method, path, _ = request_line.decode("latin-1").split(" ", 2)
                if method == "POST" and path.split("?")[0].rstrip("/").endswith(
                    "/chat/completions"
                ):
                    key = headers.get("authorization", "").removeprefix("Bearer ")
                    request_id = headers.get("x-request-id", "")
                    reply = await self.respond(json.loads(body or b"{}"), key, request_id)
                else:
                    reply = Reply(404, b'{"error": {"message": "not found"}}')
                if reply.bomb:
                    await send_bomb(writer, reply)
                    break
                writer.write(http_message(reply))
                await writer.drain()
                if reply.extra is not None:
                    await asyncio.sleep(reply.extra_delay)  # arrives on its own, after the read
                    writer.write(http_message(Reply(200, reply.extra)))
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def serve(
    port: int, latency: float, log_path: str | None, request_ids: bool, context: int
) -> None:
    mock = MockServer(latency, log_path, request_ids, context)
    server = await asyncio.start_server(mock.handle, "127.0.0.1", port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--log", default=None, help="append one JSON line per request here")
    parser.add_argument(
        "--no-request-ids",
        dest="request_ids",
        action="store_false",
        help="do not name completions after the X-Request-Id header",
    )
    parser.add_argument("--context", type=int, default=4096, help="context window ([[sample]])")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.latency, args.log, args.request_ids, args.context))


if __name__ == "__main__":
    main()
