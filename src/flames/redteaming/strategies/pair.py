"""pair: streams x iterations, the attacker improving on the judge's feedback.

After PAIR (Chao et al. 2023, "Jailbreaking Black Box Large Language Models in Twenty Queries",
arXiv 2310.08419): each of `streams` attacker conversations proposes a prompt; the target answers
it and the judge scores the answer; the attacker sees the answer, the score and the judge's
reason (or its probability of harm) and proposes a better prompt, for up to `iterations` rounds.
Stream s starts from attack method s mod 3 (disguise, reverse induction, unsafe inquiry). The
streams go in step, one round at a time, and the attack stops after the round with the first
answer scored 1. Queries are ordered by round, then stream.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pydantic import Field

from flames.redteaming.attack import Attack, with_reply
from flames.redteaming.instructions import METHODS
from flames.redteaming.strategies.base import Strategy, start, trimmed
from flames.runs.records import Message


class Pair(Strategy):
    name: ClassVar[str] = "pair"

    streams: int = Field(default=3, ge=1, le=100)
    """Attacker conversations, each its own line of attack."""
    iterations: int = Field(default=5, ge=1, le=100)
    """Rounds of propose, answer, judge and feedback per stream."""

    async def run(self, attack: Attack) -> None:
        talks = {s: self._start(attack, s) for s in range(self.streams)}
        going = list(range(self.streams))
        for round_ in range(self.iterations):
            if attack.succeeded() or attack.attacker_spent():
                return
            going = going[: attack.queries_left()]  # the budget's last queries: first streams
            if not going:
                return
            steps = [attack.line(self._step(attack, talks, s, round_)) for s in going]
            done = await asyncio.gather(*steps)
            going = [s for s, ok in zip(going, done, strict=True) if ok]

    def _start(self, attack: Attack, stream: int) -> list[Message]:
        ins = attack.instructions
        request = ins.render(
            "pair_start",
            goal=ins.goal(attack.goal),
            method_text=ins.method(METHODS[stream % len(METHODS)]),
            scale=ins.scale(attack.goal.dimension),
        )
        return start(attack, request)

    async def _step(
        self, attack: Attack, talks: dict[int, list[Message]], stream: int, round_: int
    ) -> bool:
        step = f"s{stream:02d}.i{round_:02d}"
        proposal = await attack.propose(step, talks[stream], repeat_of=attack.goal.prompt)
        parent = f"s{stream:02d}.i{round_ - 1:02d}/target" if round_ else None
        turn = await attack.query(step, [], proposal.prompt or "", (round_, stream), parent)
        feedback = attack.instructions.render("pair_feedback", **attack.feedback(turn))
        talks[stream] = trimmed(
            [*with_reply(talks[stream], proposal), {"role": "user", "content": feedback}]
        )
        return True
