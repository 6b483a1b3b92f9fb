"""Event-loop helpers: a bounded worker pool, and running coroutines from synchronous code with or
without a running loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


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


def iterate_sync(iterator: AsyncIterator[T]) -> Iterator[T]:
    """Yield the items of `iterator` from synchronous code, each the moment it comes.

    Like `run_sync`, it works with or without a running event loop (then on a loop of its own in
    a worker thread). Between two items the loop pauses, and resumes on the next request.
    """

    async def next_item() -> tuple[bool, T | None]:
        try:
            return True, await anext(iterator)
        except StopAsyncIteration:
            return False, None

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with asyncio.Runner() as runner:  # Ctrl-C cancels the work, as in asyncio.run
            while True:
                more, item = runner.run(next_item())
                if not more:
                    return
                yield item  # type: ignore[misc]
    loop = asyncio.new_event_loop()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="flames-sync") as pool:
        try:
            while True:
                more, item = pool.submit(loop.run_until_complete, next_item()).result()
                if not more:
                    return
                yield item  # type: ignore[misc]
        finally:
            pool.submit(loop.run_until_complete, loop.shutdown_asyncgens()).result()
            pool.submit(loop.close).result()


async def stream_concurrently(
    todo: Iterable[T],
    ask: Callable[[T], Awaitable[R]],
    concurrency: int,
) -> AsyncIterator[R]:
    """`ask` each item of `todo`, `concurrency` at a time, yielding results in completion order.

    A fixed pool of workers takes items from `todo` as they go, so only the items in flight (and
    at most `concurrency` results not yet consumed) are held, however many there are.
    """
    items = iter(todo)
    answers: asyncio.Queue[R] = asyncio.Queue(maxsize=concurrency)

    async def worker() -> None:
        for item in items:  # shared: each item is taken by one worker
            await answers.put(await ask(item))

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    workers = asyncio.gather(*tasks)
    # Cancelled with the pool (Ctrl-C, an early stop): not an error to report when collected.
    workers.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        while not (workers.done() and answers.empty()):
            got = asyncio.ensure_future(answers.get())
            await asyncio.wait([got, workers], return_when=asyncio.FIRST_COMPLETED)
            if got.done():
                yield got.result()
            else:
                got.cancel()
        workers.result()  # a worker's unexpected failure is raised, not swallowed
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
