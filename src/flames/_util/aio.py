"""Event-loop helpers: a bounded worker pool, running coroutines from synchronous code with or
without a running loop, and the reverse: the async twins of synchronous functions, and
blocking work in threads that a Ctrl-C never waits on (`in_thread`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import itertools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from flames._util.interrupt import THREAD_PREFIX

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")


class Stopped(BaseException):
    """Raised by work in a thread that ended early because its stop event was set. Not an
    Exception: code that records failures as errors must never record it as one."""


class StoppedWithResult(asyncio.CancelledError):
    """The cancellation of an `in_thread` call whose work finished anyway, within its grace:
    `result` is what it returned (a batch of answers that is worth keeping)."""

    def __init__(self, result: Any) -> None:
        super().__init__()
        self.result = result


_numbers = itertools.count(1)


async def in_thread(
    function: Callable[..., T],
    *args: Any,
    stop: threading.Event | None = None,
    grace: float = 0.0,
) -> T:
    """``function(*args)`` in a worker thread, awaited without blocking the event loop.

    Unlike ``asyncio.to_thread``, a cancelled call (Ctrl-C) never holds up the exit: the thread
    is a daemon that no executor joins. Cancelling sets `stop`, which the work may check to end
    early (a local model between two tokens, raising `Stopped`), then waits up to `grace`
    seconds for the thread: if it returned by then, the cancellation raised is
    `StoppedWithResult`, carrying what it returned, so that finished work can be kept.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    # Cancelled before it finished: what it raises or returns is nobody's business any more.
    done.add_done_callback(lambda f: f.cancelled() or f.exception())
    context = contextvars.copy_context()  # as asyncio.to_thread: the caller's context vars

    def settle(outcome: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the caller has gone
            loop.call_soon_threadsafe(outcome)

    def work() -> None:
        try:
            result = context.run(function, *args)
        except BaseException as exc:
            failure = exc
            settle(lambda: done.done() or done.set_exception(failure))
        else:
            settle(lambda: done.done() or done.set_result(result))

    name = f"{THREAD_PREFIX}{getattr(function, '__name__', 'work')}-{next(_numbers)}"
    threading.Thread(target=work, name=name, daemon=True).start()
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        if stop is not None:
            stop.set()
        if grace > 0 and not done.done():
            await asyncio.wait([done], timeout=grace)
        if done.done() and not done.cancelled() and done.exception() is None:
            raise StoppedWithResult(done.result()) from None
        raise


class _CallersLoop:
    """The event loop of the code awaiting a function's async twin, and what runs on it for
    that function (to cancel it with the twin)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.running: set[concurrent.futures.Future[Any]] = set()
        self.cancelled = False

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self.cancelled:
            coroutine.close()
            raise asyncio.CancelledError
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        self.running.add(future)
        try:
            return future.result()
        finally:
            self.running.discard(future)

    def cancel(self) -> None:
        self.cancelled = True
        for future in list(self.running):
            future.cancel()


_callers_loop: ContextVar[_CallersLoop | None] = ContextVar("flames_callers_loop", default=None)


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` and return its result.

    Without a running event loop this is ``asyncio.run``. Inside one (a Jupyter kernel, an async
    application) ``asyncio.run`` would refuse, so the coroutine runs on its own loop in a worker
    thread while this thread waits for it. Under an async twin (`async_twin`) it runs on the
    loop of the code that awaits the twin.
    """
    caller = _callers_loop.get()
    if caller is not None and not _loop_running_here():
        return caller.run(coroutine)
    if not _loop_running_here():
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="flames-sync") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def async_twin(function: Callable[P, T], doc: str) -> Callable[P, Coroutine[Any, Any, T]]:
    """The ``_async`` twin of `function`, with its signature: `function` runs in a worker thread,
    leaving the running event loop free, and the coroutines it runs with `run_sync` (generation:
    an async model function) run on that loop. Cancelling the twin cancels them."""

    async def twin(*args: P.args, **kwargs: P.kwargs) -> T:
        caller = _CallersLoop(asyncio.get_running_loop())
        token = _callers_loop.set(caller)  # the worker thread runs in a copy of this context
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except asyncio.CancelledError:
            caller.cancel()
            raise
        finally:
            _callers_loop.reset(token)

    twin.__name__ = twin.__qualname__ = f"{function.__name__}_async"
    twin.__module__ = function.__module__
    twin.__doc__ = doc
    # For help() and the API reference: the annotations resolved where `function` is defined.
    twin.__signature__ = inspect.signature(function, eval_str=True)  # type: ignore[attr-defined]
    return twin


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
