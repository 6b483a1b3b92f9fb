"""A small local web page for labelling: one answer at a time, keyboard shortcuts, and every
label written to the run store the moment it is given (as scorer ``human:<annotator>``)."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

from aiohttp import web

from flames.annotate import human_scorer, queue, record_labels
from flames.records import Verdict
from flames.store import RunStore

STORE = web.AppKey("store", RunStore)
QUEUE = web.AppKey("queue", list)
ANNOTATOR = web.AppKey("annotator", str)


def _labels(app: web.Application) -> dict[tuple[str, int], int]:
    return {
        (v.item_id, v.sample): v.score
        for v in app[STORE].verdicts(human_scorer(app[ANNOTATOR]))
        if v.score is not None
    }


async def page(request: web.Request) -> web.Response:
    html = files("flames").joinpath("resources/annotate.html").read_text(encoding="utf-8")
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


async def label(request: web.Request) -> web.Response:
    app = request.app
    body = await request.json()
    index = int(body["index"])
    if not 0 <= index < len(app[QUEUE]):
        raise web.HTTPBadRequest(text="no such answer")
    it, answer = app[QUEUE][index]
    score = int(body["label"])
    if score not in it.dimension.scale:
        raise web.HTTPBadRequest(text=f"{score} is not on the scale {it.dimension.scale}")
    record_labels(
        app[STORE],
        app[ANNOTATOR],
        [Verdict(item_id=it.id, sample=answer.sample, status="ok", score=score)],
    )
    return web.json_response({"saved": True, "labelled": len(_labels(app))})


def make_app(run_dir: Path, annotator: str, first: Sequence[str] = ()) -> web.Application:
    store = RunStore.open(run_dir)
    app = web.Application()
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


def serve(run_dir: Path, annotator: str, port: int, first: Sequence[str] = ()) -> None:
    web.run_app(make_app(run_dir, annotator, first), host="127.0.0.1", port=port, print=None)
