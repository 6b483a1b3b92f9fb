"""What every strategy is: named parameters (recorded in the manifest) and a way to attack."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from flames.redteaming.attack import Attack
from flames.runs.records import Message

HISTORY = 3
"""Exchanges (the attacker's reply and the feedback on it) an attacker conversation keeps,
besides its start: older ones are dropped, so long searches fit any context window."""


class Strategy(BaseModel):
    """A way to attack one goal. Its fields are its parameters; `run` walks the attack through
    its calls (`flames.redteaming.attack.Attack`), deterministically given what they return."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str]
    multi_turn: ClassVar[bool] = False
    """Whether the target is asked in a conversation (it must take whole chats)."""

    async def run(self, attack: Attack) -> None:
        raise NotImplementedError

    def parameters(self) -> dict[str, object]:
        return self.model_dump()


def start(attack: Attack, text: str) -> list[Message]:
    """An attacker conversation: the system instructions, then `text`."""
    return [
        {"role": "system", "content": attack.instructions.texts["system"]},
        {"role": "user", "content": text},
    ]


def trimmed(conversation: list[Message]) -> list[Message]:
    """The conversation's start (system and first request) and its last `HISTORY` exchanges."""
    head, rest = conversation[:2], conversation[2:]
    return head + rest[-2 * HISTORY :] if len(rest) > 2 * HISTORY else conversation
