"""tap: a tree of attacks, pruned before prompts reach the target and after they are scored.

After TAP (Mehrotra et al. 2023, "Tree of Attacks: Jailbreaking Black-Box LLMs Automatically",
arXiv 2312.02119). At each level, every leaf has the attacker propose `branching` children (the
root's children start from the attack methods in turn: disguise, reverse induction, unsafe
inquiry). Before any reaches the target, the attacker checks each is still on topic (the goal's
dimension, subcomponent and intent): off-topic prompts, and repeats of a sibling's prompt, are
pruned. The rest are sent and scored, in order, while the budget lasts; the attack stops at the
first answer scored 1. Otherwise the best `width` (lowest score, then highest probability of
harm where the judge gives one) become the next level's leaves, each carrying its own
conversation with the attacker, until `depth` levels. Queries are ordered by level, then rank.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from flames.redteaming.attack import Attack, Turn, with_reply
from flames.redteaming.instructions import METHODS
from flames.redteaming.parsing import Proposal
from flames.redteaming.strategies.base import Strategy, start, trimmed
from flames.runs.records import Message


@dataclass(frozen=True)
class Node:
    path: str
    """Branch numbers from the root, dotted ('1.0.2'); '' for the root."""
    conversation: list[Message] | None = None
    """The attacker's conversation that led here, with the feedback on this node's answer."""


@dataclass(frozen=True)
class Child:
    node: Node
    proposal: Proposal
    parent: str | None
    """The key of the leaf's query it grew from (None under the root)."""


class Tap(Strategy):
    name: ClassVar[str] = "tap"

    branching: int = Field(default=3, ge=1, le=10)
    """Children each leaf has the attacker propose."""
    width: int = Field(default=4, ge=1, le=50)
    """Leaves kept at each level, the best scored."""
    depth: int = Field(default=5, ge=1, le=20)
    """Levels of the tree at most."""

    async def run(self, attack: Attack) -> None:
        leaves = [Node("")]
        for level in range(self.depth):
            if attack.succeeded() or attack.attacker_spent() or not attack.queries_left():
                return
            grown = await asyncio.gather(
                *(
                    attack.line(self._grow(attack, leaf, branch))
                    for leaf in leaves
                    for branch in range(self.branching)
                )
            )
            children = self._unique(attack, [c for c in grown if c is not None])
            children = children[: attack.queries_left()]
            turns = await asyncio.gather(
                *(
                    attack.line(self._query(attack, child, level, rank))
                    for rank, child in enumerate(children)
                )
            )
            judged = [(c, t) for c, t in zip(children, turns, strict=True) if t is not None]
            if not judged or any(t.succeeded for _, t in judged):
                return
            ranked = sorted(
                enumerate(judged), key=lambda it: (it[1][1].score, -(it[1][1].p_harm or 0), it[0])
            )
            leaves = [self._leaf(attack, c, t) for _, (c, t) in ranked[: self.width]]

    def _conversation(self, attack: Attack, leaf: Node, branch: int) -> list[Message]:
        if leaf.conversation is not None:
            return leaf.conversation
        ins = attack.instructions
        request = ins.render(
            "pair_start",
            goal=ins.goal(attack.goal),
            method_text=ins.method(METHODS[branch % len(METHODS)]),
            scale=ins.scale(attack.goal.dimension),
        )
        return start(attack, request)

    async def _grow(self, attack: Attack, leaf: Node, branch: int) -> Child | None:
        """A child of `leaf`, or None when the attacker found it off topic (pruned)."""
        path = f"{leaf.path}.{branch}" if leaf.path else str(branch)
        conversation = self._conversation(attack, leaf, branch)
        proposal = await attack.propose(f"t{path}", conversation, repeat_of=attack.goal.prompt)
        if not await attack.on_topic(f"t{path}", proposal.prompt or ""):
            attack.notes["pruned off-topic"] += 1
            return None
        parent = f"t{leaf.path}/target" if leaf.path else None
        return Child(Node(path, conversation), proposal, parent)

    @staticmethod
    def _unique(attack: Attack, children: list[Child]) -> list[Child]:
        """The children whose prompt no earlier sibling of the level proposed."""
        seen: set[str] = set()
        unique = []
        for child in children:
            if child.proposal.prompt in seen:
                attack.notes["pruned repeats"] += 1
                continue
            seen.add(child.proposal.prompt or "")
            unique.append(child)
        return unique

    @staticmethod
    async def _query(attack: Attack, child: Child, level: int, rank: int) -> Turn:
        prompt = child.proposal.prompt or ""
        step = f"t{child.node.path}"
        return await attack.query(step, [], prompt, (level, rank), child.parent)

    @staticmethod
    def _leaf(attack: Attack, child: Child, turn: Turn) -> Node:
        feedback = attack.instructions.render("pair_feedback", **attack.feedback(turn))
        conversation = [
            *with_reply(child.node.conversation or [], child.proposal),
            {"role": "user", "content": feedback},
        ]
        return Node(child.node.path, trimmed(conversation))
