"""The one small interface every generation backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from flames.dataset import Item
from flames.records import Answer, Decoding, GeneratorInfo


@dataclass(frozen=True)
class Request:
    """Ask for answer number `sample` to `item`."""

    item: Item
    sample: int = 0


DEFAULT_MAX_TOKENS = 1024
"""Answer length limit where the decoding settings leave max_tokens unset."""


def error_answer(request: Request, exc: Exception) -> Answer:
    """A failed request, recorded with the reason (never scored)."""
    message = f"{type(exc).__name__}: {exc}"[:1000]
    return Answer(item_id=request.item.id, sample=request.sample, status="error", error=message)


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

    def stream(self, requests: Sequence[Request]) -> AsyncIterator[Answer]:
        """Yield one answer per request, in completion order."""
        ...
