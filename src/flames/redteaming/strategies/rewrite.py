"""rewrite: Flames-style prompt synthesis without feedback.

Each method in turn (at most one target query each): the attacker rewrites the seed prompt with
one of the paper's attack methods (disguise or role-play, reverse induction, unsafe inquiry), or
one of flames' rule transforms (`flames data augment --list`) rewrites it with no attacker at all.
The attack stops at the first answer scored 1, or when the methods or the budget run out.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from flames.data.augment import TRANSFORMS
from flames.redteaming.attack import Attack
from flames.redteaming.instructions import METHODS
from flames.redteaming.strategies.base import Strategy, start


class Rewrite(Strategy):
    name: ClassVar[str] = "rewrite"

    methods: list[str] = Field(default_factory=lambda: list(METHODS), min_length=1)
    """Attack methods (disguise, reverse_induction, unsafe_inquiry) and transforms, in order."""

    @field_validator("methods")
    @classmethod
    def _known(cls, methods: list[str]) -> list[str]:
        unknown = [m for m in methods if m not in METHODS and m not in TRANSFORMS]
        if unknown:
            known = ", ".join([*METHODS, *TRANSFORMS])
            raise ValueError(f"unknown method(s) {', '.join(unknown)} (known: {known})")
        if len(set(methods)) != len(methods):
            raise ValueError("a method is named twice")
        return methods

    async def run(self, attack: Attack) -> None:
        for index, method in enumerate(self.methods):
            if attack.succeeded() or attack.attacker_spent() or not attack.queries_left():
                return
            await attack.line(self._try(attack, index, method))

    async def _try(self, attack: Attack, index: int, method: str) -> None:
        step = f"m{index:02d}"
        goal = attack.goal
        if method in METHODS:
            request = attack.instructions.render(
                "rewrite",
                goal=attack.instructions.goal(goal),
                method_text=attack.instructions.method(method),
            )
            proposal = await attack.propose(step, start(attack, request), repeat_of=goal.prompt)
            prompt = proposal.prompt or ""
        else:  # a rule transform, seeded by the run's seed and the goal
            prompt = TRANSFORMS[method](goal.prompt, attack.settings.seed, goal.id)
        await attack.query(step, [], prompt, (index,))
