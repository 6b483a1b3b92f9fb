"""Running a coroutine to completion from synchronous code, with or without a running loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` and return its result.

    Without a running event loop this is ``asyncio.run``. Inside one (a Jupyter kernel, an async
    application) ``asyncio.run`` would refuse, so the coroutine runs on its own loop in a worker
    thread while this thread waits for it.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="flames-sync") as pool:
        return pool.submit(asyncio.run, coroutine).result()
