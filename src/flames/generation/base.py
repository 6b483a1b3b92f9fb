"""The one small interface every generation backend implements."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from flames._util.aio import StoppedWithResult, in_thread
from flames.clients.chat import Reply
from flames.data.dataset import Item
from flames.runs.records import Answer, Decoding, GeneratorInfo, Message, chat_messages


@dataclass(frozen=True)
class Request:
    """Ask for answer number `sample` to `item`, after the earlier turns of its conversation
    (`history`: user and assistant turns in order; empty for a single-turn prompt)."""

    item: Item
    sample: int = 0
    history: tuple[Message, ...] = ()

    def messages(self, decoding: Decoding) -> list[Message]:
        """The chat the model is asked: system prompt, history, then the item's prompt."""
        return chat_messages(self.item.prompt, decoding, self.history)


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


def answer_of(request: Request, reply: Reply) -> Answer:
    """The answer a backend's reply (or its failure) makes for `request`."""
    return answer_from(request.item.id, request.sample, reply)


def answer_from(item_id: str, sample: int, reply: Reply) -> Answer:
    """The answer a reply (or its failure) makes for answer `sample` of `item_id`."""
    return Answer(
        item_id=item_id,
        sample=sample,
        status="error" if reply.error else "ok",
        response=reply.content,
        finish_reason=reply.finish_reason,
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        error=reply.error,
        latency_s=reply.latency_s,
        attempts=reply.attempts,
    )


def error_answer(request: Request, exc: Exception) -> Answer:
    """A failed request, recorded with the reason (never scored)."""
    message = f"{type(exc).__name__}: {exc}"[:1000]
    return Answer(item_id=request.item.id, sample=request.sample, status="error", error=message)


class Backend(Protocol):
    """Turns requests into answers. Failures become error answers; nothing is raised per item."""

    @property
    def info(self) -> GeneratorInfo:
        """What goes into the manifest: backend, model and every setting that changes answers."""
        ...

    def stream(self, requests: Iterable[Request]) -> AsyncIterator[Answer]:
        """Yield one answer per request, in completion order (requests may be a stream)."""
        ...


STOP_GRACE_S = 5.0
"""After Ctrl-C, how long a local model's batch may take to stop (it is asked to, between two
tokens) or to finish; a batch that finished in that time is kept."""

BatchWork = Callable[[Sequence[Request], threading.Event], list[Answer]]
"""A local backend's batch: answers to the requests, in a worker thread; raises
`flames._util.aio.Stopped` when the event is set before it finished."""


async def answers_in_thread(work: BatchWork, batch: Sequence[Request]) -> AsyncIterator[Answer]:
    """The answers of one batch, generated in a worker thread that a Ctrl-C asks to stop. A
    batch that finished all the same is still yielded, then the cancellation goes on."""
    stop = threading.Event()
    try:
        answers = await in_thread(work, batch, stop, stop=stop, grace=STOP_GRACE_S)
    except StoppedWithResult as late:
        for answer in late.result:
            yield answer
        raise asyncio.CancelledError from None
    for answer in answers:
        yield answer


LOCAL_LIBRARIES = ("torch", "transformers", "vllm")


def local_environment(device: str) -> dict[str, str]:
    """What a local backend generates with, for the manifest's information: the installed
    versions of torch, transformers and vLLM (those present), and the device ('cpu', or the GPU
    by name: 'cuda:0 (NVIDIA H200)')."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in LOCAL_LIBRARIES:
        with suppress(PackageNotFoundError):
            found[name] = version(name)
    return found | {"device": device_name(device)}


def device_name(device: str) -> str:
    """`device` with the GPU's name when it is a CUDA device."""
    if not device.startswith("cuda"):
        return device
    try:
        import torch

        index = torch.device(device).index or 0
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    except (ImportError, RuntimeError, AssertionError):
        return device
