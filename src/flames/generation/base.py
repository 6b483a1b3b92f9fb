"""The one small interface every generation backend implements."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from flames.data.dataset import Item
from flames.runs.records import Answer, Decoding, GeneratorInfo


@dataclass(frozen=True)
class Request:
    """Ask for answer number `sample` to `item`."""

    item: Item
    sample: int = 0


DEFAULT_MAX_TOKENS = 1024
"""Answer length limit where the decoding settings leave max_tokens unset."""


def sample_seed(seed: int | None, sample: int) -> int | None:
    """The decoding seed of answer number `sample`, the same in every backend.

    Sample 0 uses `seed` as given, so a single answer per prompt is asked exactly as a direct
    request with that seed would be. Sample k > 0 gets a seed drawn from numpy's SeedSequence
    keyed by (seed, k): distinct per sample, and not shared with the samples of a nearby seed
    (as ``seed + k`` would be). None stays None: the server or library picks.
    """
    if seed is None or sample == 0:
        return seed
    state = np.random.SeedSequence(seed, spawn_key=(sample,)).generate_state(1)[0]
    return int(state) >> 1  # 31 bits: a valid seed for every server and library


def is_clamped(answer: Answer, max_tokens: int | None) -> bool:
    """An answer cut for length before reaching `max_tokens`: the server lowered the limit,
    usually to fit its context window, without saying so."""
    return (
        answer.status == "ok"
        and answer.finish_reason == "length"
        and max_tokens is not None
        and answer.completion_tokens is not None
        and answer.completion_tokens < max_tokens
    )


def error_answer(request: Request, exc: Exception) -> Answer:
    """A failed request, recorded with the reason (never scored)."""
    message = f"{type(exc).__name__}: {exc}"[:1000]
    return Answer(item_id=request.item.id, sample=request.sample, status="error", error=message)


async def stream_concurrently(
    requests: Iterable[Request],
    ask: Callable[[Request], Awaitable[Answer]],
    concurrency: int,
) -> AsyncIterator[Answer]:
    """`ask` each request, `concurrency` at a time, yielding answers in completion order.

    A fixed pool of workers takes requests from `requests` as they go, so only the requests in
    flight (and at most `concurrency` answers not yet consumed) are held, however many there are.
    """
    todo = iter(requests)
    answers: asyncio.Queue[Answer] = asyncio.Queue(maxsize=concurrency)

    async def worker() -> None:
        for request in todo:  # shared: each request is taken by one worker
            await answers.put(await ask(request))

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


def chat_messages(prompt: str, decoding: Decoding) -> list[dict[str, str]]:
    """The prompt as a single user turn, after the system prompt if one is set."""
    messages = []
    if decoding.system_prompt:
        messages.append({"role": "system", "content": decoding.system_prompt})
    messages.append({"role": "user", "content": prompt})
    return messages


class Backend(Protocol):
    """Turns requests into answers. Failures become error answers; nothing is raised per item."""

    @property
    def info(self) -> GeneratorInfo:
        """What goes into the manifest: backend, model and every setting that changes answers."""
        ...

    def stream(self, requests: Iterable[Request]) -> AsyncIterator[Answer]:
        """Yield one answer per request, in completion order (requests may be a stream)."""
        ...
