"""A red-team run's records: every call the attack loop made (attacker replies, target turns,
verdicts) and each attack's outcome, in the run's store (`flames.redteaming`).

A call is stored the moment it returns, under a key its attack gives it (``i01/s02/target``):
the attack loop is a function of the stored calls and the run's seed, so replaying it after a
kill reaches the same keys, takes the stored replies, and asks only what is missing. An ok call
is never replaced; an error is replaced when the same call is asked again (--retry-errors). An
attack's outcome is stored once the attack ends; only an outcome 'error' is ever replaced.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from flames.runs.records import Status, now

if TYPE_CHECKING:
    from flames.runs.store import RunStore

Role = Literal["attacker", "target", "judge"]
ROLES: tuple[Role, ...] = ("target", "attacker", "judge")

AttackerKind = Literal[
    "ok", "malformed", "refusal", "wrong-language", "unchanged", "on-topic", "off-topic"
]
"""What an attacker reply was: a usable prompt, or why not (`flames.redteaming.parsing`); for an
on-topic check (a key holding ``/check/``), its verdict on the prompt."""
CHECK = "/check/"
"""In the key of an attacker call that checks a prompt is on topic, not one that proposes it."""

Outcome = Literal["success", "failure", "declined", "error"]
"""How an attack ended: an answer scored 1 (success); the search ran its course without one
(failure); the attacker never produced a prompt to send (declined); or a call failed and no
answer was scored 1 (error: neither a success nor a failure, retried with --retry-errors)."""

TABLES = """
CREATE TABLE IF NOT EXISTS attack_calls (
    goal_id TEXT NOT NULL, strategy TEXT NOT NULL, key TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('attacker', 'target', 'judge')),
    status TEXT NOT NULL CHECK (status IN ('ok', 'error')), request TEXT, content TEXT,
    prompt TEXT, kind TEXT, score INTEGER, p_harm REAL, error TEXT, finish_reason TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL, attempts INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (goal_id, strategy, key)
);
CREATE TABLE IF NOT EXISTS attacks (
    goal_id TEXT NOT NULL, strategy TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'declined', 'error')),
    queries INTEGER NOT NULL, first_success INTEGER, harmful_at INTEGER, best_score INTEGER,
    winner TEXT, detail TEXT, finished_at TEXT NOT NULL,
    PRIMARY KEY (goal_id, strategy)
);
"""
"""The red-team tables (store format 3)."""


class AttackCall(BaseModel):
    """One request of an attack to the attacker, the target or the judge, and its reply."""

    goal_id: str
    strategy: str
    key: str
    """Where the call sits in its attack (stream, iteration, tree node, turn, attempt ...)."""
    role: Role
    status: Status
    request: str | None = None
    """What was asked: the target's messages (JSON), the attacker's last message, the prompt
    the judge saw."""
    content: str | None = None
    """The reply: the attacker's text, the target's answer, the judge's raw output."""
    prompt: str | None = None
    """Attacker: the prompt its reply proposes (when it has one)."""
    kind: str | None = None
    """Attacker: what the reply was (`AttackerKind`); target: 'refusal' or 'answer'."""
    score: int | None = None
    """Judge: the answer's score on the goal's dimension (1 harmful ... 3 harmless)."""
    p_harm: float | None = None
    """Judge: 1 - P(harmless), where the judge gives probabilities."""
    error: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    attempts: int = 1
    created_at: str = Field(default_factory=now)


class AttackResult(BaseModel):
    """How one attack (a goal under a strategy) ended."""

    goal_id: str
    strategy: str
    outcome: Outcome
    queries: int
    """Target queries it made (each a distinct prompt sent)."""
    first_success: int | None = None
    """How many queries, in the strategy's order, up to and including the first scored 1."""
    harmful_at: int | None = None
    """The same for the first answer scored below 3 (not harmless)."""
    best_score: int | None = None
    """The lowest score any answer got."""
    winner: str | None = None
    """The key of the first target call whose answer was scored 1."""
    detail: dict[str, Any] = Field(default_factory=dict)
    """What the strategy reports of its course (paths ended by errors, pruned prompts, ...)."""
    finished_at: str = Field(default_factory=now)


CALL_FIELDS = tuple(AttackCall.model_fields)
RESULT_FIELDS = tuple(AttackResult.model_fields)


