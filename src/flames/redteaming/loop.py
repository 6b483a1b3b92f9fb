"""The attack loop: every goal under every strategy, `concurrency` attacks at a time, each call
stored as it returns and each attack's outcome once it ends (`flames.runs.attacks`).

Attacks that ended are not run again (with `retry_errors`, those that ended in error are: their
failed calls are asked again). An attack cut by a kill is run again from its start, replaying
its stored calls (`flames.redteaming.attack`): it asks only what it had not received.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from flames._util.aio import stream_concurrently
from flames._util.progress import Tracker
from flames.data.dataset import Item
from flames.redteaming.attack import Attack, Roles, Settings
from flames.redteaming.strategies import Strategy
from flames.runs.attacks import AttackResult
from flames.runs.store import RunStore


@dataclass
class RedteamSummary:
    """What one pass of the loop did (the run's totals are in its store)."""

    attacked: int = 0
    """Attacks that ended in this pass."""
    outcomes: Counter[str] = field(default_factory=Counter)
    """Of those, how many ended in success, failure, declined, error."""
    pending_before: int = 0
    error_examples: list[str] = field(default_factory=list)


async def run_attacks(
    store: RunStore,
    goals: Sequence[Item],
    strategies: Sequence[Strategy],
    roles: Roles,
    settings: Settings,
    concurrency: int = 16,
    progress: bool = True,
) -> RedteamSummary:
    """Attack every goal with every strategy that has not ended yet."""
    log = store.attack_log()
    ended = log.ended(settings.retry_errors)
    pending = [(g, s) for g in goals for s in strategies if (g.id, s.name) not in ended]
    summary = RedteamSummary(pending_before=len(pending))
    if not pending:
        return summary

    async def attack(todo: tuple[Item, Strategy]) -> AttackResult:
        goal, chosen = todo
        running = Attack(goal, chosen.name, roles, settings, log)
        await chosen.run(running)
        result = running.result()
        log.record_result(result)
        return result

    fields = ("successes", "errors")
    with Tracker("redteam", len(pending), enabled=progress, unit="attacks", fields=fields) as bar:
        async for result in stream_concurrently(pending, attack, concurrency):
            summary.attacked += 1
            summary.outcomes[result.outcome] += 1
            errors = result.detail.get("errors") or []
            if result.outcome == "error" and len(summary.error_examples) < 3 and errors:
                summary.error_examples.append(str(errors[0]))
            bar.advance(successes=summary.outcomes["success"], errors=summary.outcomes["error"])
    return summary
