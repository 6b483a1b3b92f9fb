"""A loopback server that speaks the OpenAI chat-completions protocol, for tests and benchmarks.

It answers every request after a fixed latency. Directives in the last user message script
failures for that prompt, counted per prompt across attempts:

- ``[[fail:429x2]]``: the first 2 attempts get HTTP 429 (any status code works; 4xx error
  messages quote the API key received, as some real servers do);
- ``[[hang:1]]``: the first attempt hangs for 30 s (longer than any sane client timeout);
- ``[[malformed:1]]``: the first attempt gets a body that is not JSON;
- ``[[empty:1]]``: the first attempt gets a choice whose content is null;
- ``[[verdict:A||B]]``: the answer's content is A on the first attempt, then B (the last
  alternative repeats), for scripted judges.

A prompt holding ``[[sample]]`` is answered as a language model that never stops would answer
it: one character a token, drawn from a seeded generator (the request's ``seed``; greedy at
temperature 0; fresh randomness without a seed), up to ``max_tokens`` (default 16), finish
``length``. Like vLLM, the server clamps that limit to its context window (``--context``, in
prompt characters plus answer tokens) without saying so.

Otherwise the answer's content is JSON echoing what the server received, so tests can check the
decoding settings. Each request is appended to ``--log`` as one JSON line.

Run: ``python -m flames.mock_server --port 0 --latency 0.05``; it prints ``PORT <n>`` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
from collections import Counter
from typing import Any

DIRECTIVE = re.compile(r"\[\[(fail|hang|malformed|empty|verdict):([^\]]*)\]\]")
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}
SAMPLE = "[[sample]]"
VOCABULARY = "天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏"


def sampled_answer(body: dict[str, Any], prompt: str, context: int) -> str:
    """What a seeded sampling model writes for `prompt`: as many tokens as it may."""
    limit = min(body.get("max_tokens") or 16, max(context - len(prompt), 0))
    # Greedy always gives the same answer; when sampling, a seed of None draws fresh randomness.
    rng = random.Random(body.get("seed") if body.get("temperature") else prompt)
    return "".join(rng.choice(VOCABULARY) for _ in range(limit))


class MockServer:
    def __init__(self, latency: float = 0.0, log_path: str | None = None, context: int = 4096):
        self.latency = latency
        self.context = context
        self.attempts: Counter[str] = Counter()
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115

    def _plan(self, prompt: str) -> tuple[str, Any]:
        """What to do with this attempt of this prompt: ('ok'|'fail'|..., argument)."""
        self.attempts[prompt] += 1
        attempt = self.attempts[prompt]
        for kind, arg in DIRECTIVE.findall(prompt):
            if kind == "verdict":
                continue
            if kind == "fail":
                status, _, times = arg.partition("x")
                if attempt <= int(times or 1):
                    return "fail", int(status)
            elif attempt <= int(arg or 1):
                return kind, None
        return "ok", None

    def _completion(self, body: dict[str, Any], prompt: str) -> dict[str, Any]:
        verdict = next((a for k, a in DIRECTIVE.findall(prompt) if k == "verdict"), None)
        if verdict is not None:
            alternatives = verdict.split("||")
            verdict = alternatives[min(self.attempts[prompt], len(alternatives)) - 1]
        received = {k: body.get(k) for k in ("model", "temperature", "top_p", "max_tokens", "seed")}
        system = [m["content"] for m in body.get("messages", []) if m.get("role") == "system"]
        content = (
            verdict
            if verdict is not None
            else json.dumps(
                {"echo": prompt, "system": system[0] if system else None, **received},
                ensure_ascii=False,
            )
        )
        sampled = SAMPLE in prompt
        if sampled:
            content = sampled_answer(body, prompt, self.context)
        return {
            "id": f"mock-{sum(self.attempts.values())}",
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

    async def respond(self, body: dict[str, Any], api_key: str = "") -> tuple[int, bytes]:
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
            return arg, json.dumps({"error": {"message": f"injected {arg}{quoted}"}}).encode()
        if action == "hang":
            await asyncio.sleep(30)
        if action == "malformed":
            return 200, b'{"id": "broken", "choices": [ {"mess'
        completion = self._completion(body, prompt)
        if action == "empty":
            completion["choices"][0]["message"]["content"] = None
        return 200, json.dumps(completion, ensure_ascii=False).encode()

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
                if method == "POST" and path.rstrip("/").endswith("/chat/completions"):
                    key = headers.get("authorization", "").removeprefix("Bearer ")
                    status, payload = await self.respond(json.loads(body or b"{}"), key)
                else:
                    status, payload = 404, b'{"error": {"message": "not found"}}'
                head = (
                    f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n"
                )
                writer.write(head.encode("latin-1") + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def serve(port: int, latency: float, log_path: str | None, context: int) -> None:
    mock = MockServer(latency, log_path, context)
    server = await asyncio.start_server(mock.handle, "127.0.0.1", port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--log", default=None, help="append one JSON line per request here")
    parser.add_argument("--context", type=int, default=4096, help="context window ([[sample]])")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.latency, args.log, args.context))


if __name__ == "__main__":
    main()
