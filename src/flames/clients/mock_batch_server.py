"""A loopback server for OpenAI's Batch API and Anthropic's Message Batches, for tests.

Each request of a batch is answered by `MockServer`'s answer logic (``flames.clients.mock_server``,
its prompt directives included: ``[[fail:500]]`` makes that request fail inside the batch,
``[[malformed:1]]`` gives it a body without a choice, ...), once the batch's processing time
(``--duration``) has passed. Its state lives in files under ``--state``, written whole before
each reply, so a server killed and started again on the same folder (and port) carries on:
batches keep their age, and results are made once.

- OpenAI: ``POST /v1/files`` (multipart, purpose ``batch``), ``GET /v1/files`` (``purpose``,
  ``order``, ``after``, ``limit``), ``GET /v1/files/{id}/content``, ``POST /v1/batches``,
  ``GET /v1/batches`` (newest first, ``after``, ``limit``), ``GET /v1/batches/{id}``, ``POST
  /v1/batches/{id}/cancel``. A batch goes validating -> in_progress -> completed (or failed: an
  input file it cannot read; expired: see below; cancelling -> cancelled). Failed requests go
  to the error file; a cancelled batch's unprocessed requests go nowhere.
- Anthropic: ``POST /v1/messages/batches`` (requests inline), ``GET /v1/messages/batches``
  (newest first, ``after_id``, ``limit``), ``GET /v1/messages/batches/{id}``, ``POST
  .../cancel``, ``GET .../results``. ``processing_status`` in_progress -> (canceling ->) ended.
- A request whose prompt holds ``[[expire]]`` is never processed: the batch ends expired, the
  request with an ``expired`` result (OpenAI: ``batch_expired`` in the error file).
- Results are written in a shuffled order (seeded by the batch id).
- ``POST /v1/chat/completions`` answers live, as the live mock server does (a judge's sanity
  check, or answers retried live).
- ``--max-requests N``: a batch of more requests is refused (HTTP 400), as providers refuse
  one over their limits.
- ``--flaky N``: every Nth request to the API gets HTTP 503 with ``Retry-After: 0``.
- ``--lose-reply KIND:N``: the first N creates of KIND (``upload``, ``batch``) are carried out,
  then the connection is closed without a reply (the client cannot know it was accepted).
- ``--slow-create S``: a create (upload or batch) is carried out and logged, then its reply
  waits S seconds: a client killed then was accepted without knowing it. ``--slow-download S``:
  a download is logged, then sent S seconds later.
- 4xx errors inside a batch quote the API key the batch was created with (as the live mock
  server's do), so tests can check that no form of it is stored.

Every create, cancel and download is appended to ``--state``/log.jsonl as one JSON line
(``event``, ``id``, ``requests``, ``custom_ids``), so tests count what was submitted.

Run: ``python -m flames.clients.mock_batch_server --port 0 --state DIR``; it prints
``PORT <n>`` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from flames.clients.mock_server import MockServer

DEFAULT_DURATION = 1.0
"""Seconds a batch takes to process."""


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


class BatchState:
    """Files and batches, each a JSON file under the state folder, written whole."""

    def __init__(self, folder: Path):
        self.folder = folder
        for sub in ("files", "batches"):
            (folder / sub).mkdir(parents=True, exist_ok=True)

    def _write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def save(self, kind: str, obj: dict[str, Any]) -> None:
        self._write(self.folder / kind / f"{obj['id']}.json", json.dumps(obj).encode())

    def load(self, kind: str, obj_id: str) -> dict[str, Any] | None:
        path = self.folder / kind / f"{obj_id}.json"
        if "/" in obj_id or not path.is_file():
            return None
        return json.loads(path.read_text("utf-8"))

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Newest first."""
        objs = [json.loads(p.read_text("utf-8")) for p in (self.folder / kind).glob("*.json")]
        return sorted(objs, key=lambda o: (o["created_at"], o["id"]), reverse=True)

    def put_content(self, file_id: str, data: bytes) -> None:
        self._write(self.folder / "files" / f"{file_id}.data", data)

    def content(self, file_id: str) -> bytes:
        return (self.folder / "files" / f"{file_id}.data").read_bytes()

    def log(self, **event: Any) -> None:
        with (self.folder / "log.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")

    @property
    def attempts_path(self) -> Path:
        return self.folder / "attempts.json"


