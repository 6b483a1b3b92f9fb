"""The one small interface every generation backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from flames.data.dataset import Item
from flames.runs.records import Answer, GeneratorInfo


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
