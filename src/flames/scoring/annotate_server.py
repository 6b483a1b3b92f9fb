"""A small local web page for labelling: one answer at a time, keyboard shortcuts, and every
label written to the run store the moment it is given (as scorer ``human:<annotator>``).

Only the page itself can write: every write carries a token made for this server and embedded
in the page; the Host and Origin headers must name the address the server is bound to (no DNS
rebinding, no other origin); bodies must be JSON; a label must be an integer on the item's scale.
No other page may frame it (``X-Frame-Options: DENY`` and ``frame-ancestors 'none'`` on every
response: no clickjacking). Anything malformed gets a 400 naming what is wrong, never a 500 or a
traceback; the server says where it is only once it is listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from aiohttp import web

from flames.errors import FlamesError
from flames.runs.records import Verdict
from flames.runs.store import RunStore
from flames.scoring.annotate import human_scorer, queue, record_labels

STORE = web.AppKey("store", RunStore)
QUEUE = web.AppKey("queue", list)
ANNOTATOR = web.AppKey("annotator", str)
TOKEN = web.AppKey("token", str)
TOKEN_HEADER = "X-Flames-Token"
LOCAL_NAMES = ("127.0.0.1", "localhost")
HOST = "127.0.0.1"
NOT_FRAMED = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
"""Sent with every response: no page of another origin can frame this one (clickjacking)."""
INDEX = re.compile(r"-?[0-9]{1,18}")
MAX_BODY = 64 * 1024
"""A label's request is a few dozen bytes."""
log = logging.getLogger(__name__)


class PortInUse(FlamesError):
    """The labelling page's port is taken (exit code 1): choose another with --port."""


async def not_framed(_: web.Request, response: web.StreamResponse) -> None:
    """Every response, errors included, forbids framing."""
    response.headers.update(NOT_FRAMED)


@web.middleware
async def no_tracebacks(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A failure the handlers did not foresee is answered 500 in one logged line, without the
    traceback aiohttp would print."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        log.error("%s %s failed: %s: %s", request.method, request.path, type(exc).__name__, exc)
        raise web.HTTPInternalServerError(text="internal error") from None


@web.middleware
async def same_origin(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Refuse requests whose Host or Origin is not this server's own address."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    port = sockname[1] if sockname else None
    allowed = {f"{name}:{port}" for name in LOCAL_NAMES}
    if request.host not in allowed:
        raise web.HTTPForbidden(text="unexpected Host header")
    origin = request.headers.get("Origin")
    if origin is not None and origin not in {f"http://{host}" for host in allowed}:
        raise web.HTTPForbidden(text="cross-origin request refused")
    return await handler(request)


def _labels(app: web.Application) -> dict[tuple[str, int], int]:
    return {
        (v.item_id, v.sample): v.score
        for v in app[STORE].verdicts(human_scorer(app[ANNOTATOR]))
        if v.score is not None
    }


async def page(request: web.Request) -> web.Response:
    html = files("flames").joinpath("resources/annotate.html").read_text(encoding="utf-8")
    html = html.replace("{{token}}", request.app[TOKEN])
    return web.Response(text=html, content_type="text/html")


async def item(request: web.Request) -> web.Response:
    app = request.app
    items = app[QUEUE]
    labels = _labels(app)
    index = request.query.get("index")
    if index is None:  # the first answer not labelled yet
        position = next(
            (i for i, (it, a) in enumerate(items) if (it.id, a.sample) not in labels),
            len(items) - 1,
        )
    else:
        if not INDEX.fullmatch(index):
            raise web.HTTPBadRequest(text="index must be an integer of at most 18 digits")
        position = max(0, min(int(index), len(items) - 1))
    it, answer = items[position]
    return web.json_response(
        {
            "index": position,
            "total": len(items),
            "labelled": len(labels),
            "annotator": app[ANNOTATOR],
            "item_id": it.id,
            "sample": answer.sample,
            "dimension": it.dimension.value,
            "subcomponent": it.subcomponent,
            "scale": list(it.dimension.scale),
            "prompt": it.prompt,
            "response": answer.response,
            "label": labels.get((it.id, answer.sample)),
        }
    )


def _integer(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise web.HTTPBadRequest(text=f"{key} must be an integer, not {value!r}")
    return value


async def label(request: web.Request) -> web.Response:
    app = request.app
    given = request.headers.get(TOKEN_HEADER, "").encode("utf-8", "surrogateescape")
    if not secrets.compare_digest(given, app[TOKEN].encode()):
        raise web.HTTPForbidden(text="missing or wrong token: reload the page")
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send application/json")
    try:
        body = json.loads(await request.read())
    except RecursionError:
        raise web.HTTPBadRequest(text="the body is nested too deeply") from None
    except ValueError:  # not JSON, not UTF-8, or a number too long to read
        raise web.HTTPBadRequest(text="the body is not JSON a label can be read from") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    index = _integer(body, "index")
    if not 0 <= index < len(app[QUEUE]):
        raise web.HTTPBadRequest(text="no such answer")
    it, answer = app[QUEUE][index]
    score = _integer(body, "label")
    if score not in it.dimension.scale:
        raise web.HTTPBadRequest(text=f"{score} is not on the scale {it.dimension.scale}")
    record_labels(
        app[STORE],
        app[ANNOTATOR],
        [Verdict(item_id=it.id, sample=answer.sample, status="ok", score=score)],
    )
    return web.json_response({"saved": True, "labelled": len(_labels(app))})


def make_app(
    run_dir: Path, annotator: str, first: Sequence[str] = (), wait: bool = False
) -> web.Application:
    store = RunStore.open_writer(run_dir, "annotate serve", wait)
    app = web.Application(middlewares=[no_tracebacks, same_origin], client_max_size=MAX_BODY)
    app.on_response_prepare.append(not_framed)
    app[TOKEN] = secrets.token_urlsafe(32)
    app[STORE] = store
    app[QUEUE] = queue(store, first)
    app[ANNOTATOR] = annotator
    app.router.add_get("/", page)
    app.router.add_get("/api/item", item)
    app.router.add_post("/api/label", label)

    async def close_store(_: web.Application) -> None:
        store.close()

    app.on_cleanup.append(close_store)
    return app


def serve(
    run_dir: Path,
    annotator: str,
    port: int,
    first: Sequence[str] = (),
    wait: bool = False,
    ready: Callable[[str], None] = print,
) -> None:
    """Serve the page on 127.0.0.1:`port` until Ctrl-C; `ready` gets its URL once it is
    listening. PortInUse, in one line, when the port is taken."""
    app = make_app(run_dir, annotator, first, wait)
    with contextlib.suppress(KeyboardInterrupt):  # the way to stop it: labels are saved already
        asyncio.run(_serve(app, port, ready))


async def _serve(app: web.Application, port: int, ready: Callable[[str], None]) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, port)
        try:
            await site.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"port {port} on {HOST} is in use (another labelling page, or another "
                    "program): choose another with --port"
                ) from None
            raise FlamesError(f"cannot listen on {HOST}:{port}: {exc.strerror}") from None
        bound = runner.addresses[0][1]  # the port given, or the one chosen for port 0
        ready(f"http://{HOST}:{bound}/")
        await asyncio.Event().wait()  # until Ctrl-C cancels it
    finally:
        await runner.cleanup()
