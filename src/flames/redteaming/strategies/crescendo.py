"""crescendo: a conversation with the target that escalates over up to `turns` turns.

After Crescendo (Russinovich et al. 2024, "Great, Now Write an Article About That: The Crescendo
Multi-Turn LLM Jailbreak Attack", arXiv 2404.01833). The attacker plays the user: it opens with
a harmless question related to the goal and, turn by turn, builds on the target's own answers
towards the goal. Every answer is judged (the attack stops at the first scored 1). An answer that
refuses (`flames.analysis.refusal`) is taken back: the turn is dropped from the target's history
and does not count as a turn, and the attacker is told to try another way, up to `backtracks`
times; after that a refused turn stays. Every query counts against the budget.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from flames.redteaming.attack import Attack, PathEnded, cut, with_reply
from flames.redteaming.strategies.base import Strategy, start
from flames.runs.records import Message


class Crescendo(Strategy):
    name: ClassVar[str] = "crescendo"
    multi_turn: ClassVar[bool] = True

    turns: int = Field(default=5, ge=1, le=20)
    """Turns of the conversation at most (refused turns taken back do not count)."""
    backtracks: int = Field(default=5, ge=0, le=20)
    """Refused turns taken back at most."""

    async def run(self, attack: Attack) -> None:
        await attack.line(self._talk(attack))

    async def _talk(self, attack: Attack) -> None:
        ins = attack.instructions
        talk = start(
            attack,
            ins.render(
                "crescendo_start",
                goal=ins.goal(attack.goal),
                turns=self.turns,
                scale=ins.scale(attack.goal.dimension),
            ),
        )
        history: list[Message] = []
        accepted = backtracked = asked = 0
        while accepted < self.turns:
            if attack.attacker_spent():
                raise PathEnded("budget")
            step = f"q{asked:02d}"
            # The opening must not be the seed itself; later turns may well come to it.
            proposal = await attack.propose(
                step, talk, repeat_of=attack.goal.prompt if not history else None
            )
            parent = f"q{asked - 1:02d}/target" if asked else None
            turn = await attack.query(step, history, proposal.prompt or "", (asked,), parent)
            asked += 1
            talk = with_reply(talk, proposal)
            if turn.succeeded:
                return
            if turn.refused and backtracked < self.backtracks:
                backtracked += 1
                attack.notes["backtracks"] += 1
                reply = ins.render("crescendo_refused", answer=cut(turn.answer))
                talk.append({"role": "user", "content": reply})
                continue
            history += [
                {"role": "user", "content": turn.prompt},
                {"role": "assistant", "content": turn.answer or ""},
            ]
            accepted += 1
            reply = ins.render(
                "crescendo_next", **attack.feedback(turn), turn=accepted, turns=self.turns
            )
            talk.append({"role": "user", "content": reply})