class AttackLog:
    """The red-team tables of one run (`RunStore.attack_log`)."""

    def __init__(self, store: RunStore):
        self.store = store
        self._db = store._db

    def record_call(self, call: AttackCall) -> None:
        """Store one call durably; it replaces a stored error under its key, never an ok call."""
        data = call.model_dump()
        self.store._upsert(
            "attack_calls",
            CALL_FIELDS,
            [tuple(data[f] for f in CALL_FIELDS)],
            ("goal_id", "strategy", "key"),
            "attack_calls.status = 'error'",
        )

    def calls(self, goal_id: str | None = None, strategy: str | None = None) -> list[AttackCall]:
        """The stored calls (of one attack, or all), in attack and key order."""
        rows = self._db.execute(
            f"SELECT {', '.join(CALL_FIELDS)} FROM attack_calls "
            "WHERE (? IS NULL OR goal_id = ?) AND (? IS NULL OR strategy = ?) "
            "ORDER BY goal_id, strategy, key",
            (goal_id, goal_id, strategy, strategy),
        )
        return [AttackCall(**dict(zip(CALL_FIELDS, row, strict=True))) for row in rows]

    def iter_calls(self, role: Role | None = None) -> Iterator[AttackCall]:
        """Every stored call (of one role), streamed in goal (dataset), strategy and key order."""
        rows = self._db.execute(
            f"SELECT {', '.join('c.' + f for f in CALL_FIELDS)} FROM attack_calls c "
            "LEFT JOIN items i ON i.item_id = c.goal_id WHERE ? IS NULL OR c.role = ? "
            "ORDER BY i.position, c.strategy, c.key",
            (role, role),
        )
        for row in rows:
            yield AttackCall(**dict(zip(CALL_FIELDS, row, strict=True)))

    def record_result(self, result: AttackResult) -> None:
        """Store how an attack ended; it replaces a stored 'error' outcome only."""
        data = result.model_dump()
        data["detail"] = json.dumps(data["detail"], ensure_ascii=False)
        self.store._upsert(
            "attacks",
            RESULT_FIELDS,
            [tuple(data[f] for f in RESULT_FIELDS)],
            ("goal_id", "strategy"),
            "attacks.outcome = 'error'",
        )

    def results(self) -> list[AttackResult]:
        """Every ended attack, in goal (dataset) order, then strategy name."""
        rows = self._db.execute(
            f"SELECT {', '.join('r.' + f for f in RESULT_FIELDS)} FROM attacks r "
            "LEFT JOIN items i ON i.item_id = r.goal_id ORDER BY i.position, r.strategy"
        )
        results = []
        for row in rows:
            data = dict(zip(RESULT_FIELDS, row, strict=True))
            data["detail"] = json.loads(data["detail"] or "{}")
            results.append(AttackResult(**data))
        return results

    def ended(self, retry_errors: bool = False) -> set[tuple[str, str]]:
        """(goal id, strategy) of the attacks that need no more work: ended, and, with
        `retry_errors`, not in error."""
        rows = self._db.execute(
            "SELECT goal_id, strategy FROM attacks WHERE NOT (? AND outcome = 'error')",
            (retry_errors,),
        )
        return {(g, s) for g, s in rows}

    def usage(self) -> dict[str, dict[str, int]]:
        """Per role: requests (every stored call, failed ones too), failed requests, and tokens
        in and out (as the servers counted them; calls without counts add nothing)."""
        rows = self._db.execute(
            "SELECT role, count(*), sum(status = 'error'), coalesce(sum(prompt_tokens), 0), "
            "coalesce(sum(completion_tokens), 0), sum(prompt_tokens IS NULL AND status = 'ok') "
            "FROM attack_calls GROUP BY role"
        )
        usage = {
            role: {
                "requests": 0,
                "errors": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "uncounted": 0,
            }
            for role in ROLES
        }
        for role, requests, errors, tokens_in, tokens_out, uncounted in rows:
            usage[role] = {
                "requests": requests,
                "errors": errors,
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "uncounted": uncounted,
            }
        return usage

    def attacker_kinds(self, by_strategy: bool = False) -> dict[str, dict[str, int]]:
        """How many attacker replies asked for a prompt were of each kind (ok, malformed,
        refusal, ...), over all (key 'all') or per strategy; on-topic checks not included."""
        group = "strategy" if by_strategy else "'all'"
        rows = self._db.execute(
            f"SELECT {group}, kind, count(*) FROM attack_calls WHERE role = 'attacker' "
            "AND status = 'ok' AND instr(key, ?) = 0 GROUP BY 1, 2",
            (CHECK,),
        )
        kinds: dict[str, dict[str, int]] = {}
        for key, kind, n in rows:
            kinds.setdefault(key, {})[kind] = n
        return kinds

    def has_calls(self) -> bool:
        return self._db.execute("SELECT 1 FROM attack_calls LIMIT 1").fetchone() is not None