class MockBatchServer:
    def __init__(
        self,
        state: Path,
        duration: float = DEFAULT_DURATION,
        max_requests: int | None = None,
        flaky: int = 0,
        lose_reply: dict[str, int] | None = None,
        slow_create: float = 0.0,
        slow_download: float = 0.0,
    ):
        self.state = BatchState(state)
        self.duration = duration
        self.max_requests = max_requests
        self.flaky = flaky
        self.calls = 0
        self.lose_reply = dict(lose_reply or {})
        self.slow_create = slow_create
        self.slow_download = slow_download
        self.answers = MockServer()
        if self.state.attempts_path.is_file():  # a restart keeps the directives' counts
            self.answers.attempts.update(json.loads(self.state.attempts_path.read_text("utf-8")))
        self._lock = asyncio.Lock()

    # -- plumbing ------------------------------------------------------------------------------

    @web.middleware
    async def faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.calls += 1
        if self.flaky and self.calls % self.flaky == 0:
            return web.json_response(
                {"error": {"message": "injected 503"}}, status=503, headers={"Retry-After": "0"}
            )
        async with self._lock:  # one change of state at a time
            return await handler(request)

    async def lose(self, kind: str, request: web.Request) -> bool:
        """Whether to close the connection instead of replying to this create (after
        `slow_create` seconds either way: the create is done, its reply not yet sent)."""
        if self.slow_create:
            await asyncio.sleep(self.slow_create)
        if self.lose_reply.get(kind, 0) > 0:
            self.lose_reply[kind] -= 1
            assert request.transport is not None
            request.transport.close()
            return True
        return False

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.faults], client_max_size=1 << 30)
        app.add_routes(
            [
                web.post("/v1/chat/completions", self.live),
                web.post("/v1/files", self.upload),
                web.get("/v1/files", self.list_files),
                web.get("/v1/files/{id}", self.get_file),
                web.get("/v1/files/{id}/content", self.file_content),
                web.post("/v1/batches", self.create_openai),
                web.get("/v1/batches", self.list_openai),
                web.get("/v1/batches/{id}", self.get_openai),
                web.post("/v1/batches/{id}/cancel", self.cancel_openai),
                web.post("/v1/messages/batches", self.create_anthropic),
                web.get("/v1/messages/batches", self.list_anthropic),
                web.get("/v1/messages/batches/{id}", self.get_anthropic),
                web.post("/v1/messages/batches/{id}/cancel", self.cancel_anthropic),
                web.get("/v1/messages/batches/{id}/results", self.results_anthropic),
            ]
        )
        return app

    @staticmethod
    def error(status: int, message: str) -> web.Response:
        return web.json_response({"error": {"message": message}}, status=status)

    # -- answering -----------------------------------------------------------------------------

    async def answer(self, body: dict[str, Any], key: str = "") -> tuple[int, dict[str, Any]]:
        """(status, JSON body) for one request, by the live mock server's logic (whose 4xx
        errors quote the key the batch was created with, as some servers do)."""
        reply = await self.answers.respond(body, key)
        try:
            data = json.loads(reply.body)
        except ValueError:  # a body the live server sends broken: here, one without a choice
            data = {"id": "broken", "choices": []}
        if not isinstance(data, dict):
            data = {"error": {"message": reply.body.decode("utf-8", "replace")}}
        return reply.status, data

    @staticmethod
    def prompt_of(messages: list[dict[str, Any]]) -> str:
        users = [m.get("content", "") for m in messages if m.get("role") == "user"]
        return str(users[-1]) if users else ""

    def save_attempts(self) -> None:
        self.state._write(
            self.state.attempts_path, json.dumps(dict(self.answers.attempts)).encode()
        )

    def phase(self, batch: dict[str, Any]) -> float:
        """How far along a batch is: 0 at creation, 1 once its processing time has passed."""
        if self.duration <= 0:
            return 1.0
        return min(1.0, (time.time() - batch["created_at"]) / self.duration)

    async def live(self, request: web.Request) -> web.Response:
        """A live chat completion, as the live mock server answers it (judges' sanity checks,
        answers retried live)."""
        reply = await self.answers.respond(await request.json())
        self.save_attempts()
        self.state.log(event="live")
        return web.Response(
            status=reply.status, body=reply.body, content_type=reply.content_type.split(";")[0]
        )

    # -- OpenAI ----------------------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        if form.get("purpose") != "batch" or not isinstance(upload, web.FileField):
            return self.error(400, "expected purpose=batch and a file")
        data = upload.file.read()
        meta = {
            "id": f"file-{secrets.token_hex(8)}",
            "object": "file",
            "bytes": len(data),
            "created_at": time.time(),
            "filename": upload.filename,
            "purpose": "batch",
        }
        self.state.put_content(meta["id"], data)
        self.state.save("files", meta)
        self.state.log(event="upload", id=meta["id"], filename=upload.filename)
        if await self.lose("upload", request):
            return web.Response()
        return web.json_response(meta)

    async def list_files(self, request: web.Request) -> web.Response:
        files = self.state.all("files")
        purpose = request.query.get("purpose")
        if purpose:
            files = [f for f in files if f.get("purpose") == purpose]
        if request.query.get("order") == "asc":
            files.reverse()
        return web.json_response(self.page(files, request, "after"))

    @staticmethod
    def page(objs: list[dict[str, Any]], request: web.Request, cursor: str) -> dict[str, Any]:
        after = request.query.get(cursor)
        if after:
            ids = [o["id"] for o in objs]
            objs = objs[ids.index(after) + 1 :] if after in ids else []
        limit = int(request.query.get("limit", "20"))
        shown = objs[:limit]
        return {
            "object": "list",
            "data": shown,
            "has_more": len(objs) > limit,
            "first_id": shown[0]["id"] if shown else None,
            "last_id": shown[-1]["id"] if shown else None,
        }

    async def get_file(self, request: web.Request) -> web.Response:
        meta = self.state.load("files", request.match_info["id"])
        return web.json_response(meta) if meta else self.error(404, "no such file")

    async def file_content(self, request: web.Request) -> web.Response:
        file_id = request.match_info["id"]
        if self.state.load("files", file_id) is None:
            return self.error(404, "no such file")
        self.state.log(event="download", id=file_id)
        await asyncio.sleep(self.slow_download)
        return web.Response(body=self.state.content(file_id), content_type="application/jsonl")

    def read_input(self, file_id: str) -> tuple[list[dict[str, Any]], str | None]:
        """The requests of an input file, or why it cannot be used."""
        requests, seen = [], set()
        for number, line in enumerate(self.state.content(file_id).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                custom_id, body = request["custom_id"], request["body"]
            except (ValueError, KeyError, TypeError):
                return [], f"line {number}: not a request"
            if custom_id in seen:
                return [], f"line {number}: duplicate custom_id {custom_id!r}"
            seen.add(custom_id)
            requests.append({"custom_id": custom_id, "body": body})
        return requests, None

    async def create_openai(self, request: web.Request) -> web.Response:
        body = await request.json()
        file_id = body.get("input_file_id")
        if self.state.load("files", str(file_id)) is None:
            return self.error(400, f"no such file: {file_id}")
        if body.get("completion_window") != "24h" or body.get("endpoint") != "/v1/chat/completions":
            return self.error(400, "completion_window must be 24h, endpoint /v1/chat/completions")
        requests, problem = self.read_input(file_id)
        if self.max_requests is not None and len(requests) > self.max_requests:
            return self.error(400, f"{len(requests)} requests: over the {self.max_requests} limit")
        batch = {
            "id": f"batch_{secrets.token_hex(8)}",
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": file_id,
            "completion_window": "24h",
            "created_at": time.time(),
            "metadata": body.get("metadata") or {},
            "problem": problem,
            "total": len(requests),
            "final": None,
            "cancelled_at": None,
            "key": request.headers.get("Authorization", "").removeprefix("Bearer "),
        }
        self.state.save("batches", batch)
        self.state.log(
            event="create",
            api="openai",
            id=batch["id"],
            requests=len(requests),
            custom_ids=[r["custom_id"] for r in requests],
        )
        if await self.lose("batch", request):
            return web.Response()
        return web.json_response(await self.openai_view(batch))

    async def openai_view(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch as OpenAI shows it now, finishing it first if its time has come."""
        if batch["final"] is None:
            await self.maybe_finish_openai(batch)
        total = batch["total"]
        view = {
            k: batch[k]
            for k in ("id", "object", "endpoint", "input_file_id", "completion_window", "metadata")
        }
        view["created_at"] = int(batch["created_at"])
        final = batch["final"]
        if final is not None:
            view.update(
                status=final["status"],
                output_file_id=final.get("output_file_id"),
                error_file_id=final.get("error_file_id"),
                request_counts=final["counts"],
                errors=final.get("errors"),
            )
            return view
        phase = self.phase(batch)
        status = "cancelling" if batch["cancelled_at"] else "validating"
        if not batch["cancelled_at"] and phase >= 0.1:
            status = "in_progress"
        done = int(total * phase)
        view.update(
            status=status,
            output_file_id=None,
            error_file_id=None,
            request_counts={"total": total, "completed": done, "failed": 0},
            errors=None,
        )
        return view

    async def maybe_finish_openai(self, batch: dict[str, Any]) -> None:
        problem = batch["problem"]
        if problem is not None:
            batch["final"] = {
                "status": "failed",
                "counts": {"total": 0, "completed": 0, "failed": 0},
                "errors": {
                    "object": "list",
                    "data": [{"code": "invalid_request", "message": problem}],
                },
            }
            self.state.save("batches", batch)
            return
        cancelled = batch["cancelled_at"] is not None
        if not cancelled and self.phase(batch) < 1:
            return
        requests, _ = self.read_input(batch["input_file_id"])
        if cancelled:  # what was done by the time it was cancelled
            share = min(
                1.0, (batch["cancelled_at"] - batch["created_at"]) / max(self.duration, 1e-9)
            )
            requests = requests[: int(len(requests) * share)]
        output, errors = [], []
        expired = False
        for request in requests:
            line_id = f"batch_req_{secrets.token_hex(6)}"
            messages = request["body"].get("messages") or []
            if "[[expire]]" in self.prompt_of(messages):
                expired = True
                error = {
                    "code": "batch_expired",
                    "message": "not executed before the completion window expired",
                }
                errors.append(
                    {
                        "id": line_id,
                        "custom_id": request["custom_id"],
                        "response": None,
                        "error": error,
                    }
                )
                continue
            status, body = await self.answer(request["body"], batch.get("key", ""))
            line = {
                "id": line_id,
                "custom_id": request["custom_id"],
                "response": {"status_code": status, "request_id": line_id, "body": body},
                "error": None,
            }
            (output if status == 200 else errors).append(line)
        self.save_attempts()
        final: dict[str, Any] = {
            "status": "cancelled" if cancelled else ("expired" if expired else "completed"),
            "counts": {
                "total": batch["total"],
                "completed": len(output),
                "failed": len(errors),
            },
        }
        rng = random.Random(batch["id"])
        for name, lines in (("output_file_id", output), ("error_file_id", errors)):
            if lines:
                rng.shuffle(lines)
                file_id = f"file-{secrets.token_hex(8)}"
                data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
                self.state.put_content(file_id, data.encode("utf-8"))
                meta = {
                    "id": file_id,
                    "object": "file",
                    "bytes": len(data.encode("utf-8")),
                    "created_at": time.time(),
                    "filename": f"{batch['id']}_{name}.jsonl",
                    "purpose": "batch_output",
                }
                self.state.save("files", meta)
                final[name] = file_id
        batch["final"] = final
        self.state.save("batches", batch)

    async def list_openai(self, request: web.Request) -> web.Response:
        views = [await self.openai_view(b) for b in self.state.all("batches") if "endpoint" in b]
        return web.json_response(self.page(views, request, "after"))

    async def get_openai(self, request: web.Request) -> web.Response:
        batch = self.state.load("batches", request.match_info["id"])
        if batch is None or "endpoint" not in batch:
            return self.error(404, "no such batch")
        return web.json_response(await self.openai_view(batch))

    async def cancel_openai(self, request: web.Request) -> web.Response:
        batch = self.state.load("batches", request.match_info["id"])
        if batch is None or "endpoint" not in batch:
            return self.error(404, "no such batch")
        if batch["final"] is None and batch["cancelled_at"] is None:
            batch["cancelled_at"] = time.time()
            self.state.save("batches", batch)
            self.state.log(event="cancel", id=batch["id"])
        return web.json_response(await self.openai_view(batch))

    # -- Anthropic -------------------------------------------------------------------------------

    async def create_anthropic(self, request: web.Request) -> web.Response:
        if request.headers.get("anthropic-version") is None:
            return self.error(400, "anthropic-version header required")
        body = await request.json()
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return self.error(400, "requests: a non-empty list")
        if self.max_requests is not None and len(requests) > self.max_requests:
            return self.error(400, f"{len(requests)} requests: over the {self.max_requests} limit")
        ids = [r.get("custom_id") for r in requests]
        if len(set(ids)) != len(ids):
            return self.error(400, "custom_id values must be unique")
        for r in requests:
            params = r.get("params") or {}
            if (
                not params.get("max_tokens")
                or not params.get("messages")
                or "system" in [m.get("role") for m in params["messages"]]
            ):
                return self.error(400, f"{r.get('custom_id')}: params need max_tokens and messages")
        batch = {
            "id": f"msgbatch_{secrets.token_hex(8)}",
            "created_at": time.time(),
            "total": len(requests),
            "final": None,
            "cancelled_at": None,
            "key": request.headers.get("x-api-key", ""),
        }
        path = self.state.folder / "batches" / f"{batch['id']}.requests"
        self.state._write(path, json.dumps(requests).encode())
        self.state.save("batches", batch)
        self.state.log(
            event="create", api="anthropic", id=batch["id"], requests=len(requests), custom_ids=ids
        )
        if await self.lose("batch", request):
            return web.Response()
        return web.json_response(await self.anthropic_view(batch, request))

    async def anthropic_view(self, batch: dict[str, Any], request: web.Request) -> dict[str, Any]:
        if batch["final"] is None:
            await self.maybe_finish_anthropic(batch)
        total = batch["total"]
        final = batch["final"]
        view: dict[str, Any] = {
            "id": batch["id"],
            "type": "message_batch",
            "created_at": _iso(batch["created_at"]),
            "expires_at": _iso(batch["created_at"] + 86400),
            "cancel_initiated_at": _iso(batch["cancelled_at"]) if batch["cancelled_at"] else None,
            "archived_at": None,
        }
        if final is not None:
            results = f"{request.url.origin()}/v1/messages/batches/{batch['id']}/results"
            view.update(
                processing_status="ended",
                request_counts=final["counts"],
                ended_at=_iso(final["ended_at"]),
                results_url=results,
            )
            return view
        done = int(total * self.phase(batch))
        view.update(
            processing_status="canceling" if batch["cancelled_at"] else "in_progress",
            request_counts={
                "processing": total - done,
                "succeeded": done,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            ended_at=None,
            results_url=None,
        )
        return view

    async def maybe_finish_anthropic(self, batch: dict[str, Any]) -> None:
        cancelled = batch["cancelled_at"] is not None
        if not cancelled and self.phase(batch) < 1:
            return
        path = self.state.folder / "batches" / f"{batch['id']}.requests"
        requests = json.loads(path.read_text("utf-8"))
        limit = len(requests)
        if cancelled:
            share = min(
                1.0, (batch["cancelled_at"] - batch["created_at"]) / max(self.duration, 1e-9)
            )
            limit = int(len(requests) * share)
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        lines = []
        for n, r in enumerate(requests):
            params = r["params"]
            if n >= limit:
                result: dict[str, Any] = {"type": "canceled"}
            elif "[[expire]]" in self.prompt_of(params["messages"]):
                result = {"type": "expired"}
            else:
                messages = (
                    [{"role": "system", "content": params["system"]}] if "system" in params else []
                )
                body = {**params, "messages": messages + params["messages"]}
                body.pop("system", None)
                status, data = await self.answer(body, batch.get("key", ""))
                if status == 200 and data.get("choices"):
                    choice = data["choices"][0]
                    content = choice["message"]["content"]
                    usage = data.get("usage") or {}
                    reason = {"stop": "end_turn", "length": "max_tokens"}.get(
                        choice.get("finish_reason"), "end_turn"
                    )
                    result = {
                        "type": "succeeded",
                        "message": {
                            "id": f"msg_{secrets.token_hex(6)}",
                            "type": "message",
                            "role": "assistant",
                            "model": params["model"],
                            "content": []
                            if content is None
                            else [{"type": "text", "text": content}],
                            "stop_reason": reason,
                            "usage": {
                                "input_tokens": usage.get("prompt_tokens"),
                                "output_tokens": usage.get("completion_tokens"),
                            },
                        },
                    }
                elif status == 200:  # a body without a choice: a message without content
                    result = {
                        "type": "succeeded",
                        "message": {"id": "broken", "type": "message", "content": None},
                    }
                else:
                    kind = "overloaded_error" if status >= 500 else "invalid_request_error"
                    message = (data.get("error") or {}).get("message", "error")
                    result = {
                        "type": "errored",
                        "error": {"type": "error", "error": {"type": kind, "message": message}},
                    }
            counts[result["type"]] += 1
            lines.append({"custom_id": r["custom_id"], "result": result})
        self.save_attempts()
        random.Random(batch["id"]).shuffle(lines)
        data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        self.state.put_content(f"{batch['id']}.results", data.encode("utf-8"))
        batch["final"] = {"counts": counts, "ended_at": time.time()}
        self.state.save("batches", batch)

    def anthropic_batch(self, request: web.Request) -> dict[str, Any] | None:
        batch = self.state.load("batches", request.match_info["id"])
        return batch if batch is not None and "endpoint" not in batch else None

    async def list_anthropic(self, request: web.Request) -> web.Response:
        views = [
            await self.anthropic_view(b, request)
            for b in self.state.all("batches")
            if "endpoint" not in b
        ]
        return web.json_response(self.page(views, request, "after_id"))

    async def get_anthropic(self, request: web.Request) -> web.Response:
        batch = self.anthropic_batch(request)
        if batch is None:
            return self.error(404, "no such batch")
        return web.json_response(await self.anthropic_view(batch, request))

    async def cancel_anthropic(self, request: web.Request) -> web.Response:
        batch = self.anthropic_batch(request)
        if batch is None:
            return self.error(404, "no such batch")
        if batch["final"] is None and batch["cancelled_at"] is None:
            batch["cancelled_at"] = time.time()
            self.state.save("batches", batch)
            self.state.log(event="cancel", id=batch["id"])
        return web.json_response(await self.anthropic_view(batch, request))

    async def results_anthropic(self, request: web.Request) -> web.Response:
        batch = self.anthropic_batch(request)
        if batch is None:
            return self.error(404, "no such batch")
        await self.anthropic_view(batch, request)
        if batch["final"] is None:
            return self.error(400, "the batch has not ended")
        self.state.log(event="download", id=batch["id"])
        await asyncio.sleep(self.slow_download)
        body = self.state.content(f"{batch['id']}.results")
        return web.Response(body=body, content_type="application/binary")


def _lose(value: str) -> tuple[str, int]:
    kind, _, times = value.partition(":")
    return kind, int(times or 1)


async def serve(args: argparse.Namespace) -> None:
    server = MockBatchServer(
        Path(args.state),
        duration=args.duration,
        max_requests=args.max_requests,
        flaky=args.flaky,
        lose_reply=dict(args.lose_reply or []),
        slow_create=args.slow_create,
        slow_download=args.slow_download,
    )
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, reuse_address=True)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {port}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state", required=True, help="folder that holds the server's state")
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION)
    parser.add_argument("--max-requests", type=int, default=None)
    parser.add_argument("--flaky", type=int, default=0, help="every Nth request gets a 503")
    parser.add_argument("--lose-reply", type=_lose, action="append", metavar="KIND:N")
    parser.add_argument(
        "--slow-create", type=float, default=0.0, help="seconds between a create and its reply"
    )
    parser.add_argument(
        "--slow-download", type=float, default=0.0, help="seconds before a download is sent"
    )
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
