"""A small local web page for labelling: one answer at a time, keyboard shortcuts, and every
label written to the run store the moment it is given (as scorer ``human:<annotator>``).

Only the page itself can write: every write carries a token made for this server and embedded
in the page; the Host and Origin headers must name the address the server is bound to (no DNS
rebinding, no other origin); bodies must be JSON; a label must be an integer on the item's scale.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from aiohttp import web

from flames.runs.records import Verdict
from flames.runs.store import RunStore
from flames.scoring.annotate import human_scorer, queue, record_labels

STORE = web.AppKey("store", RunStore)
QUEUE = web.AppKey("queue", list)
ANNOTATOR = web.AppKey("annotator", str)
TOKEN = web.AppKey("token", str)
TOKEN_HEADER = "X-Flames-Token"
LOCAL_NAMES = ("127.0.0.1", "localhost")


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
        if not index.lstrip("-").isdigit():
            raise web.HTTPBadRequest(text="index must be an integer")
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
    if not secrets.compare_digest(request.headers.get(TOKEN_HEADER, ""), app[TOKEN]):
        raise web.HTTPForbidden(text="missing or wrong token: reload the page")
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send application/json")
    try:
        body = json.loads(await request.text())
    except json.JSONDecodeError:
        raise web.HTTPBadRequest(text="the body is not JSON") from None
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
    app = web.Application(middlewares=[same_origin])
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
    run_dir: Path, annotator: str, port: int, first: Sequence[str] = (), wait: bool = False
) -> None:
    app = make_app(run_dir, annotator, first, wait)
    web.run_app(app, host="127.0.0.1", port=port, print=None)
